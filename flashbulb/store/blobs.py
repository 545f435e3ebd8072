"""The blob store: Files API uploads, batch result files and image URLs (`[storage] blobs`).

- "folder" (the default): files under the data directory; one host, or hosts sharing that folder.
- "database": chunks in the `blob_chunks` table of the shared database, so any API server answers
  for any blob with nothing more to run. Chosen over an object store because every multi-server
  set-up already has PostgreSQL; blobs here are bounded (`max_file_bytes`) and short-lived
  (hours), and are stored in pieces of at most CHUNK_BYTES, so no row or read holds a whole file.

Names are paths like "files/<id>" or "outputs/<name>"; a reader never sees a half-written blob.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlalchemy import Engine, delete, func, insert, select, update

from flashbulb.store.tables import BlobChunk, utcnow

CHUNK_BYTES = 8 * 1024 * 1024


class BlobStore(Protocol):
    def append(self, name: str, data: bytes) -> None: ...  # creates the blob if it isn't there

    def write(self, name: str, chunks: Iterable[bytes]) -> int: ...  # replaces it whole; returns its size

    def rename(self, old: str, new: str) -> None: ...

    def size(self, name: str) -> int | None: ...  # None: no such blob

    def created(self, name: str) -> float | None: ...  # when it was written (epoch seconds)

    def open(self, name: str) -> BinaryIO: ...  # FileNotFoundError if it isn't there

    def delete(self, name: str) -> None: ...

    def older_than(self, prefix: str, cutoff: float) -> list[str]: ...  # names under prefix/ written before cutoff


class FolderBlobs:
    def __init__(self, root: Path):
        self.root = root

    def _path(self, name: str) -> Path:
        return self.root / name

    def append(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as out:
            out.write(data)

    def write(self, name: str, chunks: Iterable[bytes]) -> int:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.writing")
        size = 0
        with open(partial, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
        partial.replace(path)  # a reader never sees half a file
        return size

    def rename(self, old: str, new: str) -> None:
        os.replace(self._path(old), self._path(new))

    def size(self, name: str) -> int | None:
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError:
            return None

    def created(self, name: str) -> float | None:
        try:
            return self._path(name).stat().st_mtime
        except FileNotFoundError:
            return None

    def open(self, name: str) -> BinaryIO:
        return open(self._path(name), "rb")

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def older_than(self, prefix: str, cutoff: float) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        old = []
        for entry in os.scandir(folder):
            try:
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    old.append(f"{prefix}/{entry.name}")
            except FileNotFoundError:  # another sweep got there first
                pass
        return old


class DatabaseBlobs:
    def __init__(self, db: Engine):
        self.db = db

    @staticmethod
    def _pieces(data: bytes) -> Iterator[bytes]:
        for start in range(0, len(data), CHUNK_BYTES):
            yield data[start : start + CHUNK_BYTES]

    def append(self, name: str, data: bytes) -> None:
        with self.db.begin() as conn:
            last = conn.execute(select(func.max(BlobChunk.seq)).where(BlobChunk.name == name)).scalar()
            seq = -1 if last is None else last
            now = utcnow()
            # A blob that exists only as its start (an upload just begun) has one empty chunk.
            for piece in self._pieces(data) if data else [b""]:
                seq += 1
                conn.execute(insert(BlobChunk).values(name=name, seq=seq, data=piece, created_at=now))

    def write(self, name: str, chunks: Iterable[bytes]) -> int:
        size, seq, now = 0, 0, utcnow()
        pending = bytearray()  # small pieces (a JSONL line each) gathered into rows of CHUNK_BYTES
        with self.db.begin() as conn:  # one transaction: readers see the old blob or the whole new one
            conn.execute(delete(BlobChunk).where(BlobChunk.name == name))
            for chunk in chunks:
                pending += chunk
                size += len(chunk)
                while len(pending) >= CHUNK_BYTES:
                    conn.execute(insert(BlobChunk).values(name=name, seq=seq, data=bytes(pending[:CHUNK_BYTES]), created_at=now))
                    del pending[:CHUNK_BYTES]
                    seq += 1
            if pending or seq == 0:
                conn.execute(insert(BlobChunk).values(name=name, seq=seq, data=bytes(pending), created_at=now))
        return size

    def rename(self, old: str, new: str) -> None:
        with self.db.begin() as conn:
            conn.execute(delete(BlobChunk).where(BlobChunk.name == new))
            if not conn.execute(update(BlobChunk).where(BlobChunk.name == old).values(name=new)).rowcount:
                raise FileNotFoundError(old)

    def size(self, name: str) -> int | None:
        with self.db.connect() as conn:
            row = conn.execute(
                select(func.count(), func.coalesce(func.sum(func.length(BlobChunk.data)), 0)).where(BlobChunk.name == name)
            ).one()
        return int(row[1]) if row[0] else None

    def created(self, name: str) -> float | None:
        with self.db.connect() as conn:
            when = conn.execute(select(func.min(BlobChunk.created_at)).where(BlobChunk.name == name)).scalar()
        return None if when is None else when.replace(tzinfo=dt.UTC).timestamp()

    def open(self, name: str) -> BinaryIO:
        with self.db.connect() as conn:
            seqs = conn.execute(select(BlobChunk.seq).where(BlobChunk.name == name).order_by(BlobChunk.seq)).scalars().all()
        if not seqs:
            raise FileNotFoundError(name)
        return io.BufferedReader(_ChunkReader(self.db, name, seqs), buffer_size=1 << 20)

    def delete(self, name: str) -> None:
        with self.db.begin() as conn:
            conn.execute(delete(BlobChunk).where(BlobChunk.name == name))

    def older_than(self, prefix: str, cutoff: float) -> list[str]:
        when = dt.datetime.fromtimestamp(cutoff, dt.UTC).replace(tzinfo=None)
        with self.db.connect() as conn:
            return list(
                conn.execute(
                    select(BlobChunk.name).where(
                        BlobChunk.name.startswith(f"{prefix}/"), BlobChunk.seq == 0, BlobChunk.created_at < when
                    )
                ).scalars()
            )


class _ChunkReader(io.RawIOBase):
    """Reads a database blob one chunk (one row) at a time."""

    def __init__(self, db: Engine, name: str, seqs: Sequence[int]):
        self.db, self.name, self.seqs = db, name, list(seqs)
        self.pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending and self.seqs:
            with self.db.connect() as conn:
                data = conn.execute(
                    select(BlobChunk.data).where(BlobChunk.name == self.name, BlobChunk.seq == self.seqs.pop(0))
                ).scalar()
            self.pending = memoryview(data or b"")
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def open_store(kind: str, data_dir: Path, db: Engine) -> BlobStore:
    if kind == "database":
        return DatabaseBlobs(db)
    return FolderBlobs(data_dir)

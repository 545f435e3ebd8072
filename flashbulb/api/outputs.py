"""Result images served by URL (OpenAI's `response_format=url`): saved under <data dir>/outputs with
unguessable names and readable without a key until they expire, like a presigned URL."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from flashbulb.errors import ErrorKind, FlashbulbError

log = logging.getLogger("flashbulb.outputs")

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
# 24 random bytes -> 32 URL-safe characters: the name is the capability, so it must not be guessable.
_NAME = re.compile(r"[A-Za-z0-9_-]{32}\.(png|jpeg|webp)")


class OutputStore:
    """A folder of result files; a file's modification time is when its URL was issued."""

    def __init__(self, folder: Path, ttl_s: float):
        self.folder = folder
        self.ttl_s = ttl_s

    def save(self, data: bytes, fmt: str) -> str:
        """Store one encoded image; returns its file name (the last part of its URL)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{secrets.token_urlsafe(24)}.{fmt}"
        partial = self.folder / f".{name}.part"
        partial.write_bytes(data)
        partial.replace(self.folder / name)  # a reader never sees half a file
        return name

    def read(self, name: str) -> tuple[bytes, float]:
        """The file's bytes and seconds left before it expires; NOT_FOUND if unknown or expired."""
        path = self.folder / name
        try:
            if not _NAME.fullmatch(name):
                raise FileNotFoundError(name)
            left = path.stat().st_mtime + self.ttl_s - time.time()
            if left <= 0:
                raise FileNotFoundError(name)
            return path.read_bytes(), left
        except FileNotFoundError:
            raise FlashbulbError(ErrorKind.NOT_FOUND, "This image URL has expired or never existed.") from None

    def sweep(self) -> int:
        """Delete expired files (and uploads a crash left half-written); returns how many."""
        if not self.folder.is_dir():
            return 0
        cutoff = time.time() - self.ttl_s
        removed = 0
        for entry in os.scandir(self.folder):
            try:
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:  # another sweep or a reader got there first
                pass
        return removed

    async def sweep_forever(self) -> None:
        # Often enough that a file outlives its URL by at most a tenth of its life (or a minute).
        interval = max(1.0, min(60.0, self.ttl_s / 10))
        while True:
            try:
                if removed := await asyncio.to_thread(self.sweep):
                    log.info("deleted %d expired result images", removed)
            except Exception:  # the sweeper must outlive a full disk or a permissions hiccup
                log.exception("output sweep failed")
            await asyncio.sleep(interval)


def build_router(store: OutputStore) -> APIRouter:
    router = APIRouter()

    @router.get("/{name}", name="result_image")
    async def result_image(name: str) -> Response:
        """No key: knowing the name is the permission, until it expires."""
        data, left = await asyncio.to_thread(store.read, name)
        headers = {"cache-control": f"private, max-age={int(left)}"}
        return Response(data, media_type=MEDIA_TYPES[name.rsplit(".", 1)[1]], headers=headers)

    return router

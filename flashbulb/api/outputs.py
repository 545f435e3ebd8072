"""Result images served by URL (OpenAI's `response_format=url`): saved in the blob store as
`outputs/<name>` with unguessable names and readable without a key until they expire, like a
presigned URL (with a shared blob store, through any server)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time

from fastapi import APIRouter
from fastapi.responses import Response

from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.store.blobs import BlobStore

log = logging.getLogger("flashbulb.outputs")

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
# 24 random bytes -> 32 URL-safe characters: the name is the capability, so it must not be guessable.
_NAME = re.compile(r"[A-Za-z0-9_-]{32}\.(png|jpeg|webp)")


PREFIX = "outputs"
KEPT = "kept"
_KEY = re.compile(r"[A-Za-z0-9_-]{1,100}")


class OutputStore:
    """Result images in the blob store; a blob's write time is when its URL was issued."""

    def __init__(self, blobs: BlobStore, ttl_s: float):
        self.blobs = blobs
        self.ttl_s = ttl_s

    def save(self, data: bytes, fmt: str) -> str:
        """Store one encoded image; returns its file name (the last part of its URL)."""
        name = f"{secrets.token_urlsafe(24)}.{fmt}"
        self.blobs.write(f"{PREFIX}/{name}", [data])
        return name

    def read(self, name: str) -> tuple[bytes, float]:
        """The file's bytes and seconds left before it expires; NOT_FOUND if unknown or expired."""
        try:
            if not _NAME.fullmatch(name):
                raise FileNotFoundError(name)
            written = self.blobs.created(f"{PREFIX}/{name}")
            left = (written or 0) + self.ttl_s - time.time()
            if written is None or left <= 0:
                raise FileNotFoundError(name)
            with self.blobs.open(f"{PREFIX}/{name}") as data:
                return data.read(), left
        except FileNotFoundError:
            raise FlashbulbError(ErrorKind.NOT_FOUND, "This image URL has expired or never existed.") from None

    def keep(self, account_id: int, key: str, data: bytes) -> None:
        """Keep an account's result under its own key (a Responses API id), for as long as a URL."""
        self.blobs.write(f"{KEPT}/{account_id}/{key}", [data])

    def kept(self, account_id: int, key: str) -> bytes:
        """What `keep` kept for this account; NOT_FOUND if it is another's, unknown or expired."""
        name = f"{KEPT}/{account_id}/{key}"
        written = self.blobs.created(name) if _KEY.fullmatch(key) else None
        if written is None or written + self.ttl_s < time.time():
            raise FileNotFoundError(key)
        with self.blobs.open(name) as data:
            return data.read()

    def sweep(self) -> int:
        """Delete expired files (and writes a crash left half-done); returns how many."""
        old = [*self.blobs.older_than(PREFIX, time.time() - self.ttl_s), *self.blobs.older_than(KEPT, time.time() - self.ttl_s)]
        for name in old:
            self.blobs.delete(name)
        return len(old)

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

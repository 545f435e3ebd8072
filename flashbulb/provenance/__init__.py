"""Provenance anyone can check: C2PA content credentials signed into every image flashbulb returns,
an invisible watermark in its pixels that survives re-encoding, and the verification of both.

- `watermark.py`: the 32-bit mark, put in by the worker after a backend ran, read back by `verify`;
- `credentials.py`: the C2PA manifest (model, actions, input hashes), signed where an image is encoded
  for the wire (api/), and read back with the C2PA project's own reader;
- `identity.py`: the signing key and certificate (the operator's, or a self-signed pair made on first start);
- `verify.py`: both checks on one image, and the call its mark leads back to.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import cast

from flashbulb.engine.types import ImageRequest, ImageResult

# Signs one encoded image ("png" | "jpeg" | "webp") for the caller; the identity when credentials are off.
Sign = Callable[[bytes, str], bytes]


def unsigned(data: bytes, fmt: str) -> bytes:
    return data


class Provenance:
    """A server's marks, as `[provenance]` configures them (both on by default)."""

    def __init__(self, settings):  # flashbulb.config.Settings
        from flashbulb.provenance import identity

        self.watermark = settings.watermark
        self.identity = (
            identity.load(settings.data_dir, settings.signing_cert, settings.signing_key)
            if settings.content_credentials
            else None
        )
        self._signer = None

    def payload(self) -> int | None:
        """A new request's watermark payload: random, so it says nothing about the request without
        this server's usage records (which keep it, indexed)."""
        return secrets.randbits(32) if self.watermark else None

    def signer_for(self, request: ImageRequest, result: ImageResult) -> Sign:
        """What signs each of this result's encoded images with its manifest."""
        if self.identity is None:
            return unsigned
        from flashbulb.provenance import credentials

        if self._signer is None:
            self._signer = credentials.Signer(self.identity)
        signer = self._signer

        @functools.cache
        def facts() -> credentials.Facts:  # hashing the inputs' pixels: where the answer is encoded, off the event loop
            return credentials.Facts(
                model=request.model,
                input_sha256=tuple(credentials.pixels_sha256(image) for image in request.images),
                edits=tuple(str(edit.get("operation")) for edit in cast("list[dict]", result.quality.get("edits", []))),
                watermark=result.watermark,
            )

        return lambda data, fmt: signer.sign(data, fmt, facts())

"""What every wire format's routes share: who is calling, the request id, and running a request
through the gateway while watching for the client to go away."""

from __future__ import annotations

import asyncio
import uuid

from fastapi import Request
from starlette.requests import HTTPConnection

from flashbulb.engine.types import ImageRequest, JobContext
from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.gateway.gateway import Gateway, Renderer, Served


def api_key_of(request: HTTPConnection) -> str | None:
    """Gemini clients send x-goog-api-key (or ?key=); OpenAI clients send a bearer token."""
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if not key and (auth := request.headers.get("authorization", "")).lower().startswith("bearer "):
        key = auth[7:].strip()
    return key or None


def new_request_id() -> str:
    """Each run of a call its own id (and hold). Retries sent with an Idempotency-Key never reach a
    second run while the first's answer is kept: api/idempotency.py replays it."""
    return uuid.uuid4().hex


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def serve(gateway: Gateway, request: Request, image_request: ImageRequest, render: Renderer | None = None) -> Served:
    """Hold, run, build the answer with `render`, settle; if the client disconnects first, stop the
    work (the hold is released)."""
    work = asyncio.ensure_future(gateway.run(image_request, JobContext(), render))
    watcher = asyncio.ensure_future(_until_disconnect(request))
    await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    if not work.done():
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        raise FlashbulbError(ErrorKind.CANCELLED, "the client closed the connection")
    watcher.cancel()
    return work.result()

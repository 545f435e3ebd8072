"""What every wire format's routes share: who is calling, the request id, and running a request
through the gateway while watching for the client to go away (`serve`) or while streaming what the
model shows on the way (`fulfil_streaming`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from flashbulb.engine.types import Caller, ImageRequest, JobContext
from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.gateway.gateway import Gateway, Renderer, Served


def api_key_of(request: HTTPConnection) -> str | None:
    """Gemini clients send x-goog-api-key (or ?key=); OpenAI clients send a bearer token."""
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if not key and (auth := request.headers.get("authorization", "")).lower().startswith("bearer "):
        key = auth[7:].strip()
    return key or None


async def authenticated(request: Request) -> Caller:
    """The caller whose key the request carries (a 403/400 in the caller's format when there is
    none or it is not valid): routes take it as a parameter, `caller: Authenticated`."""
    gateway: Gateway = request.app.state.gateway
    return await gateway.authenticate(api_key_of(request))


async def administrator(caller: Annotated[Caller, Depends(authenticated)]) -> Caller:
    if not caller.is_admin:
        raise FlashbulbError(ErrorKind.PERMISSION_DENIED, "this endpoint needs an admin key")
    return caller


Authenticated = Annotated[Caller, Depends(authenticated)]
AdminCaller = Annotated[Caller, Depends(administrator)]
# For routes that only need the check: `@router.get(..., dependencies=[AUTHENTICATED])`.
AUTHENTICATED = Depends(authenticated)
ADMIN = Depends(administrator)


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


# Progress is sent when it moved by at least this much: the photo engine's super-resolution reports
# every tile (hundreds on a large photo), and a viewer needs about a hundred steps at most.
PROGRESS_STEP = 0.01


async def fulfil_streaming(
    gateway: Gateway, request: ImageRequest, render: Callable[[Served], object], *, previews: int = 0, progress: bool = False
) -> AsyncIterator[tuple[str, Any]]:
    """Run a reserved request, yielding what the model shows on the way: ("preview", (index, image))
    for up to `previews` intermediate images, ("progress", fraction) when asked, then ("done",
    Served). Closing the iterator (the client went away) stops the work and releases the hold."""
    loop = asyncio.get_running_loop()
    shown: asyncio.Queue = asyncio.Queue()
    reported = -1.0

    def on_progress(fraction: float) -> None:
        nonlocal reported
        if fraction - reported >= PROGRESS_STEP or (fraction >= 1 and reported < 1):
            reported = fraction
            loop.call_soon_threadsafe(shown.put_nowait, ("progress", round(fraction, 3)))

    def on_preview(image) -> None:
        loop.call_soon_threadsafe(shown.put_nowait, ("preview", image))

    request.partial_images = previews
    job = JobContext(
        on_preview=on_preview if previews else (lambda image: None),
        on_progress=on_progress if progress else (lambda fraction: None),
    )
    work = asyncio.ensure_future(gateway.fulfil(request, job, render=render))
    sent = 0
    try:
        while not work.done():
            waiting = asyncio.ensure_future(shown.get())
            await asyncio.wait({work, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                kind, value = waiting.result()
                if kind == "progress":
                    yield kind, value
                elif sent < previews:
                    yield kind, (sent, value)
                    sent += 1
            waiting.cancel()
        yield "done", work.result()
    finally:
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)

"""What every wire format's routes share: who is calling, the request id, and running a request
through the gateway while watching for the client to go away."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

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

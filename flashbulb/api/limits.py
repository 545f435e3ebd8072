"""Limits on how a caller sends: oversized request bodies are refused before they reach a handler
(Gemini: 400, OpenAI: 413); a body that arrives too slowly, or a request head that never ends, has
its connection closed (measured before: 300 connections sending a header line every 2 s, or a body
at 10 B/s, were all held for the full minute of the test)."""

from __future__ import annotations

import asyncio
import time

import h11
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from flashbulb.api.errors import error_response
from flashbulb.errors import ErrorKind, FlashbulbError

# Past this many bytes we stop draining an oversized body and simply close the connection.
_DRAIN_LIMIT_FACTOR = 8


class _BodyTooSlow(Exception):
    """Raised from `receive` (no handler of the app's catches it): answered here, then closed."""


class BodySizeLimit:
    """A body of at most `max_bytes`, arriving within `body_timeout_s` plus one second per
    `min_bytes_per_s` bytes received (a slow but real upload keeps going; a trickle does not)."""

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout_s: float = 30.0, min_bytes_per_s: int = 64 * 1024):
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s
        self.min_bytes_per_s = min_bytes_per_s

    def _too_large(self, size: str) -> FlashbulbError:
        message = f"request body is {size}; the limit is {self.max_bytes:,} bytes (send smaller images)"
        return FlashbulbError(ErrorKind.TOO_LARGE, message)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            # Read the body away first: a client still writing would otherwise see a broken pipe
            # instead of our answer.
            if int(declared) <= self.max_bytes * _DRAIN_LIMIT_FACTOR:
                while (message := await receive())["type"] == "http.request" and message.get("more_body"):
                    pass
            response = error_response(self._too_large(f"{int(declared):,} bytes"), HTTPConnection(scope))
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return

        received = 0
        started = time.monotonic()
        body_done = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # only http.disconnect is left to wait for, as long as the work takes
                return await receive()
            left = started + self.body_timeout_s + received / self.min_bytes_per_s - time.monotonic()
            try:
                async with asyncio.timeout(max(left, 0.001)):  # (wait_for made a task for each message)
                    message = await receive()
            except TimeoutError:
                raise _BodyTooSlow() from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise self._too_large(f"over {received:,} bytes")
            return message

        async def watching_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _BodyTooSlow:
            if response_started:
                raise
            why = f"the request body arrived too slowly ({received:,} bytes in {time.monotonic() - started:.0f} s)"
            response = error_response(FlashbulbError(ErrorKind.INVALID_ARGUMENT, why), HTTPConnection(scope))
            response.headers["connection"] = "close"
            await response(scope, receive, send)


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head (uvicorn has none): a
    connection whose request line and headers haven't all arrived `head_timeout_s` after it opened
    (or after its previous answer) is closed."""

    head_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_cycle: RequestResponseCycle | None = None
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _head_too_slow(self) -> None:
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # (its head is still coming)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and self.cycle is not self._head_cycle:  # a whole head arrived
            self._head_cycle = self.cycle
            self._head_deadline.cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head_deadline.cancel()
        self._arm_head_deadline()  # the next request on this connection gets the same time for its head

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline.cancel()
        super().connection_lost(exc)

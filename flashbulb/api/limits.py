"""ASGI middleware that refuses oversized request bodies before they reach a handler (Gemini: 400, OpenAI: 413)."""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flashbulb.api.errors import error_response
from flashbulb.errors import ErrorKind, FlashbulbError

# Past this many bytes we stop draining an oversized body and simply close the connection.
_DRAIN_LIMIT_FACTOR = 8


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

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

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large(f"over {received:,} bytes")
            return message

        await self.app(scope, counting_receive, send)

"""The one HTTP client for talking to a flashbulb server (the CLI's `--server` commands and
`flashbulb batch`): the API key on every call, an injectable httpx transport, and a refusal turned
back into the FlashbulbError the server raised, so a command's exit code means the same locally
and remotely."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from flashbulb.errors import ErrorKind, FlashbulbError

_KIND_OF_STATUS = {
    400: ErrorKind.INVALID_ARGUMENT,
    401: ErrorKind.API_KEY_INVALID,
    403: ErrorKind.PERMISSION_DENIED,
    404: ErrorKind.NOT_FOUND,
    409: ErrorKind.ALREADY_EXISTS,
    413: ErrorKind.TOO_LARGE,
    429: ErrorKind.OUT_OF_CREDITS,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.DEADLINE_EXCEEDED,
}

_KIND_OF_REASON = {  # google.rpc.ErrorInfo reasons our Gemini errors carry
    "API_KEY_INVALID": ErrorKind.API_KEY_INVALID,
    "API_KEY_MISSING": ErrorKind.API_KEY_MISSING,
    "INSUFFICIENT_CREDITS": ErrorKind.OUT_OF_CREDITS,
    "RATE_LIMIT_EXCEEDED": ErrorKind.RATE_LIMITED,
}


class Client:
    def __init__(self, server: str, key: str, *, timeout: float = 120.0, transport: httpx.BaseTransport | None = None) -> None:
        self.base = server.rstrip("/")
        self.http = httpx.Client(base_url=self.base, headers={"x-goog-api-key": key}, timeout=timeout, transport=transport)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """`url` relative to the server (or absolute: an upload URL it handed out)."""
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise unreachable(self.base, exc) from exc
        if not response.is_success:  # (a redirect too: nothing here follows one)
            raise error_of(response)
        return response

    @contextmanager
    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        try:
            with self.http.stream(method, url, **kwargs) as response:
                if not response.is_success:
                    response.read()
                    raise error_of(response)
                yield response
        except httpx.HTTPError as exc:
            raise unreachable(self.base, exc) from exc


def unreachable(server: str, exc: Exception) -> FlashbulbError:
    return FlashbulbError(ErrorKind.UNAVAILABLE, f"can't reach {server}: {exc}")


def error_of(response: httpx.Response) -> FlashbulbError:
    """The server's error (Google's shape) as the domain error it was."""
    try:
        error = response.json()["error"]
        message, status = error["message"], error.get("status", "")
        reasons = [d.get("reason") for d in error.get("details", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        message, status, reasons = response.text[:200] or response.reason_phrase, "", []
    default = ErrorKind.INVALID_ARGUMENT if 400 <= response.status_code < 500 else ErrorKind.INTERNAL
    kind = _KIND_OF_STATUS.get(response.status_code, default)
    if status == "FAILED_PRECONDITION":
        kind = ErrorKind.FAILED_PRECONDITION
    kind = next((_KIND_OF_REASON[r] for r in reasons if r in _KIND_OF_REASON), kind)
    return FlashbulbError(kind, f"{message} (HTTP {response.status_code})")

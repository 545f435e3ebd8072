"""Domain errors -> the caller's wire format: Google's (google.rpc) shape for the Gemini API, OpenAI's
for OpenAI's paths. `speaks_openai` is the one place that decides which a request gets."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.routing import get_route_path

from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.store.db import unavailable

# ErrorKind -> (HTTP status, google.rpc status name)
GOOGLE_STATUS: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID_ARGUMENT: (400, "INVALID_ARGUMENT"),
    ErrorKind.API_KEY_MISSING: (403, "PERMISSION_DENIED"),
    ErrorKind.API_KEY_INVALID: (400, "INVALID_ARGUMENT"),
    ErrorKind.PERMISSION_DENIED: (403, "PERMISSION_DENIED"),
    ErrorKind.NOT_FOUND: (404, "NOT_FOUND"),
    ErrorKind.FAILED_PRECONDITION: (400, "FAILED_PRECONDITION"),
    ErrorKind.ALREADY_EXISTS: (409, "ALREADY_EXISTS"),
    ErrorKind.TOO_LARGE: (400, "INVALID_ARGUMENT"),
    ErrorKind.OUT_OF_CREDITS: (429, "RESOURCE_EXHAUSTED"),
    ErrorKind.RATE_LIMITED: (429, "RESOURCE_EXHAUSTED"),
    ErrorKind.OVERLOADED: (503, "UNAVAILABLE"),
    ErrorKind.UNAVAILABLE: (503, "UNAVAILABLE"),
    ErrorKind.OUT_OF_MEMORY: (503, "UNAVAILABLE"),
    ErrorKind.DEADLINE_EXCEEDED: (504, "DEADLINE_EXCEEDED"),
    ErrorKind.CANCELLED: (499, "CANCELLED"),
    ErrorKind.INTERNAL: (500, "INTERNAL"),
}

_REASONS = {
    ErrorKind.API_KEY_INVALID: "API_KEY_INVALID",
    ErrorKind.API_KEY_MISSING: "API_KEY_MISSING",
    ErrorKind.OUT_OF_CREDITS: "INSUFFICIENT_CREDITS",
    ErrorKind.RATE_LIMITED: "RATE_LIMIT_EXCEEDED",
}

# ErrorKind -> (HTTP status, OpenAI error type, default code): the statuses the openai SDK maps to its classes.
OPENAI_STATUS: dict[ErrorKind, tuple[int, str, str | None]] = {
    ErrorKind.INVALID_ARGUMENT: (400, "invalid_request_error", None),
    ErrorKind.API_KEY_MISSING: (401, "authentication_error", "missing_api_key"),
    ErrorKind.API_KEY_INVALID: (401, "authentication_error", "invalid_api_key"),
    ErrorKind.PERMISSION_DENIED: (403, "permission_error", None),
    ErrorKind.NOT_FOUND: (404, "invalid_request_error", "not_found"),
    ErrorKind.FAILED_PRECONDITION: (400, "invalid_request_error", "model_not_installed"),
    ErrorKind.ALREADY_EXISTS: (409, "invalid_request_error", "conflict"),
    ErrorKind.TOO_LARGE: (413, "invalid_request_error", "request_too_large"),
    ErrorKind.OUT_OF_CREDITS: (429, "insufficient_quota", "insufficient_quota"),
    ErrorKind.RATE_LIMITED: (429, "requests", "rate_limit_exceeded"),
    ErrorKind.OVERLOADED: (503, "server_error", "overloaded"),
    ErrorKind.UNAVAILABLE: (503, "server_error", "worker_unavailable"),
    ErrorKind.OUT_OF_MEMORY: (503, "server_error", "out_of_memory"),
    ErrorKind.DEADLINE_EXCEEDED: (504, "server_error", "timeout"),
    ErrorKind.CANCELLED: (499, "invalid_request_error", "cancelled"),
    ErrorKind.INTERNAL: (500, "server_error", None),
}

# Retrying these cannot succeed (the openai SDK retries every 409 and 429 unless told not to).
_FINAL = {ErrorKind.OUT_OF_CREDITS, ErrorKind.ALREADY_EXISTS}

# Paths only the OpenAI API has (/v1/files/images/{name} is ours). /v1/models and /v1/files are both
# APIs': see `speaks_openai`.
OPENAI_PREFIXES = ("/v1/images/", "/v1/files/images/", "/v1/responses")
_SHARED_MODELS_PATH = re.compile(r"/v1/models(/[^/]+)?/?")


def bearer_only(conn: HTTPConnection) -> bool:
    """An OpenAI client: a bearer token and no Gemini key (x-goog-api-key or ?key=)."""
    if conn.headers.get("x-goog-api-key") or conn.query_params.get("key"):
        return False
    return conn.headers.get("authorization", "").lower().startswith("bearer ")


def speaks_openai(conn: HTTPConnection) -> bool:
    """Whether this request gets OpenAI's wire format (errors included) rather than Gemini's."""
    path = get_route_path(conn.scope)
    if path.startswith(OPENAI_PREFIXES):
        return True
    if path == "/v1/files" or path.startswith("/v1/files/"):  # both APIs' Files API: api/openai_files.py
        return bearer_only(conn)
    return conn.scope.get("method") == "GET" and bool(_SHARED_MODELS_PATH.fullmatch(path)) and bearer_only(conn)


def google_error_body(error: FlashbulbError) -> tuple[int, dict]:
    code, status = GOOGLE_STATUS[error.kind]
    details = []
    if error.kind in _REASONS:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": _REASONS[error.kind],
                "domain": "flashbulb",
                "metadata": {"service": "flashbulb"},
            }
        )
    return code, {"error": {"code": code, "message": error.message, "status": status, "details": details}}


def openai_error_body(error: FlashbulbError) -> tuple[int, dict]:
    status, kind, code = OPENAI_STATUS[error.kind]
    message = error.message
    if error.kind is ErrorKind.API_KEY_MISSING:  # the domain message names Gemini's headers
        message = "You didn't provide an API key. Send it in the header 'Authorization: Bearer YOUR_KEY'."
    return status, {"error": {"message": message, "type": kind, "param": error.param, "code": error.code or code}}


def error_response(error: FlashbulbError, conn: HTTPConnection | None = None) -> JSONResponse:
    """The error in the caller's wire format (Gemini's when the request is unknown)."""
    openai = conn is not None and speaks_openai(conn)
    code, body = openai_error_body(error) if openai else google_error_body(error)
    headers = {"retry-after": str(error.retry_after_s)} if error.retry_after_s else {}
    if openai and error.kind in _FINAL:
        headers["x-should-retry"] = "false"
    return JSONResponse(body, status_code=code, headers=headers or None)


async def on_flashbulb_error(request: Request, error: FlashbulbError) -> JSONResponse:
    return error_response(error, request)


async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    details = error.errors()
    param = next((str(p) for p in details[0].get("loc", ())[1:] if p != "body"), None) if details else None
    return error_response(FlashbulbError(ErrorKind.INVALID_ARGUMENT, describe_validation(details), param=param), request)


async def on_http_error(request: Request, error: HTTPException) -> JSONResponse:
    kind = {404: ErrorKind.NOT_FOUND, 405: ErrorKind.NOT_FOUND}.get(error.status_code, ErrorKind.INVALID_ARGUMENT)
    if error.status_code not in (404, 405):
        message = str(error.detail)
    elif speaks_openai(request):
        message = f"Invalid URL ({request.method} {request.url.path})"  # OpenAI's own wording
    else:
        message = "Method not found."
    return error_response(FlashbulbError(kind, message), request)


async def on_unexpected_error(request: Request, error: Exception) -> JSONResponse:
    """A bug still answers in the caller's wire format (the traceback goes to the server log)."""
    if unavailable(error):  # a database restart or failover: both SDKs retry a 503 with Retry-After
        message = "The database is unavailable for a moment; nothing was charged. Retry shortly."
        return error_response(FlashbulbError(ErrorKind.UNAVAILABLE, message, retry_after_s=2), request)
    if isinstance(error, DataError):  # a value its column can't take (too long, out of range): the caller's
        message = "A value in this request is too long or out of range for what it names; shorten it."
        return error_response(FlashbulbError(ErrorKind.INVALID_ARGUMENT, message), request)
    return error_response(FlashbulbError(ErrorKind.INTERNAL, "Internal error; the server log has the details."), request)


def describe_validation(errors: Sequence[Mapping[str, Any]]) -> str:
    """pydantic errors -> one sentence naming each field that is wrong."""
    parts = []
    for err in errors[:5]:
        location = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"Invalid value at '{location}': {err.get('msg')}" if location else str(err.get("msg")))
    return "; ".join(parts)


def install(app) -> None:
    app.add_exception_handler(FlashbulbError, on_flashbulb_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected_error)

"""Domain errors -> the caller's wire format. Only the Gemini (google.rpc) shape exists so far."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from flashbulb.errors import ErrorKind, FlashbulbError

# ErrorKind -> (HTTP status, google.rpc status name)
GOOGLE_STATUS: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID_ARGUMENT: (400, "INVALID_ARGUMENT"),
    ErrorKind.API_KEY_MISSING: (403, "PERMISSION_DENIED"),
    ErrorKind.API_KEY_INVALID: (400, "INVALID_ARGUMENT"),
    ErrorKind.PERMISSION_DENIED: (403, "PERMISSION_DENIED"),
    ErrorKind.NOT_FOUND: (404, "NOT_FOUND"),
    ErrorKind.FAILED_PRECONDITION: (400, "FAILED_PRECONDITION"),
    ErrorKind.ALREADY_EXISTS: (409, "ALREADY_EXISTS"),
    ErrorKind.OUT_OF_CREDITS: (429, "RESOURCE_EXHAUSTED"),
    ErrorKind.RATE_LIMITED: (429, "RESOURCE_EXHAUSTED"),
    ErrorKind.OVERLOADED: (503, "UNAVAILABLE"),
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


def error_response(error: FlashbulbError) -> JSONResponse:
    code, body = google_error_body(error)
    headers = {"retry-after": str(error.retry_after_s)} if error.retry_after_s else None
    return JSONResponse(body, status_code=code, headers=headers)


async def on_flashbulb_error(_request: Request, error: FlashbulbError) -> JSONResponse:
    return error_response(error)


async def on_validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    return error_response(FlashbulbError(ErrorKind.INVALID_ARGUMENT, describe_validation(error.errors())))


async def on_http_error(_request: Request, error: HTTPException) -> JSONResponse:
    kind = {404: ErrorKind.NOT_FOUND, 405: ErrorKind.NOT_FOUND}.get(error.status_code, ErrorKind.INVALID_ARGUMENT)
    message = "Method not found." if error.status_code in (404, 405) else str(error.detail)
    return error_response(FlashbulbError(kind, message))


def describe_validation(errors: list[dict]) -> str:
    """pydantic errors -> one sentence naming each field that is wrong."""
    parts = []
    for err in errors[:5]:
        location = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"Invalid value at '{location}': {err.get('msg')}" if location else str(err.get("msg")))
    return "; ".join(parts)


def install(app) -> None:  # noqa: ANN001
    app.add_exception_handler(FlashbulbError, on_flashbulb_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)

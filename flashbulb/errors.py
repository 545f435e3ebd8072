"""Domain errors. Every layer raises these; only api/errors.py turns them into a wire format."""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    """What went wrong, independent of any wire format (values follow google.rpc.Code names)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    API_KEY_MISSING = "API_KEY_MISSING"
    API_KEY_INVALID = "API_KEY_INVALID"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"  # e.g. the model asked for is not installed
    ALREADY_EXISTS = "ALREADY_EXISTS"
    TOO_LARGE = "TOO_LARGE"  # the request body is over the limit (413 where the wire format has one)
    OUT_OF_CREDITS = "OUT_OF_CREDITS"
    RATE_LIMITED = "RATE_LIMITED"
    OVERLOADED = "OVERLOADED"  # the model's queue is full: retry shortly
    UNAVAILABLE = "UNAVAILABLE"  # the model worker running the call died (it restarts): retry
    OUT_OF_MEMORY = "OUT_OF_MEMORY"  # the model ran out of GPU or CPU memory on this call
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    CANCELLED = "CANCELLED"
    INTERNAL = "INTERNAL"

    @property
    def fixed_by(self) -> str:
        """Who can put it right: "input" (change the request), "account" (its key, credits or
        limits), or "retry" (the server or the network failed; try again later)."""
        if self in _FIXED_BY_ACCOUNT:
            return "account"
        return "retry" if self in _FIXED_BY_RETRY else "input"


_FIXED_BY_ACCOUNT = {
    ErrorKind.API_KEY_MISSING,
    ErrorKind.API_KEY_INVALID,
    ErrorKind.PERMISSION_DENIED,
    ErrorKind.OUT_OF_CREDITS,
    ErrorKind.RATE_LIMITED,
}
_FIXED_BY_RETRY = {
    ErrorKind.OVERLOADED,
    ErrorKind.UNAVAILABLE,
    ErrorKind.OUT_OF_MEMORY,
    ErrorKind.DEADLINE_EXCEEDED,
    ErrorKind.CANCELLED,
    ErrorKind.INTERNAL,
}


class FlashbulbError(Exception):
    """An error the caller should see, with a message that names what is wrong."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        retry_after_s: int | None = None,
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s
        self.param = param  # the request field at fault, for wire formats that name it (OpenAI's `param`)
        self.code = code  # a finer machine-readable reason than `kind` (OpenAI's `code`)

    def __reduce__(self):  # it crosses the process boundary from a model worker
        return _rebuild, (self.kind, self.message, self.retry_after_s, self.param, self.code)


def _rebuild(kind: ErrorKind, message: str, retry_after_s: int | None, param: str | None, code: str | None) -> FlashbulbError:
    return FlashbulbError(kind, message, retry_after_s=retry_after_s, param=param, code=code)


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> FlashbulbError:
    return FlashbulbError(ErrorKind.INVALID_ARGUMENT, message, param=param, code=code)

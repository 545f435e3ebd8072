"""Reading untrusted request text: JSON bodies and whole numbers (page tokens, byte offsets), with
every way they can go wrong answered as a 400, never a 500."""

from __future__ import annotations

import json
from typing import Any

from flashbulb.errors import invalid

MAX_DIGITS = 18  # fits a 64-bit column on SQLite and PostgreSQL


def load_json(body: bytes, *, code: str | None = None) -> Any:
    """The JSON value of a request body (b"" is null)."""
    try:
        return json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid(f"Invalid JSON payload received: {exc}", code=code) from exc
    except RecursionError:  # [[[[... 100,000 deep
        raise invalid("Invalid JSON payload received: nested too deeply", code=code) from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise invalid(f"Invalid JSON payload received: {exc}".split(";")[0], code=code) from None


def whole_number(text: str, what: str, *, param: str | None = None) -> int:
    """An ASCII decimal of at most MAX_DIGITS digits ("²" passes str.isdigit, and int() refuses it)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS):
        raise invalid(f"{what} must be a whole number of at most {MAX_DIGITS} digits, not {text[:40]!r}", param=param)
    return int(text)

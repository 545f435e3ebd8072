"""flashbulb's own records (usage rows, statement entries, keys) as JSON: the one place their wire
shape is written, for the HTTP API and the CLI's --json alike. Field names as they are (snake_case),
UTC times to the second without a zone (as every flashbulb time on the wire)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any


def as_json(record: Any) -> dict[str, Any]:
    """A record dataclass as a JSON object."""
    return {field.name: _value(getattr(record, field.name)) for field in dataclasses.fields(record)}


def all_as_json(records: list[Any]) -> list[dict[str, Any]]:
    return [as_json(record) for record in records]


def wire_time(when: dt.datetime) -> str:
    """A UTC time as flashbulb shows it: to the second, without a zone (the CLI's tables too)."""
    return when.isoformat(timespec="seconds")


def _value(value: Any) -> Any:
    return wire_time(value) if isinstance(value, dt.datetime) else value

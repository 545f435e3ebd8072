"""The time flashbulb reads for what expires: API keys, redemption codes, holds, cached key lookups,
and every timestamp it stores. One per process. A test that runs the app in its own process
(tests/conftest.py `InProcess`) moves it forward instead of sleeping until something expires."""

from __future__ import annotations

import datetime as dt
import time


class Clock:
    def __init__(self) -> None:
        self.offset_s = 0.0

    def utcnow(self) -> dt.datetime:
        """Naive UTC: SQLite keeps no time zone, so every timestamp is stored as naive UTC."""
        return dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=self.offset_s)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


clock = Clock()

"""A model loaded on first use, once per process, even when several threads ask at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """`Lazy(build).get()` builds on the first call and returns the same object afterwards.

    `lock` serialises calls into models that are not thread-safe (mediapipe graphs, rapidocr).
    """

    def __init__(self, build: Callable[[], T]):
        self._build = build
        self._value: T | None = None
        self._build_lock = threading.Lock()
        self.lock = threading.Lock()

    def get(self) -> T:
        if self._value is None:
            with self._build_lock:
                if self._value is None:
                    self._value = self._build()
        return self._value

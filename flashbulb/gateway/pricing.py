"""Prices: what a request may cost (the hold) and what it did cost (the charge)."""

from __future__ import annotations

from flashbulb.engine.registry import ModelEntry
from flashbulb.engine.types import ImageRequest, ImageResult


def quote(entry: ModelEntry, request: ImageRequest) -> int:
    """The most this request can cost, in micro-USD: the hold covers every image it may return."""
    return entry.price_micros_per_image * max(1, request.n)


def charge(entry: ModelEntry, result: ImageResult) -> int:
    """What the result costs: only images actually returned are paid for."""
    return entry.price_micros_per_image * len(result.images)

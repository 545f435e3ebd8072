"""Prices: what a request may cost (the hold) and what it did cost (the charge)."""

from __future__ import annotations

from flashbulb.engine.registry import ModelEntry
from flashbulb.engine.types import ImageRequest, ImageResult


def unit_price(entry: ModelEntry, discount_percent: int = 0) -> int:
    """Micro-USD per image after a discount (batch items), rounded down: never more than the list price."""
    if not 0 <= discount_percent <= 100:
        raise ValueError(f"a discount of {discount_percent}% is not between 0 and 100")
    return entry.price_micros_per_image * (100 - discount_percent) // 100


def quote(entry: ModelEntry, request: ImageRequest, discount_percent: int = 0) -> int:
    """The most this request can cost, in micro-USD: the hold covers every image it may return."""
    return unit_price(entry, discount_percent) * max(1, request.n)


def charge(entry: ModelEntry, result: ImageResult, discount_percent: int = 0) -> int:
    """What the result costs: only images actually returned are paid for."""
    return unit_price(entry, discount_percent) * len(result.images)

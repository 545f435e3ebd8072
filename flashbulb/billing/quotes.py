"""Prices: what a request may cost (the hold) and what it did cost (the charge).

A `Quote` is taken once, when credit is held, and its unit prices are recorded on the hold: the
charge is computed from those, so a price change in flashbulb.toml never alters a held charge.
"""

from __future__ import annotations

import dataclasses

from flashbulb.billing.prices import PriceSchedule, normalise_quality, size_class
from flashbulb.engine.types import ImageRequest, ImageResult
from flashbulb.errors import invalid


@dataclasses.dataclass(frozen=True)
class Quote:
    """Unit prices in micro-USD after quality and discount (each rounded down: never above list)."""

    small: int
    standard: int
    large: int
    input_image: int
    images: int  # how many output images the hold covers
    inputs: int  # input images sent

    @property
    def hold_micros(self) -> int:
        """The most the request can cost: every image it may return at the dearest size class."""
        return max(self.small, self.standard, self.large) * self.images + self.input_image * self.inputs

    def unit(self, size: str) -> int:
        return {"small": self.small, "standard": self.standard, "large": self.large}[size]

    def charge_for(self, output_pixels: list[int]) -> int:
        """Only images actually returned are paid for; input images only when some image came back."""
        if not output_pixels:
            return 0
        return sum(self.unit(size_class(p)) for p in output_pixels) + self.input_image * self.inputs


def discounted(micros: int, percent_off: int) -> int:
    """A price after a discount (batch items), rounded down: never more than the list price."""
    if not 0 <= percent_off <= 100:
        raise ValueError(f"a discount of {percent_off}% is not between 0 and 100")
    return micros * (100 - percent_off) // 100


def quote(schedule: PriceSchedule, request: ImageRequest, discount_percent: int = 0) -> Quote:
    try:
        quality = normalise_quality(request.quality)
    except ValueError as exc:
        raise invalid(str(exc), param="quality") from None
    pct = schedule.percent(quality)

    def unit(list_micros: int) -> int:
        return discounted(list_micros * pct // 100, discount_percent)

    return Quote(
        small=unit(schedule.small),
        standard=unit(schedule.standard),
        large=unit(schedule.large),
        input_image=discounted(schedule.input_image, discount_percent),
        images=max(1, request.n),
        inputs=len(request.images),
    )


def charge(quoted: Quote, result: ImageResult) -> int:
    """What the result costs at the quoted prices."""
    return quoted.charge_for([im.width * im.height for im in result.images])

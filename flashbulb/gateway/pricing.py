"""Prices: what a request may cost (the hold) and what it did cost (the charge).

A `Quote` is taken once, when credit is held, and its unit prices are recorded on the hold: the
charge is computed from those, so a price change in flashbulb.toml never alters a held charge.
"""

from __future__ import annotations

import dataclasses

from flashbulb.engine.registry import ModelEntry
from flashbulb.engine.types import ImageRequest, ImageResult
from flashbulb.errors import invalid
from flashbulb.prices import normalise_quality, size_class


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

    def breakdown(self, output_pixels: list[int]) -> dict:
        """The response's `flashbulb.priceMicros`: what each part of the charge cost."""
        outputs = [{"sizeClass": size_class(p), "micros": self.unit(size_class(p))} for p in output_pixels]
        return {
            "outputImages": outputs,
            "inputImages": {
                "count": self.inputs,
                "unitMicros": self.input_image,
                "micros": self.input_image * self.inputs if outputs else 0,
            },
            "unitMicros": {"small": self.small, "standard": self.standard, "large": self.large, "inputImage": self.input_image},
        }


def unit_price(entry: ModelEntry, discount_percent: int = 0) -> int:
    """Micro-USD per standard image after a discount (batch items), rounded down: never more than the list price."""
    return _discounted(entry.price_micros_per_image, discount_percent)


def _discounted(micros: int, percent_off: int) -> int:
    if not 0 <= percent_off <= 100:
        raise ValueError(f"a discount of {percent_off}% is not between 0 and 100")
    return micros * (100 - percent_off) // 100


def quote(entry: ModelEntry, request: ImageRequest, discount_percent: int = 0) -> Quote:
    try:
        quality = normalise_quality(request.quality)
    except ValueError as exc:
        raise invalid(str(exc), param="quality") from None
    schedule = entry.prices
    pct = schedule.percent(quality)

    def unit(list_micros: int) -> int:
        return _discounted(list_micros * pct // 100, discount_percent)

    return Quote(
        small=unit(schedule.small),
        standard=unit(schedule.standard),
        large=unit(schedule.large),
        input_image=_discounted(schedule.input_image, discount_percent),
        images=max(1, request.n),
        inputs=len(request.images),
    )


def charge(quoted: Quote, result: ImageResult) -> int:
    """What the result costs at the quoted prices."""
    return quoted.charge_for([im.width * im.height for im in result.images])

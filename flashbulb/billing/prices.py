"""A model's price schedule, as the operator writes it in flashbulb.toml [prices] (integer micro-USD).

Per output image by size class of that image (its pixel count):

    small     <= 0.5 MP   (500_000 pixels: 512x512, 640x768 ...)
    standard  <= 1.2 MP   (1_200_000 pixels: 1024x1024, 896x1152 ...)
    large      > 1.2 MP   (1536x1024, 2048x2048 ...)

times the request's `quality` (OpenAI's low | medium | high, as a percent of that price; no quality
or "auto" is 100%), plus a price per input image. Batch items then get the batch discount.

    [prices]
    flashbulb-photo = "0.002"            # plain form: every size class, no input price
    [prices.flux2-klein-4b]             # table form: `image` is the standard (and default) price
    image = "0.02"
    small = "0.015"                      # optional; default: `image`
    large = "0.03"                       # optional; default: `image`
    input_image = "0.001"                # optional; default: 0
    quality = { low = 50, medium = 100, high = 150 }   # optional; percent, default 100
"""

from __future__ import annotations

import dataclasses

from flashbulb.billing.money import usd_to_micros

# What one standard-size image of each model costs when flashbulb.toml doesn't say (micro-USD).
# A model the operator adds `like` a catalog model costs what that one does.
LIST_PRICES = {
    "flashbulb-photo": 2_000,
    "flux2-klein-4b": 20_000,
    "qwen-image-edit-2509": 40_000,
    "z-image-turbo": 15_000,
    "flux1-schnell": 15_000,
    "flux1-kontext-dev": 30_000,
    "sdxl-turbo": 4_000,
    "sd-turbo": 2_000,
    "sdxl-inpainting": 10_000,
}
OWN_BACKEND_PRICE = 1_000  # an operator's own backend ([models.NAME] backend = ...) without a price

SIZE_CLASSES = ("small", "standard", "large")
SMALL_MAX_PIXELS = 500_000
STANDARD_MAX_PIXELS = 1_200_000
QUALITIES = ("low", "medium", "high")
# OpenAI's other spellings of quality, as they are priced ("auto" and none: no adjustment).
QUALITY_ALIASES = {"standard": "medium", "hd": "high", "auto": None}


def size_class(pixels: int) -> str:
    if pixels <= SMALL_MAX_PIXELS:
        return "small"
    return "standard" if pixels <= STANDARD_MAX_PIXELS else "large"


def normalise_quality(quality: str | None) -> str | None:
    if quality is None:
        return None
    quality = QUALITY_ALIASES.get(quality, quality)
    if quality is not None and quality not in QUALITIES:
        raise ValueError(f"quality {quality!r} is not one of {', '.join(QUALITIES)}")
    return quality


@dataclasses.dataclass(frozen=True)
class PriceSchedule:
    """List prices in micro-USD. `standard` is the model's headline price per image."""

    small: int
    standard: int
    large: int
    input_image: int = 0
    quality_percent: tuple[tuple[str, int], ...] = ()  # (("high", 150), ...); missing: 100

    @classmethod
    def flat(cls, per_image: int) -> PriceSchedule:
        return cls(small=per_image, standard=per_image, large=per_image)

    def percent(self, quality: str | None) -> int:
        return dict(self.quality_percent).get(quality, 100) if quality else 100

    def per_image(self, size: str) -> int:
        return {"small": self.small, "standard": self.standard, "large": self.large}[size]


def parse(model: str, value: object) -> PriceSchedule:
    """One entry of [prices]: a USD string/number (flat) or a table. Raises ValueError naming the field."""
    where = f"flashbulb.toml [prices] {model!r}"

    def usd(field: str, raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ValueError(f'{where}: {field} must be an amount of USD such as "0.02", not {raw!r}')
        try:
            micros = usd_to_micros(raw)
        except ValueError as exc:
            raise ValueError(f"{where}: {field}: {exc}") from None
        if micros < 0:
            raise ValueError(f"{where}: {field} must not be negative")
        return micros

    if not isinstance(value, dict):
        return PriceSchedule.flat(usd("price", value))
    unknown = set(value) - {"image", "small", "standard", "large", "input_image", "quality"}
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))}; use image, small, standard, large, input_image, quality"
        )
    if "image" in value and "standard" in value:
        raise ValueError(f"{where}: give `image` or `standard`, not both (they are the same price)")
    if "image" not in value and "standard" not in value:
        raise ValueError(f"{where}: needs `image`, the price of one standard-size output image")
    standard = usd("image", value.get("image", value.get("standard")))
    small = usd("small", value["small"]) if "small" in value else standard
    large = usd("large", value["large"]) if "large" in value else standard
    input_image = usd("input_image", value["input_image"]) if "input_image" in value else 0
    quality = value.get("quality", {})
    if not isinstance(quality, dict):
        raise ValueError(f"{where}: quality must be a table such as {{ low = 50, high = 150 }} (percent)")
    percents = []
    for name, pct in quality.items():
        if name not in QUALITIES:
            raise ValueError(f"{where}: quality.{name} is not one of {', '.join(QUALITIES)}")
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 1000:
            raise ValueError(f"{where}: quality.{name} must be a whole percent between 0 and 1000, not {pct!r}")
        percents.append((name, pct))
    return PriceSchedule(small, standard, large, input_image, tuple(sorted(percents)))


class PriceBook:
    """Every model's price schedule: the operator's (flashbulb.toml [prices], or a price in its
    [models.NAME] table), else the list price of the catalog model it is priced as."""

    def __init__(self, overrides: dict[str, PriceSchedule], priced_as: dict[str, str | None]) -> None:
        """`priced_as`: every model served, by name, and the catalog model whose list price it takes
        (None: an operator's own backend, OWN_BACKEND_PRICE unless `overrides` price it)."""
        if unknown := set(overrides) - set(priced_as):
            raise ValueError(
                f"flashbulb.toml [prices]: no model named {', '.join(sorted(unknown))}; models: {', '.join(priced_as)}"
            )
        unpriced = {
            like for name, like in priced_as.items() if like is not None and like not in LIST_PRICES and name not in overrides
        }
        if missing := sorted(unpriced):
            raise ValueError(f"no list price for {', '.join(missing)} (flashbulb.billing.prices.LIST_PRICES)")
        self._schedules = {
            name: overrides.get(name) or PriceSchedule.flat(OWN_BACKEND_PRICE if like is None else LIST_PRICES[like])
            for name, like in priced_as.items()
        }

    def schedule(self, model: str) -> PriceSchedule:
        return self._schedules[model]

"""Output shapes: the Gemini aspect ratios, the pixel size each is drawn at, and `imageSize`.

The 1K sizes of the first ten ratios are gemini-2.5-flash-image's; the four tall and wide ones
Gemini 3.1 added (1:4, 4:1, 1:8, 8:1) are scaled to about the same area, in multiples of 16, and
1:8 is kept a little smaller so that its 4K size stays within MAX_OUTPUT_PIXELS.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from flashbulb.errors import invalid

if TYPE_CHECKING:
    from flashbulb.engine.types import ImageRequest

GEMINI_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
    "1:4": (512, 2048),
    "4:1": (2048, 512),
    "1:8": (352, 2816),
    "8:1": (2816, 352),
}
# imageConfig.imageSize: each side of the 1K size times this ("512" is Gemini 3.1 Flash's smallest).
IMAGE_SIZES: dict[str, float] = {"512": 0.5, "1K": 1.0, "2K": 2.0, "4K": 4.0}


def check_aspect_ratio(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    ratio = value.strip()
    if ratio not in GEMINI_SIZES:
        raise invalid(f"imageConfig.aspectRatio {value!r} is not supported; use one of {', '.join(GEMINI_SIZES)}")
    return ratio


def check_image_size(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    size = value.strip().upper()
    if size not in IMAGE_SIZES:
        raise invalid(f"imageConfig.imageSize {value!r} is not supported; use one of {', '.join(IMAGE_SIZES)}")
    return size


def ratio_value(ratio: str) -> float:
    w, h = (int(x) for x in ratio.split(":"))
    return w / h


def nearest_ratio(width: int, height: int) -> str:
    """The Gemini aspect ratio closest to a width x height (an edit keeps its photo's shape)."""
    wanted = math.log(width / height)
    return min(GEMINI_SIZES, key=lambda ratio: abs(math.log(ratio_value(ratio)) - wanted))


def ratio_of(request: ImageRequest) -> str:
    """The ratio a request is drawn at: the one asked, else its first photo's nearest, else 1:1."""
    if request.aspect_ratio:
        return request.aspect_ratio
    return nearest_ratio(*request.images[0].size) if request.images else "1:1"


def sized(ratio: str, image_size: str) -> tuple[int, int]:
    """The pixels Gemini returns for an aspect ratio at an imageSize (multiples of 16)."""
    factor = IMAGE_SIZES[image_size]
    width, height = GEMINI_SIZES[ratio]
    return round(width * factor / 16) * 16, round(height * factor / 16) * 16

"""Aspect ratios of gemini-2.5-flash-image and the pixel size it generates for each."""

from __future__ import annotations

from flashbulb.errors import invalid

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
}


def check_aspect_ratio(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    ratio = value.strip()
    if ratio not in GEMINI_SIZES:
        raise invalid(f"imageConfig.aspectRatio {value!r} is not supported; use one of {', '.join(GEMINI_SIZES)}")
    return ratio


def ratio_value(ratio: str) -> float:
    w, h = (int(x) for x in ratio.split(":"))
    return w / h

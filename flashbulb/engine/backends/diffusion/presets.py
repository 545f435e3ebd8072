"""Prompt craft: the user's prompt goes to the model word for word ("Sony a7 IV, 85mm, f/1.8,
Rembrandt lighting" included); a preset only appends a style and supplies a negative prompt.

The system instruction chooses them, one directive per line, anything else is extra style:

    preset: headshot
    negative: sunglasses, hats
    warm film colours
"""

from __future__ import annotations

import dataclasses
import re

from flashbulb.errors import invalid


@dataclasses.dataclass(frozen=True)
class Preset:
    style: str
    negative: str


PRESETS: dict[str, Preset] = {
    "headshot": Preset(
        style="professional headshot, head and shoulders, eyes in sharp focus, natural skin texture, "
        "soft key light with gentle fill, uncluttered background",
        negative="cartoon, illustration, plastic skin, over-smoothed skin, distorted face, extra fingers, "
        "blurry, watermark, text",
    ),
    "product": Preset(
        style="commercial product photograph, seamless backdrop, softbox lighting, crisp detail, "
        "accurate colour, soft contact shadow",
        negative="clutter, people, hands, reflections of the photographer, blurry, watermark, garbled text",
    ),
    "street": Preset(
        style="candid street photograph, natural daylight, 35mm lens, realistic signage with clean, legible lettering",
        negative="illustration, cgi, garbled text, misspelled signs, warped letters, blurry, watermark",
    ),
}

_DIRECTIVE = re.compile(r"^\s*(preset|negative)\s*:\s*(.*?)\s*$", re.I)


@dataclasses.dataclass(frozen=True)
class PromptPlan:
    prompt: str  # what the model is given: the user's words first, then any style
    negative: str
    preset: str | None


def plan(prompt: str, system: str = "") -> PromptPlan:
    """The model's prompt and negative prompt for a request (400 for an unknown preset)."""
    preset_name: str | None = None
    negatives: list[str] = []
    style: list[str] = []
    for line in system.splitlines():
        if match := _DIRECTIVE.match(line):
            key, value = match.group(1).lower(), match.group(2)
            if key == "preset":
                preset_name = value.lower()
            elif value:
                negatives.append(value)
        elif line.strip():
            style.append(line.strip())
    if preset_name is not None:
        if preset_name not in PRESETS:
            raise invalid(f"preset {preset_name!r} is unknown; use one of {', '.join(PRESETS)}")
        style.append(PRESETS[preset_name].style)
        negatives.insert(0, PRESETS[preset_name].negative)
    full = ", ".join(part for part in [prompt.strip(), *style] if part)
    return PromptPlan(prompt=full, negative=", ".join(negatives), preset=preset_name)

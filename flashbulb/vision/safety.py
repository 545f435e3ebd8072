"""Nudity safety verdicts (NudeNet's packaged 320n ONNX detector)."""

from __future__ import annotations

import dataclasses

import numpy as np

from flashbulb.vision.lazy import Lazy

# Explicit nudity; the operator can change the list in flashbulb.toml ([safety] block).
EXPLICIT = (
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_EXPOSED",
    "BUTTOCKS_EXPOSED",
)
MIN_SCORE = 0.5


@dataclasses.dataclass(frozen=True)
class Verdict:
    safe: bool
    found: tuple[str, ...]  # the blocked classes seen, with scores, for the log and the caller

    def as_json(self) -> dict[str, object]:
        return {"safe": self.safe, "found": list(self.found)}


def _detector():
    from nudenet import NudeDetector

    return NudeDetector()


_nudenet = Lazy(_detector)


def check(image: np.ndarray, block: tuple[str, ...] = EXPLICIT, min_score: float = MIN_SCORE) -> Verdict:
    bgr = np.ascontiguousarray(image[..., 2::-1], dtype=np.uint8)
    found = _nudenet.get().detect(bgr)  # onnxruntime sessions are safe to share between threads
    hits = sorted({f"{d['class']} {d['score']:.2f}" for d in found if d["class"] in block and d["score"] >= min_score})
    return Verdict(safe=not hits, found=tuple(hits))

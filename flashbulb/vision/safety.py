"""Nudity safety verdicts (NudeNet's packaged 320n ONNX detector)."""

from __future__ import annotations

import dataclasses

import numpy as np

from flashbulb.vision.lazy import Lazy
from flashbulb.vision.remembered import by_pixels

# Explicit nudity; the operator can change the list in flashbulb.toml ([safety] block).
EXPLICIT = (
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_EXPOSED",
    "BUTTOCKS_EXPOSED",
)
# How sure the detector must be to block, by how strict a caller asks it to be (engine/types.py
# SafetyLevel: Gemini's safetySettings, OpenAI's moderation). A caller can't turn the check off.
MIN_SCORES = {"strict": 0.3, "default": 0.5, "loose": 0.7}


@dataclasses.dataclass(frozen=True)
class Verdict:
    safe: bool
    found: tuple[str, ...]  # the blocked classes seen, with scores, for the log and the caller
    min_score: float = MIN_SCORES["default"]  # the detector's score from which a class blocks

    def as_json(self) -> dict[str, object]:
        return {"safe": self.safe, "found": list(self.found), "min_score": self.min_score}


def _detector():
    import os

    import nudenet

    from flashbulb.vision import cpu_session

    detector = nudenet.NudeDetector()
    if os.environ.get("OMP_NUM_THREADS"):
        # Replicas share the cores (the engine gave this worker a thread budget): nudenet's own
        # session takes every core and spins them idle after each run, 57-97 ms of CPU per 30-40 ms
        # check against 58-75 on the budget without spinning. A worker with the machine to itself
        # keeps the spinning: it answers a check 10-15 ms sooner (the measurement floor, bench/headshot_speed.py).
        detector.onnx_session = cpu_session(os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx"))
    return detector


_nudenet = Lazy(_detector)


def check(image: np.ndarray, block: tuple[str, ...] = EXPLICIT, level: str = "default", owner: int | None = None) -> Verdict:
    """`owner`: the account whose image it is, to answer its next check of the same pixels from memory."""
    min_score = MIN_SCORES[level]
    found = _detections(np.ascontiguousarray(image, dtype=np.uint8), owner)
    hits = sorted({f"{d['class']} {d['score']:.2f}" for d in found if d["class"] in block and d["score"] >= min_score})
    return Verdict(safe=not hits, found=tuple(hits), min_score=min_score)


@by_pixels(256)
def _detections(rgb: np.ndarray) -> list[dict]:
    return _nudenet.get().detect(np.ascontiguousarray(rgb[..., 2::-1]))  # onnxruntime sessions are thread-safe

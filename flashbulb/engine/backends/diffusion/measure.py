"""What each generated image is measured on — safety, the reference person's identity, quoted
text read back — and which of two attempts at the same image is the better one."""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from flashbulb.vision import ocr, safety
from flashbulb.vision.identity import THRESHOLD, Subject


@dataclasses.dataclass
class Measured:
    image: Image.Image
    seed: int
    safe: bool
    same_person: bool = True  # nothing to keep when the reference shows no face
    identity_distance: float | None = None
    faces_out: int | None = None
    ocr: dict | None = None  # {"read": [...], "wanted": [{"text", "accuracy"}]} when the prompt quotes text
    attempts: int = 1

    @property
    def text_missed(self) -> bool:
        return self.ocr is not None and min(w["accuracy"] for w in self.ocr["wanted"]) < 1.0

    @property
    def kept(self) -> bool:
        return self.safe and self.same_person

    def wants_retry(self, attempt: int) -> bool:
        """Unsafe or lost the face: retry every attempt allowed; text missed: retry once."""
        return not self.kept or (self.text_missed and attempt == 1)

    def score(self) -> tuple:
        text = sum(w["accuracy"] for w in self.ocr["wanted"]) if self.ocr else 0.0
        distance = self.identity_distance if self.identity_distance is not None else 9.0
        return (self.safe, self.same_person, -distance, text)

    def public(self) -> dict:
        """This image's measurements as the caller sees them."""
        found: dict = {"seed": self.seed, "attempts": self.attempts, "safe": self.safe, "same_person": self.same_person}
        if self.faces_out is not None:
            found |= {"identity_distance": self.identity_distance, "faces_out": self.faces_out}
        return found | ({"ocr": self.ocr} if self.ocr else {})


def measure(
    image: Image.Image, seed: int, prompt: str, subject: Subject | None, safety_block: tuple[str, ...], safety_level: str
) -> Measured:
    rgb = np.asarray(image.convert("RGB"))
    found = Measured(image=image, seed=seed, safe=safety.check(rgb, safety_block, safety_level).safe, ocr=ocr.check(prompt, rgb))
    if subject is not None and subject.embeddings:
        identity = subject.compare(rgb)
        found.identity_distance = identity["identity_distance"][0]
        found.faces_out = identity["faces_out"]
        found.same_person = identity["same_person"]
    return found


def better(old: Measured, new: Measured) -> Measured:
    best = new if new.score() > old.score() else old
    return dataclasses.replace(best, attempts=old.attempts + 1)


def identity_summary(subject: Subject, images: list[Measured]) -> dict:
    """The same fields flashbulb-photo reports, over every image of the request."""
    return {
        "faces_in": len(subject.embeddings),
        "faces_out": max((m.faces_out or 0 for m in images), default=0),
        "identity_distance": [m.identity_distance for m in images],
        "identity_threshold": THRESHOLD,
        "same_person": all(m.same_person for m in images),
    }

"""Reading text back out of an image (rapidocr-onnxruntime's packaged PP-OCR models)."""

from __future__ import annotations

import difflib
import re

import numpy as np

from flashbulb.vision.lazy import Lazy


def _reader():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


_ocr = Lazy(_reader)
_QUOTED = re.compile(r"'([^']{1,80})'|\"([^\"]{1,80})\"|“([^”]{1,80})”|‘([^’]{1,80})’")


def read_lines(image: np.ndarray) -> list[str]:
    """Text lines found in a uint8 RGB image, top to bottom."""
    bgr = np.ascontiguousarray(image[..., 2::-1], dtype=np.uint8)
    model = _ocr.get()
    with _ocr.lock:
        found, _ = model(bgr)
    return [text for _box, text, _score in sorted(found or [], key=lambda item: item[0][0][1])]


def quoted(prompt: str) -> list[str]:
    """The text a prompt asks to see in the picture: whatever it puts in quotes."""
    return [next(g for g in match.groups() if g) for match in _QUOTED.finditer(prompt)]


def _normal(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def accuracy(wanted: str, lines: list[str]) -> float:
    """How well `wanted` was read back: 1.0 when some line contains it exactly (ignoring case and punctuation)."""
    target = _normal(wanted)
    if not target:
        return 1.0
    best = 0.0
    for line in lines:
        read = _normal(line)
        if target in read:
            return 1.0
        match = difflib.SequenceMatcher(None, target, read).find_longest_match(0, len(target), 0, len(read))
        best = max(best, difflib.SequenceMatcher(None, target, read).ratio(), match.size / len(target))
    return round(best, 3)


def check(prompt: str, image: np.ndarray) -> dict[str, object] | None:
    """For a prompt that quotes text: what was read and how accurately each quote came out."""
    wanted = quoted(prompt)
    if not wanted:
        return None
    lines = read_lines(image)
    return {"read": lines, "wanted": [{"text": w, "accuracy": accuracy(w, lines)} for w in wanted]}

"""Which region an inpainting edit repaints, from the photo engine's person segmentation and faces."""

from __future__ import annotations

import re

import numpy as np

from flashbulb.vision import faces, segment

_CLOTHING = re.compile(
    r"\b(cloth\w*|outfit|wear\w*|shirt|t-shirt|blouse|jacket|blazer|suit|coat|dress|sweater|hoodie|top|uniform|tie)\b", re.I
)
_BACKGROUND = re.compile(r"\b(background|backdrop|behind|scene|setting|room|street|sidewalk|office|studio|outdoors?)\b", re.I)

REGIONS = ("clothing", "background", "all but the face")


def region_for(prompt: str) -> str:
    """Clothing words win over place words: "a navy blazer in an office" changes the blazer."""
    if _CLOTHING.search(prompt):
        return "clothing"
    if _BACKGROUND.search(prompt):
        return "background"
    return "all but the face"


def _face_ellipses(shape: tuple[int, int], found: list[faces.Face], grow: float = 1.35) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    mask = np.zeros((h, w), np.float32)
    for face in found:
        cx, cy = face.center
        rx, ry = face.width * grow / 2, face.height * grow * 1.2 / 2
        mask = np.maximum(mask, (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.float32))
    return mask


def region_mask(rgb: np.ndarray, region: str) -> np.ndarray:
    """Float32 HxW, 1 where the model repaints. Faces (with a margin) are never repainted."""
    found = faces.find(rgb)
    keep_faces = _face_ellipses(rgb.shape[:2], found)
    person = segment.person_mask(rgb)
    if region == "background":
        mask = 1.0 - person
    elif region == "clothing":
        # The person below the chin: the lowest face's chin line, with a little room for the neck.
        chin = max((f.box[3] + 0.15 * f.height for f in found), default=0.0)
        below = (np.arange(rgb.shape[0], dtype=np.float32)[:, None] >= chin).astype(np.float32)
        mask = person * below
    else:
        mask = np.ones(rgb.shape[:2], np.float32)
    return np.clip(mask - keep_faces, 0.0, 1.0)

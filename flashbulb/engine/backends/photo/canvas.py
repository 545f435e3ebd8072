"""The image being edited, as float32 RGB in 0..1 (plus optional alpha), and what we know about it.

Operations replace `rgb`/`alpha` through `set`, which forgets the faces and the person mask found
on the old pixels, so the next operation that asks sees the current image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from flashbulb.vision import faces as face_finder
from flashbulb.vision import segment


def to_float(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0 if image.mode == "RGBA" else None
    return rgb, alpha


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def to_image(rgb: np.ndarray, alpha: np.ndarray | None = None) -> Image.Image:
    pixels = to_uint8(rgb)
    if alpha is None:
        return Image.fromarray(pixels)
    opacity = to_uint8(alpha)
    # What is fully transparent is cleared: a cut-out must not carry the old background hidden under
    # alpha 0 (measured before: identical to the input there, shown by any viewer that drops alpha).
    pixels[opacity == 0] = 0
    image = Image.fromarray(pixels)
    image.putalpha(Image.fromarray(opacity))
    return image


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


class Canvas:
    def __init__(self, image: Image.Image):
        self.rgb, self.alpha = to_float(image)
        self._faces: list[face_finder.Face] | None = None
        self._person: np.ndarray | None = None
        self._subject = "person"

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]

    def set(self, rgb: np.ndarray, alpha: np.ndarray | None = None, keep_analysis: bool = False) -> None:
        """Replace the pixels. `keep_analysis` only for edits that move no pixel (colour changes)."""
        self.rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
        self.alpha = alpha
        if not keep_analysis:
            self._faces = self._person = None

    def uint8(self) -> np.ndarray:
        return to_uint8(self.rgb)

    def faces(self) -> list[face_finder.Face]:
        if self._faces is None:
            self._faces = face_finder.find(self.uint8())
        return self._faces

    def person(self) -> np.ndarray:
        """Soft mask of who or what is in front, HxW float32 in 0..1: the person where a face was
        found, else the salient object (a cat, a cup and its saucer) where the matting files are
        installed. `subject()` says which."""
        if self._person is None:
            salient = None if self.faces() else segment.subject_mask(self.uint8())
            self._subject = "person" if salient is None else "object"
            self._person = segment.person_mask(self.uint8()) if salient is None else salient
        return self._person

    def subject(self) -> str:
        """ "person" or "object": what `person()` covers."""
        self.person()
        return self._subject

    def face_mask(self, grow: float = 1.3, soft: float = 0.15) -> np.ndarray:
        """Soft ellipses over the faces (1 inside), for treating faces differently from the rest."""
        h, w = self.rgb.shape[:2]
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        mask = np.zeros((h, w), np.float32)
        for face in self.faces():
            cx, cy = face.center
            rx, ry = face.width * grow / 2, face.height * grow * 1.15 / 2
            r = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
            mask = np.maximum(mask, np.clip((1 + soft - r) / soft, 0, 1))
        return mask

    def image(self) -> Image.Image:
        return to_image(self.rgb, self.alpha)

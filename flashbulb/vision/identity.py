"""Who is in a photo: dlib's 128-d face embeddings (face-recognition-models weights).

Two faces closer than THRESHOLD (Euclidean) are the same person, the rule those weights were trained for.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TypedDict

import numpy as np

from flashbulb.vision import faces as face_finder
from flashbulb.vision.lazy import Lazy
from flashbulb.vision.remembered import by_pixels

THRESHOLD = 0.6


class _Models:
    def __init__(self) -> None:
        import dlib

        self.dlib = dlib
        self.landmarks = dlib.shape_predictor(str(_weights("shape_predictor_5_face_landmarks.dat")))
        self.encoder = dlib.face_recognition_model_v1(str(_weights("dlib_face_recognition_resnet_model_v1.dat")))


def _weights(name: str) -> Path:
    """A file of the face-recognition-models wheel, found without importing it (its __init__
    needs pkg_resources, which current setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    assert spec is not None and spec.submodule_search_locations, "face-recognition-models is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "models" / name


_models = Lazy(_Models)


def embeddings(image: np.ndarray, faces: list[face_finder.Face] | None = None, owner: int | None = None) -> list[np.ndarray]:
    """One embedding per face (largest first); faces are found with mediapipe unless given (and kept
    for `owner`'s next call on the same pixels: remembered.by_pixels)."""
    rgb = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    if faces is None:
        return _faces_embedded(rgb, owner)
    models = _models.get()
    result = []
    for face in faces:
        x0, y0, x1, y1 = face.box
        shape = models.landmarks(rgb, models.dlib.rectangle(x0, y0, x1, y1))
        result.append(np.array(models.encoder.compute_face_descriptor(rgb, shape), dtype=np.float32))
    return result


@by_pixels(256)
def _faces_embedded(rgb: np.ndarray) -> list[np.ndarray]:
    return embeddings(rgb, face_finder.detect(rgb))


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


def nearest(reference: np.ndarray, candidates: list[np.ndarray]) -> float | None:
    """Distance from one face to the closest of several; None when there are none."""
    return min((distance(reference, c) for c in candidates), default=None)


class Comparison(TypedDict):
    faces_in: int
    faces_out: int
    identity_distance: list[float | None]  # per input face, largest first; None: it is gone
    identity_threshold: float
    same_person: bool


class Subject:
    """The people in the photo the edit started from, measured once."""

    def __init__(self, rgb: np.ndarray, owner: int | None = None):
        self.owner = owner  # the account whose photo it is (remembered.by_pixels)
        self.embeddings = embeddings(rgb, owner=owner)

    def compare(self, output_rgb: np.ndarray) -> Comparison:
        """Per input face (largest first): the distance to the closest output face, None if it is gone."""
        found = embeddings(output_rgb, owner=self.owner)
        distances = [None if d is None else round(d, 3) for d in (nearest(e, found) for e in self.embeddings)]
        main = distances[0] if distances else None
        return {
            "faces_in": len(self.embeddings),
            "faces_out": len(found),
            "identity_distance": distances,
            "identity_threshold": THRESHOLD,
            # No face to keep is no risk; a main face that vanished or changed is.
            "same_person": not self.embeddings or (main is not None and main < THRESHOLD),
        }

"""Who is in a photo: dlib's 128-d face embeddings (face-recognition-models weights).

Two faces closer than THRESHOLD (Euclidean) are the same person, the rule those weights were trained for.
"""

from __future__ import annotations

import numpy as np

from flashbulb.vision import faces as face_finder
from flashbulb.vision.lazy import Lazy

THRESHOLD = 0.6


class _Models:
    def __init__(self) -> None:
        import dlib
        import face_recognition_models as weights

        self.dlib = dlib
        self.landmarks = dlib.shape_predictor(weights.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(weights.face_recognition_model_location())


_models = Lazy(_Models)


def embeddings(image: np.ndarray, faces: list[face_finder.Face] | None = None) -> list[np.ndarray]:
    """One embedding per face (largest first); faces are found with mediapipe unless given."""
    rgb = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    if faces is None:
        faces = face_finder.detect(rgb)
    models = _models.get()
    result = []
    for face in faces:
        x0, y0, x1, y1 = face.box
        shape = models.landmarks(rgb, models.dlib.rectangle(x0, y0, x1, y1))
        result.append(np.array(models.encoder.compute_face_descriptor(rgb, shape), dtype=np.float32))
    return result


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


def nearest(reference: np.ndarray, candidates: list[np.ndarray]) -> float | None:
    """Distance from one face to the closest of several; None when there are none."""
    return min((distance(reference, c) for c in candidates), default=None)

"""Faces: detection and the 478-point face mesh (mediapipe's packaged .tflite models, CPU).

Coordinates are pixels of the image passed in. Faces come largest first: the first is "the subject".
"""

from __future__ import annotations

import dataclasses

import numpy as np

from flashbulb.vision.lazy import Lazy

# Mesh landmark indices we use (mediapipe's canonical face model).
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263  # the subject's right eye is on the image's left
NOSE_TIP, CHIN, FOREHEAD = 1, 152, 10


@dataclasses.dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    score: float
    # (478, 3): x and y in pixels, z (depth, towards the camera is negative) in the same pixel scale.
    mesh: np.ndarray | None = None

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    def roll_degrees(self) -> float:
        """How far the eye line is tilted from horizontal (positive: clockwise in the image)."""
        if self.mesh is None:
            return 0.0
        (x0, y0), (x1, y1) = self.mesh[RIGHT_EYE_OUTER, :2], self.mesh[LEFT_EYE_OUTER, :2]
        return float(np.degrees(np.arctan2(y1 - y0, x1 - x0)))


def _detector():
    from mediapipe.python.solutions import face_detection

    # model 1 is the full-range detector: faces from selfie distance to a few metres away.
    return face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)


def _mesher():
    from mediapipe.python.solutions import face_mesh

    return face_mesh.FaceMesh(static_image_mode=True, max_num_faces=8, refine_landmarks=True, min_detection_confidence=0.5)


_detection = Lazy(_detector)
_mesh = Lazy(_mesher)


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def detect(image: np.ndarray) -> list[Face]:
    """Face boxes in a uint8 RGB image, largest first, without meshes."""
    rgb = _rgb(image)
    h, w = rgb.shape[:2]
    model = _detection.get()
    with _detection.lock:
        found = model.process(rgb).detections or []
    faces = []
    for detection in found:
        box = detection.location_data.relative_bounding_box
        x0, y0 = max(0, round(box.xmin * w)), max(0, round(box.ymin * h))
        x1, y1 = min(w, round((box.xmin + box.width) * w)), min(h, round((box.ymin + box.height) * h))
        if x1 - x0 >= 8 and y1 - y0 >= 8:
            faces.append(Face((x0, y0, x1, y1), float(detection.score[0])))
    return sorted(faces, key=lambda f: -f.width * f.height)


def meshes(image: np.ndarray) -> list[np.ndarray]:
    """478-point meshes, (478, 3) arrays in pixels, one per face the mesh model finds."""
    rgb = _rgb(image)
    h, w = rgb.shape[:2]
    model = _mesh.get()
    with _mesh.lock:
        found = model.process(rgb).multi_face_landmarks or []
    return [np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], dtype=np.float32) for face in found]


def find(image: np.ndarray) -> list[Face]:
    """Detected faces, each with its mesh where the mesh model found that face too."""
    faces = detect(image)
    unmatched = meshes(image)
    result = []
    for face in faces:
        cx, cy = face.center
        best = min(unmatched, key=lambda m: np.hypot(*(m[:, :2].mean(axis=0) - (cx, cy))), default=None)
        if best is not None and np.hypot(*(best[:, :2].mean(axis=0) - (cx, cy))) < max(face.width, face.height) / 2:
            unmatched = [m for m in unmatched if m is not best]
            result.append(dataclasses.replace(face, mesh=best))
        else:
            result.append(face)
    return result

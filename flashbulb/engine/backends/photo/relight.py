"""Portrait relighting: named lighting setups shaded onto surface normals taken from the face mesh.

Normals come from two sources: inside each face, the 478-point mesh's depth (interpolated to every
pixel); elsewhere on the person, the silhouette (a soft mask read as a height field, so the body
turns away from the camera at its edges). Light is applied in linear light as a gain relative to a
frontal light, so a surface facing the camera keeps its brightness and only the modelling changes.
"""

from __future__ import annotations

import cv2
import numpy as np

from flashbulb.engine.backends.photo import adjust
from flashbulb.engine.backends.photo.canvas import Canvas, luminance
from flashbulb.vision.faces import Face

# Direction towards the light for a key light on the image's right (x right, y down, z to the camera).
SETUPS = {
    "rembrandt": (0.70, -0.45, 0.55),  # 45 degrees to the side and above: the cheek triangle
    "loop": (0.45, -0.40, 0.80),  # a little to the side: a small nose shadow towards the cheek
    "butterfly": (0.0, -0.60, 0.80),  # front and above: a shadow under the nose
    "split": (1.0, -0.05, 0.05),  # 90 degrees: half the face in shadow
    "rim": (0.0, 0.0, -1.0),  # from behind: only the outline lights up
}
# The share of light that reaches every surface: low for the hard, contrasty setups.
AMBIENT = {"rembrandt": 0.3, "loop": 0.4, "butterfly": 0.4, "split": 0.15}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-6)


def silhouette_normals(person: np.ndarray) -> np.ndarray:
    h, w = person.shape
    height = cv2.GaussianBlur(person, (0, 0), max(h, w) / 30) * max(h, w) / 12
    gy, gx = np.gradient(height)
    return _unit(np.dstack([-gx, -gy, np.ones_like(gx)]))


def mesh_normals(mesh: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Normals from the mesh's depth over the face's bounding box; also a soft mask of where they hold."""
    h, w = shape
    x0, y0 = np.floor(mesh[:, :2].min(axis=0)).astype(int)
    x1, y1 = np.ceil(mesh[:, :2].max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    # Splat each landmark's depth (towards the camera is positive) and spread it with a wide Gaussian,
    # normalised by the spread weights: a smooth surface through the points, the face's shape and not
    # its wrinkles.
    size = max(x1 - x0, y1 - y0)
    depth_sum = np.zeros((y1 - y0, x1 - x0), np.float32)
    weight_sum = np.zeros_like(depth_sum)
    cols = np.clip(np.round(mesh[:, 0] - x0).astype(int), 0, x1 - x0 - 1)
    rows = np.clip(np.round(mesh[:, 1] - y0).astype(int), 0, y1 - y0 - 1)
    np.add.at(depth_sum, (rows, cols), -mesh[:, 2])
    np.add.at(weight_sum, (rows, cols), 1.0)
    sigma = max(1.0, size / 12)
    depth = cv2.GaussianBlur(depth_sum, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(weight_sum, (0, 0), sigma), 1e-6)
    inside = np.zeros_like(depth_sum)
    cv2.fillConvexPoly(inside, cv2.convexHull(np.stack([cols, rows], axis=1).astype(np.int32)), 1.0)
    gy, gx = np.gradient(depth)
    normals = _unit(np.dstack([-gx, -gy, np.ones_like(gx)]))
    inside = cv2.GaussianBlur(
        cv2.erode(inside, np.ones((3, 3), np.uint8), iterations=max(1, size // 40)), (0, 0), max(1.0, size / 30)
    )
    return normals, inside, (x0, y0, x1, y1)


def head_normals(normals: np.ndarray, face: Face) -> None:
    """An ellipsoid for the whole head around the face box (the mesh stops at the hairline)."""
    h, w = normals.shape[:2]
    cx, cy = face.center
    rx, ry = face.width * 0.75, face.height * 0.95
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    dx, dy = (xx - cx) / rx, (yy - cy + face.height * 0.1) / ry
    r2 = dx * dx + dy * dy
    sphere = _unit(np.dstack([dx, dy, np.sqrt(np.clip(1 - r2, 0.02, 1))]))
    weight = np.clip((1.0 - r2) / 0.25, 0, 1)[..., None]
    normals[:] = _unit(normals * (1 - weight) + sphere * weight)


def surface_normals(canvas: Canvas) -> tuple[np.ndarray, bool]:
    normals = silhouette_normals(canvas.person())
    used_mesh = False
    for face in canvas.faces():
        head_normals(normals, face)
        if face.mesh is None:
            continue
        face_normals, inside, (x0, y0, x1, y1) = mesh_normals(face.mesh, normals.shape[:2])
        inside = inside[..., None] * 0.7
        region = normals[y0:y1, x0:x1]
        normals[y0:y1, x0:x1] = _unit(region * (1 - inside) + face_normals * inside)
        used_mesh = True
    return normals, used_mesh


def light_direction(setup: str, side: str) -> np.ndarray:
    x, y, z = SETUPS[setup]
    return _unit(np.array([x if side == "right" else -x, y, z], np.float32))


def key_light(canvas: Canvas, setup: str, side: str, strength: float = 1.0) -> dict[str, object]:
    normals, used_mesh = surface_normals(canvas)
    person = canvas.person()[..., None]
    linear = canvas.rgb**2.2
    if setup == "rim":
        edge = np.clip(person[..., 0] - cv2.GaussianBlur(person[..., 0], (0, 0), max(canvas.size) / 120), 0, 1)
        band = (cv2.GaussianBlur(edge * 2.5, (0, 0), 2) * person[..., 0])[..., None]  # stays on the subject
        lit = linear * (1 - 0.25 * strength * person) * (1 - 0.35 * strength * (1 - person)) + band * 0.5 * strength
    else:
        light = light_direction(setup, side)
        shade = AMBIENT[setup] + (1 - AMBIENT[setup]) * np.clip(normals @ light, 0, None)
        # Relative to the person's average, so the lit side brightens as much as the other side darkens.
        weight = person[..., 0] * (1 + 4 * canvas.face_mask())
        gain = shade / max(float((shade * weight).sum() / max(weight.sum(), 1e-6)), 1e-3)
        gain = 1 + (np.clip(gain, 0.2, 1.8) - 1) * strength
        gain = cv2.GaussianBlur(gain.astype(np.float32), (0, 0), 1.5)[..., None]
        lit = linear * (gain * person + (1 - person) * (1 - 0.15 * strength))
    canvas.set(np.clip(lit, 0, 1) ** (1 / 2.2), canvas.alpha, keep_analysis=True)
    return {"setup": setup, "side": side, "from_face_mesh": used_mesh}


def soften(canvas: Canvas, amount: float = 0.5) -> None:
    """Lift shadows on the person towards their surroundings' level: a bigger, softer light."""
    grey = luminance(canvas.rgb)
    broad = cv2.GaussianBlur(grey, (0, 0), max(canvas.size) / 60)
    lift = np.clip(broad - grey, 0, None) * amount * canvas.person()
    canvas.set(canvas.rgb + lift[..., None], canvas.alpha, keep_analysis=True)


def dramatic(canvas: Canvas, amount: float = 0.6) -> None:
    """More contrast on the person, a darker, vignetted surround."""
    w, h = canvas.size
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    vignette = 1 - 0.45 * amount * np.clip(np.hypot((xx - w / 2) / w, (yy - h / 2) / h) * 1.6, 0, 1) ** 2
    person = canvas.person()[..., None]
    rgb = adjust.contrast(canvas.rgb, 0.5 * amount)
    rgb = rgb * (person + (1 - person) * (1 - 0.35 * amount)) * vignette[..., None]
    canvas.set(rgb, canvas.alpha, keep_analysis=True)


def relight(canvas: Canvas, setup: str | None, side: str, moods: list[str], strength: float = 1.0) -> dict[str, object]:
    report: dict[str, object] = {}
    if setup:
        report.update(key_light(canvas, setup, side, strength))
    for mood in moods:
        if mood == "softer":
            soften(canvas, 0.5 * strength)
        elif mood == "dramatic":
            dramatic(canvas, 0.6 * strength)
        else:
            warmth = 0.6 * strength if mood == "warm" else -0.6 * strength
            canvas.set(adjust.warmth(canvas.rgb, warmth), canvas.alpha, keep_analysis=True)
    report["moods"] = moods
    return report

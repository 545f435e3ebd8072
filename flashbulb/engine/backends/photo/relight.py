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
AMBIENT = {"rembrandt": 0.1, "loop": 0.25, "butterfly": 0.3, "split": 0.08}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-6)


def silhouette_normals(person: np.ndarray) -> np.ndarray:
    h, w = person.shape
    height = cv2.GaussianBlur(person, (0, 0), max(h, w) / 30) * max(h, w) / 12
    gy, gx = np.gradient(height)
    return _unit(np.dstack([-gx, -gy, np.ones_like(gx)]))


def mesh_normals(
    mesh: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int], np.ndarray]:
    """Normals from the mesh's depth over the face's bounding box; also a soft mask of where they
    hold, the box, and the depth itself (pixels towards the camera: what casts the nose's shadow)."""
    h, w = shape
    x0, y0 = np.floor(mesh[:, :2].min(axis=0)).astype(int)
    x1, y1 = np.ceil(mesh[:, :2].max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    # Splat each landmark's depth (towards the camera is positive) and spread it with a Gaussian,
    # normalised by the spread weights: a smooth surface through the points, the face's shape and not
    # its wrinkles. Measured on grace_hopper: a spread of a twelfth of the face blended the contour
    # into the cheeks (a mid-cheek normal 54 degrees sideways, so both sides of a shadow-side cheek
    # shaded alike); a thirtieth keeps the cheeks' planes (27 degrees) and the nose's ridge.
    size = max(x1 - x0, y1 - y0)
    depth_sum = np.zeros((y1 - y0, x1 - x0), np.float32)
    weight_sum = np.zeros_like(depth_sum)
    cols = np.clip(np.round(mesh[:, 0] - x0).astype(int), 0, x1 - x0 - 1)
    rows = np.clip(np.round(mesh[:, 1] - y0).astype(int), 0, y1 - y0 - 1)
    np.add.at(depth_sum, (rows, cols), -mesh[:, 2])
    np.add.at(weight_sum, (rows, cols), 1.0)
    sigma = max(1.0, size / 30)
    depth = cv2.GaussianBlur(depth_sum, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(weight_sum, (0, 0), sigma), 1e-6)
    inside = np.zeros_like(depth_sum)
    cv2.fillConvexPoly(inside, cv2.convexHull(np.stack([cols, rows], axis=1).astype(np.int32)), 1.0)
    gy, gx = np.gradient(depth)
    normals = _unit(np.dstack([-gx, -gy, np.ones_like(gx)]))
    inside = cv2.GaussianBlur(
        cv2.erode(inside, np.ones((3, 3), np.uint8), iterations=max(1, size // 40)), (0, 0), max(1.0, size / 30)
    )
    return normals, inside, (x0, y0, x1, y1), depth


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


def cast_shadow(depth: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Where the face's own relief (the nose, the brow) blocks `light`: 1 in shadow, 0 lit. A height-
    field test: from each pixel, step towards the light across the image; a surface higher than the
    ray at any step shades it."""
    across = float(np.hypot(light[0], light[1]))
    if across < 1e-3 or light[2] <= 0:
        return np.zeros_like(depth)
    dx, dy = light[0] / across, light[1] / across
    rise = light[2] / across  # how far the ray climbs towards the camera per pixel across
    h, w = depth.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    shadow = np.zeros_like(depth)
    for step in range(1, max(2, int(max(h, w) / 3))):
        ahead = cv2.remap(depth, xx + dx * step, yy + dy * step, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        shadow = np.maximum(shadow, np.clip((ahead - depth - rise * step) / 2.0, 0, 1))
    return shadow


def surface_normals(canvas: Canvas, light: np.ndarray | None = None) -> tuple[np.ndarray, bool, np.ndarray]:
    """Normals of the person (the face mesh inside each face), whether a mesh was used, and where
    the faces shadow themselves from `light` (0 everywhere without one)."""
    normals = silhouette_normals(canvas.person())
    shadow = np.zeros(normals.shape[:2], np.float32)
    used_mesh = False
    for face in canvas.faces():
        head_normals(normals, face)
        if face.mesh is None:
            continue
        face_normals, inside, (x0, y0, x1, y1), depth = mesh_normals(face.mesh, normals.shape[:2])
        weight = inside[..., None] * 0.9
        region = normals[y0:y1, x0:x1]
        normals[y0:y1, x0:x1] = _unit(region * (1 - weight) + face_normals * weight)
        if light is not None:
            cast = cast_shadow(depth, light) * inside
            soft = cv2.GaussianBlur(cast, (0, 0), max(1.0, (x1 - x0) / 60))
            shadow[y0:y1, x0:x1] = np.maximum(shadow[y0:y1, x0:x1], soft)
        used_mesh = True
    return normals, used_mesh, shadow


def light_direction(setup: str, side: str) -> np.ndarray:
    x, y, z = SETUPS[setup]
    return _unit(np.array([x if side == "right" else -x, y, z], np.float32))


def key_light(canvas: Canvas, setup: str, side: str, strength: float = 1.0) -> dict[str, object]:
    light = light_direction(setup, side) if setup != "rim" else None
    normals, used_mesh, shadow = surface_normals(canvas, light)
    person = canvas.person()[..., None]
    linear = canvas.rgb**2.2
    if setup == "rim":
        band = rim_band(canvas)[..., None]
        # The front loses its light and the surround darkens; the outline gets the light from behind,
        # more on bright texture than on dark (a wide grey glow on a navy uniform was the old look).
        base = linear * (1 - 0.3 * strength * person) * (1 - 0.35 * strength * (1 - person))
        lit = base + band * strength * (0.55 + 3.0 * linear)
    else:
        assert light is not None
        direct = np.clip(normals @ light, 0, None) * (1 - shadow)
        shade = AMBIENT[setup] + (1 - AMBIENT[setup]) * direct
        # Relative to the person's average, so the lit side brightens as much as the other side darkens.
        weight = person[..., 0] * (1 + 4 * canvas.face_mask())
        gain = shade / max(float((shade * weight).sum() / max(weight.sum(), 1e-6)), 1e-3)
        gain = 1 + (np.clip(gain, 0.12, 2.2) - 1) * strength
        gain = cv2.GaussianBlur(gain.astype(np.float32), (0, 0), 1.5)[..., None]
        lit = linear * (gain * person + (1 - person) * (1 - 0.15 * strength))
    canvas.set(np.clip(lit, 0, 1) ** (1 / 2.2), canvas.alpha, keep_analysis=True)
    return {"setup": setup, "side": side, "from_face_mesh": used_mesh}


def rim_band(canvas: Canvas) -> np.ndarray:
    """Where a light from behind catches the subject, HxW in 0..1: a thin band just inside the
    outline (1/320 of the long side), on its top and sides (not where the frame cuts it, nor its
    bottom edge), off the face."""
    person = canvas.person()
    solid = (person > 0.5).astype(np.uint8)
    # The frame's border counts as inside: a subject cut by the frame has no outline there.
    padded = cv2.copyMakeBorder(solid, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    depth = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    width = max(1.5, max(canvas.size) / 320)
    band = np.exp(-((depth / width) ** 2)) * person
    gy, gx = np.gradient(cv2.GaussianBlur(person, (0, 0), width * 2))
    norm = np.hypot(gx, gy) + 1e-6
    facing = np.clip(0.35 + 0.9 * np.abs(gx / norm) + 0.6 * (gy / norm), 0, 1)  # outward is -gradient: up lit, down not
    band = band * facing * (1 - 0.85 * canvas.face_mask(grow=1.0))
    return cv2.GaussianBlur(band.astype(np.float32), (0, 0), 0.8)


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

"""Selfie -> profile photo: straighten, frame head and shoulders, clean background, flattering
light, a colour grade that leaves skin tone alone, then upscale."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from flashbulb.engine.aspect import ratio_value
from flashbulb.engine.backends.photo import background, relight, restore
from flashbulb.engine.backends.photo.canvas import Canvas
from flashbulb.engine.backends.photo.errors import EditRefused

DEFAULT_RATIO = "1:1"  # what profile sites crop to
FACE_SHARE = 0.36  # face height as a share of the frame height: head and shoulders
MIN_LONG_SIDE = 1024


def straighten(canvas: Canvas) -> float:
    """Rotate so the eyes are level; returns the correction in degrees."""
    face = canvas.faces()[0]
    roll = face.roll_degrees()
    if abs(roll) < 1.0:
        return 0.0
    matrix = cv2.getRotationMatrix2D(face.center, roll, 1.0)
    w, h = canvas.size
    rgb = cv2.warpAffine(canvas.rgb, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    alpha = None if canvas.alpha is None else cv2.warpAffine(canvas.alpha, matrix, (w, h), flags=cv2.INTER_LINEAR)
    canvas.set(rgb, alpha)
    return round(roll, 1)


def frame(canvas: Canvas, ratio: float) -> None:
    """Crop head and shoulders around the main face; where the frame leaves the photo, edges are
    mirrored (the new background covers them)."""
    face = canvas.faces()[0]
    cx, cy = face.center
    height = face.height / FACE_SHARE
    width = height * ratio
    x0, y0 = round(cx - width / 2), round(cy - height * 0.40)  # eyes a little above the middle
    x1, y1 = x0 + round(width), y0 + round(height)
    w, h = canvas.size
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    rgb = cv2.copyMakeBorder(canvas.rgb, pad, pad, pad, pad, cv2.BORDER_REFLECT) if pad else canvas.rgb
    canvas.set(rgb[y0 + pad : y1 + pad, x0 + pad : x1 + pad], None)


def grade(canvas: Canvas) -> float:
    """A gentle contrast curve and warmth on everything but skin, whose colour is kept.

    Returns the measured skin colour change (CIE76 delta E of the mean face colour)."""
    lab = cv2.cvtColor(canvas.rgb, cv2.COLOR_RGB2LAB)
    skin = canvas.face_mask(grow=1.0)
    before = lab[skin > 0.5].mean(axis=0) if (skin > 0.5).any() else None
    lightness = lab[..., 0] / 100
    lab[..., 0] = 100 * (lightness - 0.12 * np.sin(2 * np.pi * lightness) / (2 * np.pi))
    warm = np.array([0.0, 1.5, 3.0], np.float32) * (1 - skin)[..., None]
    lab[..., 1:] += warm[..., 1:]
    canvas.set(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), canvas.alpha, keep_analysis=True)
    if before is None:
        return 0.0
    after = cv2.cvtColor(canvas.rgb, cv2.COLOR_RGB2LAB)[skin > 0.5].mean(axis=0)
    return round(float(np.linalg.norm(after - before)), 2)


def headshot(
    canvas: Canvas, params: dict, ratio: str | None, environment: Image.Image | None, on_progress: Callable[[float], None]
) -> dict[str, object]:
    if not canvas.faces():
        raise EditRefused("flashbulb-photo found no face to make a headshot of; send a photo where the face is visible.")
    report: dict[str, object] = {"straightened_degrees": straighten(canvas)}
    frame(canvas, ratio_value(params.get("ratio") or ratio or DEFAULT_RATIO))
    on_progress(0.1)
    report.update(background.replace(canvas, **params.get("background", {"mode": "studio"}), environment=environment))
    report["light"] = relight.key_light(canvas, "loop", "left", strength=0.5)["setup"]
    relight.soften(canvas, 0.3)
    report["skin_tone_delta_e"] = grade(canvas)
    w, h = canvas.size
    scale = min(restore.MAX_SCALE, max(1.0, MIN_LONG_SIDE / max(w, h)))
    restore.super_resolve(canvas, scale, restore.noise_sigma(canvas.rgb), lambda f: on_progress(0.2 + 0.8 * f))
    report["scale"] = round(scale, 2)
    return report

"""Global adjustments: exposure, contrast, saturation, warmth, crop to an aspect ratio, resize."""

from __future__ import annotations

import cv2
import numpy as np

from flashbulb.engine.backends.photo.canvas import Canvas, luminance
from flashbulb.engine.imageio import MAX_OUTPUT_PIXELS, size_problem

MAX_STOPS = 10  # 1024x the light: white (or black) already; more overflows 2**stops


def exposure(rgb: np.ndarray, stops: float) -> np.ndarray:
    """Brighten or darken by photographic stops, in linear light, with highlights rolled off."""
    if abs(stops) > MAX_STOPS:
        raise ValueError(f"exposure changes of at most {MAX_STOPS} stops can be made; {stops:g} was asked")
    linear = rgb**2.2 * (2.0**stops)
    if stops > 0:
        linear = linear / (1 + linear * (1 - 2.0**-stops) * 0.5)  # soft shoulder: no hard clipping
    return np.clip(linear, 0, 1) ** (1 / 2.2)


def contrast(rgb: np.ndarray, amount: float) -> np.ndarray:
    """amount > 0 adds an S-curve around mid-grey, < 0 flattens it."""
    if amount >= 0:
        # slope 1 + amount at mid-grey, 1 - amount at the ends; monotonic for amount <= 1
        return rgb - min(amount, 0.9) * np.sin(2 * np.pi * rgb) / (2 * np.pi)
    return 0.5 + (rgb - 0.5) * (1 + amount)


def saturation(rgb: np.ndarray, factor: float) -> np.ndarray:
    grey = luminance(rgb)[..., None]
    return grey + (rgb - grey) * factor


def warmth(rgb: np.ndarray, amount: float) -> np.ndarray:
    """amount > 0 warmer (more red, less blue), < 0 cooler; luminance is kept."""
    gains = np.array([1 + 0.12 * amount, 1 + 0.02 * amount, 1 - 0.12 * amount], dtype=np.float32)
    shifted = rgb * gains
    return shifted * (luminance(rgb) / np.maximum(luminance(shifted), 1e-4))[..., None]


def crop_box(width: int, height: int, ratio: float, center: tuple[float, float] | None = None) -> tuple[int, int, int, int]:
    """The largest box of the given width/height ratio inside the image, centred where asked."""
    cx, cy = center or (width / 2, height / 2)
    if width / height > ratio:
        w, h = max(1, round(height * ratio)), height
    else:
        w, h = width, max(1, round(width / ratio))
    x0 = int(np.clip(round(cx - w / 2), 0, width - w))
    y0 = int(np.clip(round(cy - h / 2), 0, height - h))
    return x0, y0, x0 + w, y0 + h


def crop(canvas: Canvas, ratio: float) -> None:
    """Crop to an aspect ratio keeping the main face's whole head in frame, with some headroom above
    it, when the crop is tall enough; otherwise centred on the face. (Centring a little below the face
    cut the eyes off a portrait cropped to 16:9, measured.)"""
    faces = canvas.faces()
    center = None
    if faces:
        x0, top, x1, bottom = faces[0].box
        head_top, head_bottom = top - 0.45 * (bottom - top), bottom + 0.15 * (bottom - top)  # hair, chin
        _, box_top, _, box_bottom = crop_box(*canvas.size, ratio)
        h = box_bottom - box_top
        if h >= head_bottom - head_top:
            window_top = head_top - 0.15 * (h - (head_bottom - head_top))
            center = ((x0 + x1) / 2, window_top + h / 2)
        else:
            center = ((x0 + x1) / 2, (top + bottom) / 2)
    x0, y0, x1, y1 = crop_box(*canvas.size, ratio, center)
    canvas.set(canvas.rgb[y0:y1, x0:x1], None if canvas.alpha is None else canvas.alpha[y0:y1, x0:x1])


def resize(canvas: Canvas, width: int, height: int) -> None:
    if problem := size_problem(width, height, max_pixels=MAX_OUTPUT_PIXELS, what="the resized image"):
        raise ValueError(problem)
    shrinking = width * height < canvas.size[0] * canvas.size[1]
    method = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
    rgb = cv2.resize(canvas.rgb, (width, height), interpolation=method)
    alpha = None if canvas.alpha is None else cv2.resize(canvas.alpha, (width, height), interpolation=method)
    canvas.set(rgb, alpha)


def apply(canvas: Canvas, params: dict) -> None:
    rgb = canvas.rgb
    if "exposure" in params:
        rgb = exposure(rgb, params["exposure"])
    if "contrast" in params:
        rgb = contrast(rgb, params["contrast"])
    if "saturation" in params:
        rgb = saturation(rgb, params["saturation"])
    if "warmth" in params:
        rgb = warmth(rgb, params["warmth"])
    canvas.set(rgb, canvas.alpha, keep_analysis=True)
    if "crop" in params:
        width, height = (int(side) for side in params["crop"].split(":"))
        if not (width and height and max(width, height) <= 20 * min(width, height)):
            raise ValueError(f"can't crop to {params['crop']}: a ratio needs two positive sides, at most 20:1")
        crop(canvas, width / height)
    if "resize" in params:
        resize(canvas, *target_size(canvas.size, params["resize"]))


def target_size(size: tuple[int, int], spec: dict) -> tuple[int, int]:
    """{"width"}, {"height"} (the other side follows), {"width", "height"} or {"percent"}."""
    w, h = size
    if "percent" in spec:
        factor = spec["percent"] / 100
        return max(1, round(w * factor)), max(1, round(h * factor))
    if "width" in spec and "height" in spec:
        return spec["width"], spec["height"]
    if "width" in spec:
        return spec["width"], max(1, round(h * spec["width"] / w))
    return max(1, round(w * spec["height"] / h)), spec["height"]

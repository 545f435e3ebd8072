"""Global adjustments: exposure, contrast, saturation, warmth, crop to an aspect ratio, resize."""

from __future__ import annotations

import cv2
import numpy as np

from flashbulb.engine.aspect import GEMINI_SIZES, ratio_value
from flashbulb.engine.backends.photo.canvas import Canvas, luminance
from flashbulb.engine.backends.photo.errors import EditRefused
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


def head_box(face: tuple[int, int, int, int], width: int, height: int) -> tuple[float, float, float, float]:
    """The head around a face box: hair above, chin below, ears beside (as far as the photo shows it)."""
    x0, top, x1, bottom = face
    face_w, face_h = x1 - x0, bottom - top
    return (
        max(0.0, x0 - 0.15 * face_w),
        max(0.0, top - 0.45 * face_h),
        min(float(width), x1 + 0.15 * face_w),
        min(float(height), bottom + 0.15 * face_h),
    )


def crop(canvas: Canvas, ratio: str) -> None:
    """Crop to an aspect ratio ("16:9") keeping the main face's whole head in frame, with some
    headroom above it. (Centring a little below the face cut the eyes off a portrait cropped to 16:9,
    measured.) A ratio whose largest crop can't hold the head is refused, free, saying which ratios
    can: measured on grace_hopper, 21:9, 4:1, 1:4, 1:8 and 8:1 crops were returned with the head cut
    off and charged, or refused as "changed who the person is"."""
    width, height = canvas.size
    value = ratio_value(ratio)
    center = None
    if faces := canvas.faces():
        head_x0, head_top, head_x1, head_bottom = head_box(faces[0].box, width, height)
        head_w, head_h = head_x1 - head_x0, head_bottom - head_top
        box_x0, box_top, box_x1, box_bottom = crop_box(width, height, value)
        crop_w, crop_h = box_x1 - box_x0, box_bottom - box_top
        if crop_w < head_w or crop_h < head_h:
            # Wide crops are the photo's width by width/ratio, tall ones its height by height*ratio.
            fitting = [r for r in GEMINI_SIZES if head_w / height <= ratio_value(r) <= width / head_h]
            raise EditRefused(
                f"A {ratio} crop of this {width}x{height} photo is {crop_w}x{crop_h} px: too "
                f"{'short' if crop_h < head_h else 'narrow'} to keep the whole head ({head_w:.0f}x{head_h:.0f} px), "
                "so nothing was done or charged. "
                + (f"Ratios that keep it: {', '.join(fitting)}." if fitting else "No ratio's crop keeps it.")
            )
        window_top = head_top - 0.15 * (crop_h - head_h)  # the slack mostly below the chin: headroom above
        center = ((head_x0 + head_x1) / 2, window_top + crop_h / 2)
    x0, y0, x1, y1 = crop_box(width, height, value, center)
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
        crop(canvas, params["crop"])
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

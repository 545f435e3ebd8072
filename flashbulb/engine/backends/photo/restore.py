"""Restoration: dust and scratches, noise, faded colour, then Real-ESRGAN upscaling, faces kept natural.

Real-ESRGAN removes noise and JPEG blocks well but paints skin like plastic; on faces (and on clean
photos) part of the plain Lanczos upscale of the cleaned input is blended back, so texture, and
with it identity, survives.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from flashbulb.engine.backends.photo.canvas import Canvas, luminance, to_uint8
from flashbulb.engine.imageio import MAX_OUTPUT_PIXELS, size_problem
from flashbulb.vision import superres

MAX_SCALE = 4.0
DEFAULT_LONG_SIDE = 2048  # the default upscale stops where the long side would pass this
MAX_ENHANCE_INPUT_PIXELS = 1024 * 1024  # larger inputs are reduced first, so CPU time stays bounded
HEAVY_NOISE_SIGMA = 20.0  # beyond this Real-ESRGAN leaves blotches; non-local means goes first
# A faded print has lost its blacks and its tones span a short range; healthy photos, even dim or
# misty ones, keep a near-black (the 0.5th percentile of luminance is below 0.1 in every
# scikit-image photo).
FADED_BLACK, FADED_RANGE = 0.15, 0.75
# Below this a speck of dust and a real detail (a catch-light, JPEG ringing) are the same size.
MIN_DUST_SIDE = 256


def noise_sigma(rgb: np.ndarray) -> float:
    """Gaussian noise level in 0..255 units: Immerkær's fast estimate, averaged over the channels."""
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    levels = []
    for channel in range(3):
        response = np.abs(cv2.filter2D(rgb[..., channel] * 255.0, -1, kernel))[1:-1, 1:-1]
        levels.append(np.sqrt(np.pi / 2) * float(response.mean()) / 6)
    return float(np.mean(levels))


def remove_dust(canvas: Canvas) -> int:
    """Inpaint small specks that stand out from their neighbourhood; faces are left alone.

    Only small isolated blobs count as dust (edges and thin lines of the photo itself are long).
    Returns how many pixels were repaired (0 when the "specks" are really texture)."""
    if min(canvas.size) < MIN_DUST_SIDE:
        return 0
    grey = to_uint8(luminance(canvas.rgb))
    outside_faces = canvas.face_mask(grow=1.6) < 0.01
    outliers = (cv2.absdiff(grey, cv2.medianBlur(grey, 5)) > 60) & outside_faces
    _, labels, stats, _ = cv2.connectedComponentsWithStats(outliers.astype(np.uint8), connectivity=8)
    max_area = max(6, outliers.size // 40000)
    small = stats[:, cv2.CC_STAT_AREA] <= max_area
    small[0] = False  # the background label
    specks = small[labels]
    if not 0 < specks.mean() < 0.01:  # nothing to do, or texture everywhere: leave it
        return 0
    # Both uint8 (uint8 & bool stays uint8): cv2's stubs say any numeric dtype, numpy's would infer bool.
    dilated: np.ndarray = cv2.dilate(specks.astype(np.uint8), np.ones((3, 3), np.uint8))
    mask: np.ndarray = dilated & outside_faces
    repaired = cv2.inpaint(canvas.uint8(), mask, 3, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    canvas.set(np.where(mask[..., None] > 0, repaired, canvas.rgb), canvas.alpha, keep_analysis=True)
    return int(specks.sum())


def recover_colour(canvas: Canvas) -> bool:
    """Stretch faded levels per channel (which also removes a colour cast); no-op on healthy photos."""
    rgb = canvas.rgb
    dark, bright = np.percentile(luminance(rgb), [0.5, 99.5])
    if dark < FADED_BLACK or bright - dark > FADED_RANGE:
        return False
    low = np.percentile(rgb, 0.5, axis=(0, 1))
    high = np.percentile(rgb, 99.5, axis=(0, 1))
    span = np.maximum(high - low, 0.25)  # never stretch a channel more than 4x
    stretched = (rgb - low) / span
    faded_saturation = np.abs(rgb - luminance(rgb)[..., None]).mean() < 0.06
    if faded_saturation:
        grey = luminance(stretched)[..., None]
        stretched = grey + (stretched - grey) * 1.3
    canvas.set(stretched, canvas.alpha, keep_analysis=True)
    return True


def default_scale(width: int, height: int) -> float:
    long_side = max(width, height)
    for scale in (4.0, 2.0):
        if long_side * scale <= DEFAULT_LONG_SIDE:
            return scale
    return 1.0


def check_scale(width: int, height: int, scale: float) -> str | None:
    """Why this upscale can't be done, or None."""
    if not 1 <= scale <= MAX_SCALE:
        return f"flashbulb-photo upscales between 1x and {MAX_SCALE:g}x; {scale:g}x was asked."
    out_w, out_h = round(width * scale), round(height * scale)
    problem = size_problem(out_w, out_h, max_pixels=MAX_OUTPUT_PIXELS, what=f"{width}x{height} upscaled {scale:g}x")
    return f"{problem}. Ask for a smaller scale." if problem else None


def super_resolve(canvas: Canvas, scale: float, noise: float, on_progress: Callable[[float], None]) -> None:
    """Real-ESRGAN to `scale`, with natural detail blended back on faces and on clean photos."""
    w, h = canvas.size
    out_size = (round(w * scale), round(h * scale))
    source = canvas.rgb
    # The 4x network needs no more than a quarter of the output on each side: below 4x, its input is
    # reduced to that, and the faithful half of the blend below keeps the photo's own detail. A
    # 512 px headshot to 1024 px (2.56x) ran the network on 2.4x the pixels it needed.
    pixels = min(MAX_ENHANCE_INPUT_PIXELS, math.ceil(out_size[0] / 4) * math.ceil(out_size[1] / 4))
    if w * h > pixels:
        factor = (pixels / (w * h)) ** 0.5
        source = cv2.resize(source, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    network = superres.get_model().upscale4x(to_uint8(source), lambda done, total: on_progress(done / total))
    network = cv2.resize(network, out_size, interpolation=cv2.INTER_AREA if scale < 4 else cv2.INTER_LANCZOS4)
    network = network.astype(np.float32) / 255.0
    # Blend in a faithful version (lightly denoised, bicubic): on its own Real-ESRGAN invents texture
    # and scores no better than bicubic in PSNR; half and half beats both (bench/restore_quality.py),
    # and on faces the faithful share is larger so skin is not painted over.
    strength = float(np.clip(3 + noise * 0.4, 3, 12))
    faithful = cv2.fastNlMeansDenoisingColored(to_uint8(canvas.rgb), None, strength, strength, 7, 21)
    plain = cv2.resize(faithful.astype(np.float32) / 255.0, out_size, interpolation=cv2.INTER_CUBIC)
    keep_everywhere, keep_on_faces = 0.45, 0.6
    faces = cv2.resize(canvas.face_mask(), out_size, interpolation=cv2.INTER_LINEAR)[..., None]
    keep = keep_everywhere + (keep_on_faces - keep_everywhere) * faces
    alpha = None
    if canvas.alpha is not None:
        alpha = cv2.resize(canvas.alpha, out_size, interpolation=cv2.INTER_CUBIC)
    canvas.set(network * (1 - keep) + plain * keep, alpha)


def sharpen(canvas: Canvas, amount: float = 0.6) -> None:
    """Unsharp mask on the luminance only (no colour fringes), radius scaled to the image."""
    radius = max(1.0, max(canvas.size) / 1000)
    grey = luminance(canvas.rgb)
    detail = grey - cv2.GaussianBlur(grey, (0, 0), radius)
    canvas.set(canvas.rgb + amount * detail[..., None], canvas.alpha, keep_analysis=True)


def restore(canvas: Canvas, scale: float | None, on_progress: Callable[[float], None]) -> dict[str, object]:
    """The whole restoration; returns what it measured and did, for the caller."""
    noise = noise_sigma(canvas.rgb)
    report: dict[str, object] = {"noise_sigma": round(noise, 1)}
    report["dust_pixels_repaired"] = remove_dust(canvas)
    if noise > HEAVY_NOISE_SIGMA:
        strength = min(noise * 0.8, 30.0)
        denoised = cv2.fastNlMeansDenoisingColored(canvas.uint8(), None, strength, strength, 7, 21)
        canvas.set(denoised.astype(np.float32) / 255.0, canvas.alpha, keep_analysis=True)
        report["denoise_strength"] = round(strength, 1)
    report["colour_recovered"] = recover_colour(canvas)
    scale = scale if scale is not None else default_scale(*canvas.size)
    super_resolve(canvas, scale, noise, on_progress)
    report["scale"] = scale
    return report

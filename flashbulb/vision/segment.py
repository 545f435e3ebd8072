"""Person/background segmentation with soft edges that follow the photo (hair stays hair).

mediapipe's selfie segmentation gives a coarse 256x256 soft mask; a guided filter, guided by the
full-resolution photo, moves its edges onto the real ones.
"""

from __future__ import annotations

import cv2
import numpy as np

from flashbulb.vision.lazy import Lazy


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

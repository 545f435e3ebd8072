"""Every backend's first step: refuse, free of charge, a request whose input images are unsafe."""

from __future__ import annotations

import logging

import numpy as np

from flashbulb.engine.types import FinishReason, ImageRequest, ImageResult
from flashbulb.vision import safety

log = logging.getLogger(__name__)


def check_inputs(
    request: ImageRequest, images: list[np.ndarray], block: tuple[str, ...]
) -> tuple[list[safety.Verdict], ImageResult | None]:
    """The verdict on each uint8 RGB input (`request`'s images), and the IMAGE_SAFETY result to
    return if one is blocked."""
    verdicts = [safety.check(rgb, block, request.safety_level, request.owner) for rgb in images]
    for number, verdict in enumerate(verdicts, start=1):
        if not verdict.safe:
            log.warning("request %s: input image %d blocked by safety: %s", request.request_id, number, ", ".join(verdict.found))
            refused = ImageResult(
                text=f"Input image {number} was blocked by the safety check ({', '.join(verdict.found)}); nothing was charged.",
                finish_reason=FinishReason.IMAGE_SAFETY,
                quality={"safety": {"inputs": [v.as_json() for v in verdicts]}},
                input_blocked=True,
            )
            return verdicts, refused
    return verdicts, None

"""`flashbulb-photo`: offline photo restoration and upscaling (Real-ESRGAN x4plus on CPU via ncnn).

Read top to bottom: parse the instruction into a plan, then crop -> super-resolve -> sharpen.
"""

from __future__ import annotations

import time

from PIL import Image, ImageFilter

from flashbulb.engine.aspect import ratio_value
from flashbulb.engine.backends import photo_instructions
from flashbulb.engine.types import FinishReason, ImageRequest, ImageResult, JobContext
from flashbulb.vision import superres

MAX_SCALE = 4.0
DEFAULT_LONG_SIDE = 2048  # the default upscale stops where the long side would pass this
MAX_OUTPUT_PIXELS = 4096 * 4096
MAX_ENHANCE_INPUT_PIXELS = 1024 * 1024  # larger inputs are reduced first, so CPU time stays bounded

DESCRIPTION = (
    "Offline photo restoration and upscaling (Real-ESRGAN x4plus, CPU). Send one photo and an "
    "instruction. Understood words: " + photo_instructions.vocabulary() + ". Up to 4x; without a "
    "scale it upscales 4x, 2x or 1x so the long side stays within 2048 px. imageConfig.aspectRatio "
    "centre-crops first."
)


def _no_image(text: str) -> ImageResult:
    return ImageResult(text=text, finish_reason=FinishReason.NO_IMAGE)


class PhotoBackend:
    name = "flashbulb-photo"

    def __init__(self) -> None:
        superres.get_model()  # load the weights now (warm-up), not inside the first request

    def run(self, request: ImageRequest, job: JobContext) -> ImageResult:
        if not request.images:
            return _no_image(
                "flashbulb-photo edits the photo you send: attach an image with an instruction such as "
                "'restore this old photo' or 'upscale 2x'."
            )
        plan = photo_instructions.parse(request.prompt)
        if plan.not_understood:
            return _no_image(
                f"flashbulb-photo can't do {', '.join(repr(c) for c in plan.not_understood)}. "
                f"It understands — {photo_instructions.vocabulary()}."
            )
        steps = plan.steps or ["restore"]
        image = request.images[0]
        timings: dict[str, float] = {}

        if request.aspect_ratio:
            image = _timed(timings, "crop", lambda: center_crop(image, ratio_value(request.aspect_ratio)))

        scale = plan.scale if plan.scale is not None else default_scale(image)
        if not 1 <= scale <= MAX_SCALE:
            return _no_image(f"flashbulb-photo upscales between 1x and {MAX_SCALE:g}x; {scale:g}x was asked.")
        out_w, out_h = round(image.width * scale), round(image.height * scale)
        if out_w * out_h > MAX_OUTPUT_PIXELS:
            return _no_image(
                f"{image.width}x{image.height} upscaled {scale:g}x would be {out_w}x{out_h}; "
                f"the largest output is {MAX_OUTPUT_PIXELS:,} pixels. Ask for a smaller scale."
            )

        source = reduce_for_enhancement(image)
        enhance_scale = out_w / source.width
        image = _timed(
            timings,
            "superres",
            lambda: superres.upscale(source, enhance_scale, lambda done, total: job.progress(done / total)),
        )
        if image.size != (out_w, out_h):
            image = image.resize((out_w, out_h), Image.Resampling.LANCZOS)
        if "sharpen" in steps:
            image = _timed(timings, "sharpen", lambda: image.filter(ImageFilter.UnsharpMask(radius=2, percent=80, threshold=2)))

        done = {"restore": "restored", "upscale": "upscaled", "sharpen": "sharpened"}
        verbs = " and ".join(done[s] for s in steps)
        source_size = f"{request.images[0].width}x{request.images[0].height}"
        return ImageResult(
            images=[image],
            text=f"{verbs.capitalize()} with Real-ESRGAN x4plus ({scale:g}x): {source_size} → {out_w}x{out_h}.",
            finish_reason=FinishReason.STOP,
            timings_ms=timings,
        )


def default_scale(image: Image.Image) -> float:
    long_side = max(image.size)
    for scale in (4.0, 2.0):
        if long_side * scale <= DEFAULT_LONG_SIDE:
            return scale
    return 1.0


def reduce_for_enhancement(image: Image.Image) -> Image.Image:
    pixels = image.width * image.height
    if pixels <= MAX_ENHANCE_INPUT_PIXELS:
        return image
    factor = (MAX_ENHANCE_INPUT_PIXELS / pixels) ** 0.5
    return image.resize((max(1, int(image.width * factor)), max(1, int(image.height * factor))), Image.Resampling.LANCZOS)


def center_crop(image: Image.Image, ratio: float) -> Image.Image:
    w, h = image.size
    if w / h > ratio:
        new_w = max(1, round(h * ratio))
        left = (w - new_w) // 2
        return image.crop((left, 0, left + new_w, h))
    new_h = max(1, round(w / ratio))
    top = (h - new_h) // 2
    return image.crop((0, top, w, top + new_h))


def _timed(timings: dict[str, float], stage: str, work):  # noqa: ANN001, ANN202
    started = time.perf_counter()
    result = work()
    timings[stage] = round((time.perf_counter() - started) * 1000, 1)
    return result

"""Runs a `flashbulb-photo` request top to bottom: check the inputs are safe, parse the instruction,
apply each operation in order, then measure the result (identity, safety, text) and refuse to
return an edit that changed who the person is."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from flashbulb.engine.backends.photo import adjust, background, headshot, instructions, relight, restore
from flashbulb.engine.backends.photo.canvas import Canvas, to_uint8
from flashbulb.engine.backends.photo.errors import EditRefused
from flashbulb.engine.backends.photo.instructions import Operation
from flashbulb.engine.input_safety import check_inputs
from flashbulb.engine.types import FinishReason, ImageRequest, ImageResult, JobContext
from flashbulb.vision import ocr, safety, superres
from flashbulb.vision import warm_up as warm_up_vision
from flashbulb.vision.identity import Subject

log = logging.getLogger(__name__)
T = TypeVar("T")

DESCRIPTION = (
    "Offline photo editing on CPU: restore, background, relight, headshot and adjust, measured on every "
    "result (identity distance to the input face, faces found, safety verdict, text read back). Send one "
    "photo (a second one can be the new background) and an instruction; several edits run in order "
    "('restore it, then give it a blue studio background'). Understood words — "
    + instructions.vocabulary()
    + ". Upscaling is Real-ESRGAN x4plus, up to 4x; without a scale it upscales 4x, 2x or 1x so the long "
    "side stays within 2048 px. imageConfig.aspectRatio crops (around the face) first. An edit whose "
    "output face is not the input person (identity distance >= 0.6) is not returned."
)


def _no_image(text: str, quality: dict | None = None, timings: dict | None = None) -> ImageResult:
    return ImageResult(text=text, finish_reason=FinishReason.NO_IMAGE, quality=quality or {}, timings_ms=timings or {})


class PhotoBackend:
    name = "flashbulb-photo"

    def __init__(self, safety_block: tuple[str, ...] = safety.EXPLICIT) -> None:
        self.safety_block = safety_block
        # Every model loads now (warm-up), not inside the first request. Real-ESRGAN's load (OpenVINO
        # compiles it in native code, off the GIL) overlaps the other models': 3.9 -> 3.6 s measured
        # (from the cache of its converted graph, superres.onnx_model, a start is 2.9 s).
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            superres_loaded = pool.submit(superres.get_model)
            warm_up_vision()
            superres_loaded.result()

    def run(self, request: ImageRequest, job: JobContext) -> ImageResult:
        if not request.images:
            return _no_image(
                "flashbulb-photo edits the photo you send: attach an image with an instruction such as "
                "'restore this old photo' or 'make this a LinkedIn headshot'. To draw from text alone, this "
                "server needs a generative model (its operator installs one with `make install-diffusion`, then "
                "`flashbulb pull flux2-klein-4b` on a GPU or `flashbulb pull sd-turbo` on a CPU)."
            )
        plan = instructions.parse(request.prompt)
        if plan.not_understood:
            return _no_image(
                f"flashbulb-photo can't do {', '.join(repr(c) for c in plan.not_understood)}; nothing was done or "
                "charged. A new scene, clothing or objects need a generative edit model such as flux2-klein-4b or "
                f"qwen-image-edit-2509 (GET models says which are installed). flashbulb-photo understands — "
                f"{instructions.vocabulary()}."
            )
        operations = plan.operations or [Operation("restore", {"scale": None})]
        wants_second = any(
            op.params.get("mode") == "image" or op.params.get("background", {}).get("mode") == "image" for op in operations
        )
        if wants_second and len(request.images) < 2:
            return _no_image("To use a photo as the new background, send it as the second image after the portrait.")

        timings: dict[str, float] = {}
        inputs = [to_uint8(Canvas(image).rgb) for image in request.images]
        verdicts, refused = _timed(timings, "safety_in", lambda: check_inputs(request, inputs, self.safety_block))
        if refused is not None:
            refused.timings_ms = timings
            return refused
        subject = _timed(timings, "identity_in", lambda: Subject(inputs[0], request.owner))

        canvas = Canvas(request.images[0])
        environment = request.images[1] if len(request.images) > 1 else None
        edits: list[dict[str, object]] = []
        try:
            if (ratio := request.aspect_ratio) and not any(op.name == "headshot" for op in operations):
                _timed(timings, "crop", lambda: adjust.crop(canvas, ratio))
            for index, op in enumerate(operations):
                job.check()
                share = lambda fraction, i=index: job.progress((i + fraction) / len(operations))  # noqa: E731
                report = _timed(timings, f"{index + 1}:{op.name}", lambda: self._apply(op, canvas, request, environment, share))
                edits.append({"operation": op.name, **report})
                job.progress((index + 1) / len(operations))
                if index < len(operations) - 1:
                    job.preview(canvas.image())  # each stage of a multi-step edit, for streaming callers
        except EditRefused as refused:
            return _no_image(str(refused), timings=timings)

        output = canvas.uint8()
        quality: dict[str, object] = {"edits": edits}
        identity = _timed(timings, "identity_out", lambda: subject.compare(output))
        quality.update(identity)
        verdict = _timed(
            timings, "safety_out", lambda: safety.check(output, self.safety_block, request.safety_level, request.owner)
        )
        quality["safety"] = {"inputs": [v.as_json() for v in verdicts], "output": verdict.as_json()}
        text_check = _timed(timings, "ocr", lambda: ocr.check(request.prompt, output))
        if text_check is not None:
            quality["ocr"] = text_check

        if not verdict.safe:
            log.warning("request %s: output blocked by safety: %s", request.request_id, ", ".join(verdict.found))
            return ImageResult(
                text="The edited image was blocked by the safety check; nothing was charged.",
                finish_reason=FinishReason.IMAGE_SAFETY,
                quality=quality,
                timings_ms=timings,
            )
        if not identity["same_person"]:
            distance = identity["identity_distance"][0]
            why = (
                "the face is no longer found"
                if distance is None
                else f"identity distance {distance} ≥ {identity['identity_threshold']}"
            )
            return ImageResult(
                text=f"The edit changed who the person is ({why}), so it was not returned; nothing was charged.",
                finish_reason=FinishReason.IMAGE_OTHER,
                quality=quality,
                timings_ms=timings,
            )
        source = request.images[0]
        done = ", then ".join(_describe(edit) for edit in edits)
        ignored = f" Ignored (no effect on this edit): {', '.join(repr(c) for c in plan.ignored)}." if plan.ignored else ""
        return ImageResult(
            images=[canvas.image()],
            text=f"Done: {done} ({source.width}x{source.height} → {canvas.size[0]}x{canvas.size[1]}).{ignored}",
            finish_reason=FinishReason.STOP,
            timings_ms=timings,
            quality=quality,
        )

    def _apply(
        self, op: Operation, canvas: Canvas, request: ImageRequest, environment, progress: Callable[[float], None]
    ) -> dict:
        params = op.params
        if op.name in ("restore", "upscale"):
            scale = _scale_for(params, canvas.size)
            if problem := restore.check_scale(*canvas.size, scale):
                raise EditRefused(problem)
            if op.name == "restore":
                report = restore.restore(canvas, scale, progress)
            else:
                restore.super_resolve(canvas, scale, restore.noise_sigma(canvas.rgb), progress)
                report = {"scale": scale}
            if (exact := params.get("size")) and canvas.size != tuple(exact):  # within 1% of its shape: a pixel or two
                adjust.apply(canvas, {"resize": {"width": exact[0], "height": exact[1]}})
            return report
        if op.name == "sharpen":
            restore.sharpen(canvas, params["amount"])
            return {"amount": round(params["amount"], 2)}
        if op.name == "background":
            return background.replace(canvas, **params, environment=environment)
        if op.name == "relight":
            return relight.relight(canvas, params["setup"], params["side"], params["moods"], params["strength"])
        if op.name == "headshot":
            return headshot.headshot(canvas, params, request.aspect_ratio, environment, progress)
        if op.name == "adjust":
            try:
                adjust.apply(canvas, params)
            except ValueError as error:
                raise EditRefused(str(error)) from None
            return {key: value for key, value in params.items()}
        raise AssertionError(f"no operation {op.name}")


def _scale_for(params: dict, size: tuple[int, int]) -> float:
    """The enlargement asked for: a factor, a long side to reach ("to 3000 px wide", "to 4K"), or
    none said: restore and upscale enlarge up to 2048 px, cleaning alone (denoise, scratches) doesn't."""
    if params.get("scale") is not None:
        return params["scale"]
    if exact := params.get("size"):
        (width, height), (w, h) = exact, size
        if abs((width / height) / (w / h) - 1) > 0.01:
            raise EditRefused(
                f"{width}x{height} has another shape than this {w}x{h} photo, so upscaling can't reach it: ask for "
                f"{width}x{round(width * h / w)} (or {round(height * w / h)}x{height}), or add 'crop to {width}:{height}' first."
            )
        if width < w:
            raise EditRefused(f"{width}x{height} is smaller than this {w}x{h} photo: ask to resize it, not to upscale it.")
        return round(width / w, 4)
    if params.get("long_side"):
        return max(1.0, round(params["long_side"] / max(size), 4))
    return restore.default_scale(*size) if params.get("enlarge", True) else 1.0


def _describe(edit: dict[str, object]) -> str:
    if "scale" in edit:
        return f"{edit['operation']} (Real-ESRGAN x4plus, {edit['scale']:g}x)"
    return str(edit["operation"])


def _timed(timings: dict[str, float], stage: str, work: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = work()
    timings[stage] = round((time.perf_counter() - started) * 1000, 1)
    return result

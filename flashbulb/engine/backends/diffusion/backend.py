"""Runs requests on one diffusers pipeline, top to bottom: check the references are safe, plan the
prompt, pick the native size, denoise (several requests of one shape in one batch), then measure
every image (safety, identity against the reference face, OCR of quoted text) and retry the ones
that lost the face or misspelled the text with new seeds, a bounded number of times.

One backend owns one pipeline and is only ever called from its engine worker's thread.
"""

from __future__ import annotations

import gc
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from flashbulb.config import Settings
from flashbulb.engine.aspect import ratio_of
from flashbulb.engine.backends.diffusion import masks, presets, previews, weights
from flashbulb.engine.backends.diffusion.catalog import GENERATE, INPAINT, DiffusionModel
from flashbulb.engine.backends.diffusion.fastpath import FastPath, speed_up
from flashbulb.engine.backends.diffusion.loading import load_pipeline
from flashbulb.engine.backends.diffusion.measure import better, identity_summary, measure
from flashbulb.engine.input_safety import check_inputs
from flashbulb.engine.types import Cancelled, FinishReason, ImageRequest, ImageResult, JobContext
from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.vision import ocr, safety
from flashbulb.vision.identity import THRESHOLD, Subject

log = logging.getLogger(__name__)

SEED_STRIDE = 7919  # a retry's seed: far from the seeds of the request's other images


def _device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def _weights_gb(where: Path) -> float:
    return sum(p.stat().st_size for p in where.glob("*/*.safetensors")) / 1e9


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class DiffusionBackend:
    def __init__(self, model: DiffusionModel, settings: Settings):
        import torch

        self.model = model
        self.settings = settings
        self.device = _device(settings.device)
        assert settings.model_dir is not None  # Settings.__post_init__ defaults it to <data_dir>/models
        where = weights.folder(model, settings.model_dir)
        if reason := weights.problem(where, model.pipeline):
            raise FlashbulbError(
                ErrorKind.FAILED_PRECONDITION, f"{model.name}: {reason}. {weights.how_to_install(model, settings.model_dir)}"
            )
        if self.device == "cpu" and _weights_gb(where) > settings.cpu_max_weights_gb:
            raise FlashbulbError(
                ErrorKind.FAILED_PRECONDITION,
                f"{model.name} ({_weights_gb(where):.0f} GB of weights) needs a GPU; this server has none. "
                "On CPU use a small model such as sd-turbo.",
            )
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        started = time.perf_counter()
        try:
            pipe = load_pipeline(where, model.pipeline, dtype)
        except Exception as exc:  # damaged or partial weights: say where, don't crash the worker
            raise FlashbulbError(ErrorKind.FAILED_PRECONDITION, f"{model.name} could not be loaded from {where}: {exc}") from exc
        self.pipe = pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.fast_path = speed_up(self.pipe, FastPath(compile=settings.compile, fp8=settings.fp8, step_cache=settings.step_cache))
        self.load_ms = round((time.perf_counter() - started) * 1000)
        self.preview_ms = 0.0
        log.info("%s loaded on %s in %d ms (%s)", model.name, self.device, self.load_ms, self.fast_path)
        self._warm_up()

    def _warm_up(self) -> None:
        """One generation at the most common shape, so the first customer doesn't pay for lazy
        initialisation (and, on a GPU, for compiling that shape)."""
        if GENERATE in self.model.tasks:
            width, height = self.model.size("1:1")
            try:
                self._denoise(["warm-up"], [""], [], None, width, height, [0], 1, [JobContext()], steps=1)
            except FlashbulbError as error:  # out of memory at full size: smaller batches may still fit
                log.warning("%s warm-up: %s", self.model.name, error.message)

    # ---- the engine's interface ----

    def run(self, request: ImageRequest, job: JobContext) -> ImageResult:
        return self.run_batch([request], [job])[0]

    def run_batch(self, requests: list[ImageRequest], jobs: list[JobContext]) -> list[ImageResult]:
        started = time.perf_counter()
        self.preview_ms = 0.0  # this run's partial images (decoding latents), in its timings
        blocked = [self._unsafe_inputs(r) for r in requests]
        live = [i for i, b in enumerate(blocked) if b is None]
        plans = {i: presets.plan(requests[i].prompt, requests[i].system) for i in live}
        seeds = {i: self._seeds(requests[i]) for i in live}
        images: dict[int, list[Image.Image]] = {}
        region = None
        if live:
            first = requests[live[0]]
            width, height = self._size(first)
            region = self._region(first)  # the shared references' region: found once, retries included
            batch = self._generate(
                [plans[i] for i in live],
                first,
                region,
                width,
                height,
                [seeds[i] for i in live],
                [jobs[i] for i in live],
                partials=[requests[i].partial_images for i in live],
            )
            images = dict(zip(live, batch))
        generate_ms = round((time.perf_counter() - started) * 1000, 1)
        results: list[ImageResult] = []
        for i, request in enumerate(requests):
            if (refused := blocked[i]) is not None:
                results.append(refused)
                continue
            results.append(self._finish(request, region, plans[i], seeds[i], images[i], jobs[i], generate_ms, len(live)))
        return results

    # ---- steps ----

    def _unsafe_inputs(self, request: ImageRequest) -> ImageResult | None:
        rgb = [np.asarray(im.convert("RGB")) for im in request.images]
        return check_inputs(request, rgb, self.settings.safety_block)[1]

    def _seeds(self, request: ImageRequest) -> list[int]:
        base = request.seed if request.seed is not None else random.randrange(2**31)
        return [base + k for k in range(request.n)]

    def _size(self, request: ImageRequest) -> tuple[int, int]:
        return self.model.render_size(ratio_of(request), request.size)

    def _region(self, request: ImageRequest) -> np.ndarray | None:
        """Where an edit may change the first image, 0..1: the caller's mask, or an inpainting model's
        own region for the prompt (clothing, background); None: anywhere."""
        mask = _caller_mask(request)
        if mask is None and INPAINT in self.model.tasks and request.images:
            mask = masks.region_mask(np.asarray(request.images[0].convert("RGB")), masks.region_for(request.prompt))
        return mask

    def _generate(
        self,
        plans: list[presets.PromptPlan],
        first: ImageRequest,
        mask: np.ndarray | None,
        width: int,
        height: int,
        seeds: list[list[int]],
        jobs: list[JobContext],
        partials: list[int] | None = None,
    ) -> list[list[Image.Image]]:
        """Images for several requests of one shape (same n, same references: a batch of one for edits),
        changed only inside `mask` (`_region`) when there is one; `partials[k]` previews for job k."""
        n = len(seeds[0])
        flat_seeds = [s for request_seeds in seeds for s in request_seeds]
        inpaint_mask = mask if INPAINT in self.model.tasks else None  # edit models see the whole photo...

        def kept(image: Image.Image) -> Image.Image:  # ...and only the masked region of their output is kept
            return image if mask is None else _composite(first.images[0], image, mask)

        out = self._denoise(
            [p.prompt for p in plans],
            [p.negative for p in plans],
            first.images,
            inpaint_mask,
            width,
            height,
            flat_seeds,
            n,
            jobs,
            partials=partials,
            as_result=kept,
        )
        out = [kept(image) for image in out]
        return [out[k * n : (k + 1) * n] for k in range(len(plans))]

    def _denoise(
        self,
        prompts: list[str],
        negatives: list[str],
        references: list[Image.Image],
        mask: np.ndarray | None,
        width: int,
        height: int,
        seeds: list[int],
        n: int,
        jobs: list[JobContext],
        steps: int | None = None,
        partials: list[int] | None = None,
        as_result: Callable[[Image.Image], Image.Image] = lambda image: image,
    ) -> list[Image.Image]:
        """`partials[k]` previews for job k, each shown as `as_result` makes the result (a masked edit's region alone)."""
        import torch

        model = self.model
        steps = steps or model.steps
        wanted = {k: set(previews.preview_steps(count, steps)) for k, count in enumerate(partials or []) if count > 0}

        def on_step_end(pipe, step: int, _timestep, tensors: dict) -> dict:
            if all(job.cancel.is_set() for job in jobs):
                # Everyone in the batch has gone: stop denoising for nobody.
                log.info("%s: cancelled at step %d of %d", model.name, step + 1, steps)
                raise Cancelled()
            for job in jobs:
                job.on_progress((step + 1) / steps)
            if showing := [k for k, at in wanted.items() if step in at and not jobs[k].cancel.is_set()]:
                started = time.perf_counter()
                shown = previews.decode(pipe, tensors["latents"][[k * n for k in showing]], width, height) or []
                for k, image in zip(showing, shown):
                    jobs[k].preview(as_result(image))
                self.preview_ms += (time.perf_counter() - started) * 1000
            return tensors

        args = {
            "prompt": prompts,
            "height": height,
            "width": width,
            "num_inference_steps": steps,
            model.guidance_arg: model.guidance,
            "num_images_per_prompt": n,
            "generator": [torch.Generator(self.device).manual_seed(s) for s in seeds],
            "output_type": "pil",
            "callback_on_step_end": on_step_end,
            **model.call_args,
        }
        if model.pass_max_area:
            args["max_area"] = width * height
        if model.negative_prompt:  # " " rather than nothing: Qwen-Image only runs true CFG with one
            args["negative_prompt"] = [neg or " " for neg in negatives]
        if references:
            rgb = [self._fit(im.convert("RGB")) for im in references]
            if mask is not None:
                args["image"] = rgb[0].resize((width, height), Image.Resampling.LANCZOS)
                args["mask_image"] = Image.fromarray((mask * 255).astype(np.uint8)).resize((width, height))
            else:
                args["image"] = rgb if model.max_references > 1 else rgb[0]
        try:
            with torch.inference_mode():
                return list(self.pipe(**args).images)
        except Exception as exc:
            if not _is_out_of_memory(exc):
                raise
            self._free_memory()
            if len(prompts) > 1:  # a batch that doesn't fit may fit one request at a time
                log.warning("%s: out of memory on a batch of %d; running them one by one", model.name, len(prompts))
                return [
                    image
                    for k in range(len(prompts))
                    for image in self._denoise(
                        prompts[k : k + 1],
                        negatives[k : k + 1],
                        references,
                        mask,
                        width,
                        height,
                        seeds[k * n : (k + 1) * n],
                        n,
                        jobs[k : k + 1],
                    )
                ]
            memory = "GPU memory" if self.device == "cuda" else "memory"
            raise FlashbulbError(
                ErrorKind.OUT_OF_MEMORY,
                f"{model.name} ran out of {memory} on this request ({width}x{height}, {n} image(s)); nothing was "
                "charged. Retry, or ask for fewer images.",
                retry_after_s=10,
            ) from exc

    def _fit(self, image: Image.Image) -> Image.Image:
        """A reference scaled to the model's native area (a 24 MP photo would cost minutes of
        attention for no gain) and at least its smallest side, sides a multiple it accepts."""
        m, smallest = self.model.size_multiple, max(self.model.size_multiple, self.model.min_reference_side)
        scale = min(1.0, (self.model.pixels / (image.width * image.height)) ** 0.5)
        scale = max(scale, smallest / min(image.size))
        size = (max(smallest, int(image.width * scale) // m * m), max(smallest, int(image.height * scale) // m * m))
        return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)

    def _free_memory(self) -> None:
        import torch

        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()

    def _finish(
        self,
        request: ImageRequest,
        region: np.ndarray | None,
        plan: presets.PromptPlan,
        seeds: list[int],
        images: list[Image.Image],
        job: JobContext,
        generate_ms: float,
        batch_size: int,
    ) -> ImageResult:
        """Measure each image; retry the ones that lost the face or the text; keep what passes."""
        started = time.perf_counter()
        subject = Subject(np.asarray(request.images[0].convert("RGB")), request.owner) if request.images else None
        block = self.settings.safety_block
        found = [measure(image, seed, request.prompt, subject, block, request.safety_level) for image, seed in zip(images, seeds)]
        width, height = self._size(request)
        retries = 0
        for attempt in range(1, self.settings.identity_retries + 1):
            failing = [k for k, m in enumerate(found) if m.wants_retry(attempt)]
            if not failing:
                break
            job.check()
            for k in failing:
                seed = seeds[k] + attempt * SEED_STRIDE
                [image] = self._generate([plan], request, region, width, height, [[seed]], [job])[0]
                found[k] = better(found[k], measure(image, seed, request.prompt, subject, block, request.safety_level))
                retries += 1
        kept = [m for m in found if m.kept]
        quality: dict[str, object] = {
            "model": self.model.name,
            "licence": self.model.licence_note,
            "prompt": plan.prompt,
            "negative_prompt": plan.negative if self.model.negative_prompt else None,
            "preset": plan.preset,
            "size": [width, height],
            "steps": self.model.steps,
            "seeds": [m.seed for m in kept],
            "batch_size": batch_size,
            "retries": retries,
            "fast_path": self.fast_path,
            "images": [m.public() for m in found],
            "safety": {
                "output": {"safe": all(m.safe for m in (kept or found))},
                "min_score": safety.MIN_SCORES[request.safety_level],
            },
        }
        if subject is not None:
            quality |= identity_summary(subject, found)
        if ocr.quoted(request.prompt):
            quality["ocr"] = (kept or found)[0].ocr
        timings = {"generate": generate_ms, "measure_and_retry": round((time.perf_counter() - started) * 1000, 1)}
        if request.partial_images and self.preview_ms:
            timings["previews"] = round(self.preview_ms, 1)  # within generate
        if kept:
            text = f"{self.model.title}, {width}x{height}, {self.model.steps} steps, seed {', '.join(str(m.seed) for m in kept)}."
            edited = None if region is None else Image.fromarray(np.round(region * 255).astype(np.uint8), "L")
            return ImageResult(
                images=[m.image for m in kept], text=text, quality=quality, timings_ms=timings, edited_region=edited
            )
        if not all(m.safe for m in found):
            text = "The generated image was blocked by the safety check; nothing was charged."
            return ImageResult(text=text, finish_reason=FinishReason.IMAGE_SAFETY, quality=quality, timings_ms=timings)
        distances = ", ".join("none" if m.identity_distance is None else f"{m.identity_distance:.2f}" for m in found)
        text = (
            f"The person's face was not kept after {1 + self.settings.identity_retries} attempt(s) "
            f"(identity distance {distances}; the same person is below {THRESHOLD}); nothing was charged."
        )
        return ImageResult(text=text, finish_reason=FinishReason.IMAGE_OTHER, quality=quality, timings_ms=timings)


def _caller_mask(request: ImageRequest) -> np.ndarray | None:
    """The caller's mask (255 = repaint) at the first image's size, as float 0..1."""
    if request.mask is None:
        return None
    mask = request.mask.convert("L").resize(request.images[0].size, Image.Resampling.BILINEAR)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _composite(original: Image.Image, generated: Image.Image, mask: np.ndarray) -> Image.Image:
    """The photo at its own size with only the masked region replaced: faces stay the exact pixels sent."""
    size = original.size
    alpha = mask[..., None]
    new = np.asarray(generated.convert("RGB").resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    old = np.asarray(original.convert("RGB"), dtype=np.float32)
    return Image.fromarray(np.clip(alpha * new + (1 - alpha) * old, 0, 255).astype(np.uint8))

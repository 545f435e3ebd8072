"""The exact output size a caller asked for (Gemini `imageSize`, OpenAI `size`), for every model.

A backend draws at `request.size` where it can (diffusion models up to a few times their native
area); whatever it returns at another size is brought to the size asked here, in the worker, after
the backend ran: cropped to the shape around the centre, enlarged with Real-ESRGAN x4plus when it
must grow by more than 10% (then Lanczos to the exact pixels), or shrunk with Lanczos. The result's
`quality.output_size` says which was done, so a 2K answer made from a 1K drawing says so.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from flashbulb.engine.imageio import MAX_OUTPUT_PIXELS
from flashbulb.engine.types import ImageRequest, ImageResult, JobContext

NATIVE = "native"
SUPER_RESOLVED = "Real-ESRGAN x4plus upscale"
RESIZED = "Lanczos resize"
# Below this growth a Lanczos resize is as good as the network, at a fraction of its time.
SUPER_RESOLVE_ABOVE = 1.1
SUPER_RESOLVED_MAX_PIXELS = 2 * MAX_OUTPUT_PIXELS  # the network's 4x output, before the final resize


def fit_result(request: ImageRequest, result: ImageResult, job: JobContext) -> ImageResult:
    if request.size is None or not result.images:
        return result
    width, height = request.size
    made = f"{result.images[0].width}x{result.images[0].height}"
    fitted = [fit_image(image, width, height, job) for image in result.images]
    result.images = [image for image, _ in fitted]
    method = fitted[0][1]
    result.quality["output_size"] = {"asked": f"{width}x{height}", "drawn": made, "method": method}
    if method != NATIVE and result.text:
        result.text += f" Drawn at {made}, delivered at {width}x{height} ({method})."
    return result


def fit_image(image: Image.Image, width: int, height: int, job: JobContext) -> tuple[Image.Image, str]:
    if image.size == (width, height):
        return image, NATIVE
    growth = max(width / image.width, height / image.height)  # ImageOps.fit's scale: crop, never pad
    method = RESIZED
    if growth > SUPER_RESOLVE_ABOVE:
        image, method = _super_resolve(image, job), SUPER_RESOLVED
    return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS), method


def _super_resolve(image: Image.Image, job: JobContext) -> Image.Image:
    from flashbulb.vision import superres  # loads ncnn: only in workers that need it

    if image.width * image.height * superres.SCALE**2 > SUPER_RESOLVED_MAX_PIXELS:
        # A large photo grown a little: shrink it first so the network's 4x stays bounded in memory.
        shrink = (SUPER_RESOLVED_MAX_PIXELS / (image.width * image.height * superres.SCALE**2)) ** 0.5
        image = image.resize((max(1, int(image.width * shrink)), max(1, int(image.height * shrink))), Image.Resampling.LANCZOS)
    rgb = np.asarray(image.convert("RGB"))
    big = Image.fromarray(superres.get_model().upscale4x(rgb, on_tile=lambda done, total: job.check()))
    if image.mode == "RGBA":  # the network sees colour only; transparency is enlarged alongside
        big.putalpha(image.getchannel("A").resize(big.size, Image.Resampling.LANCZOS))
    return big

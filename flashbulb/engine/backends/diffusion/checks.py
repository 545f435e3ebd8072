"""What a generative model refuses before any credit is held: missing weights, wrong inputs."""

from __future__ import annotations

from pathlib import Path

from flashbulb.engine.backends.diffusion import presets, weights
from flashbulb.engine.backends.diffusion.catalog import EDIT, GENERATE, INPAINT, DiffusionModel
from flashbulb.engine.types import ImageRequest
from flashbulb.errors import ErrorKind, FlashbulbError, invalid


def check_request(model: DiffusionModel, request: ImageRequest, model_dir: Path) -> None:
    """Refuse, before any credit is held, what this model can't do or doesn't have on disk."""
    if not weights.installed(model, model_dir):
        raise FlashbulbError(
            ErrorKind.FAILED_PRECONDITION,
            f"{model.name} ({model.title}) is not installed here. {weights.how_to_install(model, model_dir)}",
        )
    count = len(request.images)
    if INPAINT in model.tasks and count != 1:
        raise invalid(f"{model.name} repaints a region of one photo: send exactly one image with the instruction")
    if count and EDIT not in model.tasks and INPAINT not in model.tasks:
        raise invalid(f"{model.name} generates from text only; send no images, or use an edit model (see GET models)")
    if not count and GENERATE not in model.tasks:
        raise invalid(f"{model.name} edits photos: send 1 to {model.max_references} reference images with the prompt")
    if count > max(model.max_references, 1):
        raise invalid(f"{model.name} takes at most {model.max_references} reference images; {count} were sent")
    if request.mask is not None and (not count or (EDIT not in model.tasks and INPAINT not in model.tasks)):
        raise invalid(f"a mask marks what to change in a photo: {model.name} needs the photo too and must be an edit model")
    if not request.prompt:
        raise invalid(f"{model.name} needs a text prompt saying what to generate")
    presets.plan(request.prompt, request.system)  # an unknown preset is a 400 now, not a failed job later

"""The model catalog: what each model is, what it can do, how to build its backend (its price is billing's)."""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable, Hashable
from pathlib import Path

from flashbulb import __version__
from flashbulb.config import Settings
from flashbulb.engine.aspect import ratio_of
from flashbulb.engine.backends import Backend
from flashbulb.engine.types import ImageRequest
from flashbulb.errors import ErrorKind, FlashbulbError


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    display_name: str
    description: str
    capabilities: tuple[str, ...]
    make_backend: Callable[[], Backend]
    version: str = __version__
    input_token_limit: int = 32768
    output_token_limit: int = 32768
    is_installed: Callable[[], bool] = lambda: True
    # Refuses, before any credit is held, a request this model can't serve (400/404 with how to fix it).
    check: Callable[[ImageRequest], None] = lambda request: None
    details: dict[str, object] = dataclasses.field(default_factory=dict)  # licence, source, sizes...
    # What only the operator needs (and a customer shouldn't see): where its weights go, how to install it.
    operator_details: dict[str, object] = dataclasses.field(default_factory=dict)
    # The catalog model whose list price it takes (flashbulb.billing.prices); "": its own name;
    # None: an operator's own backend (billing's price for those, unless flashbulb.toml gives one).
    priced_as: str | None = ""
    # Which requests may share one run of the backend (None: each runs alone); a pure function of
    # the request, so the engine can batch without the backend in its process.
    batch_key: Callable[[ImageRequest], Hashable | None] | None = None
    uses_gpu: bool = False  # its replicas get GPUs where there are some (one per replica by default)
    # Modules that import what its worker loads (their libraries.py): imported once in the process
    # workers fork from, not again in each.
    worker_imports: tuple[str, ...] = ()

    def installed(self) -> bool:
        return self.is_installed()


def _photo_entry(settings: Settings) -> ModelEntry:
    from flashbulb.engine.backends.photo import DESCRIPTION
    from flashbulb.engine.backends.photo.instructions import EXAMPLES

    return ModelEntry(
        name="flashbulb-photo",
        display_name="flashbulb photo (offline restore, background, relight, headshot, upscale)",
        description=DESCRIPTION,
        capabilities=("edit", "restore", "background", "relight", "headshot", "upscale"),
        make_backend=lambda: _photo_backend(settings),
        check=_check_photo,
        worker_imports=("flashbulb.engine.backends.photo.libraries",),
        details={
            "licence": "Apache-2.0; its packaged models: Real-ESRGAN BSD-3-Clause, MediaPipe, RapidOCR, MODNet and "
            "U²-Net Apache-2.0, dlib Boost, face-recognition-models and NudeNet MIT",
            "commercial_use": True,
            "examples": list(EXAMPLES),
            "max_images_per_call": 1,  # an edit is one image: n copies would be the same pixels (a 400 says so)
        },
    )


PHOTO_MIN_SIDE = 8  # below this faces, masks and shading have nothing to work on (a 1x1 photo broke relighting)


PHOTO_MAX_IMAGES = 2  # the photo to edit, and a second one to use as its new background


def _check_photo(request: ImageRequest) -> None:
    if request.n > 1:
        raise FlashbulbError(
            ErrorKind.INVALID_ARGUMENT,
            f"flashbulb-photo makes one result per edit (the same instruction gives the same image); {request.n} were "
            "asked. Ask for 1, or use a generative model for variations.",
        )
    if len(request.images) > PHOTO_MAX_IMAGES:
        raise FlashbulbError(
            ErrorKind.INVALID_ARGUMENT,
            f"flashbulb-photo takes at most {PHOTO_MAX_IMAGES} images (the photo to edit, then a new background); "
            f"{len(request.images)} were sent. To combine more references use an edit model such as flux2-klein-4b.",
        )
    if small := [f"{im.width}x{im.height}" for im in request.images if min(im.size) < PHOTO_MIN_SIDE]:
        raise FlashbulbError(
            ErrorKind.INVALID_ARGUMENT,
            f"flashbulb-photo edits images of at least {PHOTO_MIN_SIDE}x{PHOTO_MIN_SIDE} pixels; got {', '.join(small)}.",
        )
    if request.mask is not None:
        raise FlashbulbError(
            ErrorKind.INVALID_ARGUMENT,
            "flashbulb-photo chooses its own regions (background, face) and takes no mask; "
            "send the mask to an edit or inpainting model such as sdxl-inpainting.",
        )


def _photo_backend(settings: Settings) -> Backend:
    from flashbulb.engine.backends.photo import PhotoBackend

    return PhotoBackend(safety_block=settings.safety_block)


def _diffusion_entry(model, settings: Settings) -> ModelEntry:
    from flashbulb.engine.backends.diffusion import catalog, weights

    tasks = ", ".join(model.tasks)
    refs = f", up to {model.max_references} reference image(s)" if model.max_references else ""
    description = (
        f"{model.title} through diffusers {model.pipeline}: {tasks}{refs}; {model.steps} steps, native "
        f"{'x'.join(map(str, model.size('1:1')))} (aspect ratios scaled to the same area). Licence: {model.licence_note}. "
        f"Weights: {model.source}."
    )
    return ModelEntry(
        name=model.name,
        display_name=model.title,
        description=description,
        capabilities=model.tasks,
        priced_as=model.like or model.name,
        make_backend=lambda: _diffusion_backend(model, settings),
        batch_key=functools.partial(_diffusion_batch_key, model),
        uses_gpu=True,
        worker_imports=("flashbulb.engine.backends.diffusion.libraries",),
        is_installed=lambda: weights.installed(model, _model_dir(settings)),
        check=lambda request: _check_diffusion(model, request, settings),
        details={
            "pipeline": model.pipeline,
            "source": model.source,
            "licence": model.licence,
            "commercial_use": model.commercial_use,
            "max_reference_images": model.max_references,
            "steps": model.steps,
            "examples": [example for task in model.tasks for example in catalog.EXAMPLES.get(task, ())],
        },
        operator_details={
            "weights_dir": str(weights.folder(model, _model_dir(settings))),
            "install": weights.how_to_install(model, _model_dir(settings)),
        },
    )


def _diffusion_batch_key(model, request: ImageRequest) -> Hashable | None:
    """Text-to-image requests of one shape and image count share a batch; edits run alone."""
    if request.images:
        return None
    return (model.render_size(ratio_of(request), request.size), request.n)


def _custom_entry(name: str, fields: dict) -> ModelEntry:
    """[models.NAME] backend = "package.module:factory": a backend of the operator's own (a plugin, or a
    test's), run by the engine like any other model."""
    target = fields["backend"]
    if not isinstance(target, str) or ":" not in target:
        raise ValueError(f'flashbulb.toml [models.{name}]: backend must be "package.module:factory", not {target!r}')
    if unknown := set(fields) - {"backend", "description"}:
        raise ValueError(f"flashbulb.toml [models.{name}]: unknown keys {sorted(unknown)} for a custom backend")

    def make() -> Backend:
        module, attribute = target.split(":", 1)
        return getattr(importlib.import_module(module), attribute)()

    return ModelEntry(
        name=name,
        display_name=name,
        description=str(fields.get("description", f"custom backend {target}")),
        capabilities=("generate", "edit"),
        make_backend=make,
        priced_as=None,
        operator_details={"backend": target},
    )


def _diffusion_backend(model, settings: Settings) -> Backend:
    from flashbulb.engine.backends.diffusion.backend import DiffusionBackend  # imports torch: only when used

    return DiffusionBackend(model, settings)


def _check_diffusion(model, request: ImageRequest, settings: Settings) -> None:
    from flashbulb.engine.backends.diffusion.checks import check_request

    check_request(model, request, _model_dir(settings))


def _model_dir(settings: Settings) -> Path:
    assert settings.model_dir is not None  # Settings.__post_init__ defaults it to <data_dir>/models
    return settings.model_dir


def _diffusion_models(settings: Settings) -> list:
    from flashbulb.engine.backends.diffusion import catalog

    local = [catalog.local_model(name, fields) for name, fields in settings.local_models.items()]
    return [*catalog.CATALOG, *local]


DEFAULT_IMAGE_MODEL = "flux2-klein-4b"


def default_aliases(image_model_installed: bool) -> dict[str, str]:
    """Customers' code names the hosted model (Gemini's or OpenAI's). It reaches the default generative model when its
    weights are here, else the offline photo model (which edits but can't draw from text)."""
    hosted = DEFAULT_IMAGE_MODEL if image_model_installed else "flashbulb-photo"
    names = (
        "gemini-2.5-flash-image",
        "gemini-2.5-flash-image-preview",
        "gemini-3-pro-image-preview",
        "gemini-3-pro-image",
        "gemini-3.1-flash-image-preview",
        "gemini-3.1-flash-image",
        "gpt-image-1",
        "gpt-image-1-mini",
        "gpt-image-1.5",
        "gpt-image-2",
        "dall-e-2",
        "dall-e-3",
    )
    return {"flashbulb-image": DEFAULT_IMAGE_MODEL, **dict.fromkeys(names, hosted)}


DEFAULT_ALIASES = default_aliases(False)


class Registry:
    def __init__(self, entries: list[ModelEntry], aliases: dict[str, str] | None = None):
        self.entries = {entry.name: entry for entry in entries}
        self.aliases = dict(DEFAULT_ALIASES if aliases is None else aliases)

    @classmethod
    def default(cls, settings: Settings | None = None) -> Registry:
        settings = settings or Settings()
        entries = [
            _photo_entry(settings),
            *(_diffusion_entry(m, settings) for m in _diffusion_models(settings)),
            *(_custom_entry(name, fields) for name, fields in settings.custom_backends.items()),
        ]
        registry = cls(entries)
        registry.aliases = default_aliases(registry.entries[DEFAULT_IMAGE_MODEL].installed())
        return registry

    def installed_name(self, name: str) -> str | None:
        """The model a name or alias stands for, if it is installed here."""
        try:
            entry = self.resolve(name)
        except FlashbulbError:
            return None
        return entry.name if entry.installed() else None

    def installed_names(self, names) -> list[str]:
        """The installed models among these names and aliases, each by its own name, once."""
        return sorted({found for name in names if (found := self.installed_name(name))})

    def worker_imports(self, models: list[str]) -> list[str]:
        """What the workers of these models (installed, by name) import, each module once."""
        return list(dict.fromkeys(module for name in models for module in self.entries[name].worker_imports))

    def priced_as(self) -> dict[str, str | None]:
        """Every model by name, and the catalog model whose list price it takes (None: an operator's
        own backend), for billing."""
        return {name: name if entry.priced_as == "" else entry.priced_as for name, entry in self.entries.items()}

    def resolve(self, name: str) -> ModelEntry:
        name = name.removeprefix("models/")
        entry = self.entries.get(self.aliases.get(name, name))
        if entry is None:
            raise FlashbulbError(
                ErrorKind.NOT_FOUND,
                f"models/{name} is not found. Available models: {', '.join(self.entries)}.",
            )
        return entry

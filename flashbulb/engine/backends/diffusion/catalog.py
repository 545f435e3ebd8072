"""The generative models flashbulb knows how to serve: which diffusers pipeline, where its weights
come from, what it can do, how many steps it wants, its native size and its licence.

An operator adds their own (a fine-tune, weights already on disk) in flashbulb.toml:

    [models.my-klein]
    like = "flux2-klein-4b"     # copy everything from this entry...
    path = "/weights/my-klein"  # ...but load the weights from here
    steps = 6                   # any field below can be overridden
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from flashbulb.engine.aspect import GEMINI_SIZES

GENERATE = "generate"  # text to image
EDIT = "edit"  # prompt plus reference images
INPAINT = "inpaint"  # repaint a region (background, clothing) of the photo, the rest kept as it was
# Instructions the studio offers to click, by what a model does.
EXAMPLES = {
    GENERATE: ("a red fox in fresh snow at golden hour, 85mm photo", 'a street sign that says "Main St"'),
    EDIT: ("make it a watercolour painting", "put a straw hat on the person"),
    INPAINT: ("a navy business suit", "a bookshelf background"),
}

APACHE = "Apache-2.0"
FLUX_DEV_NC = "FLUX.1 [dev] Non-Commercial License"
SAI_COMMUNITY = "Stability AI Community License (research and non-commercial; commercial use needs a licence from Stability AI)"
OPENRAIL_XL = "CreativeML OpenRAIL++-M"


# Diffusion transformers and UNets hold together up to about 4x the area they were trained at (FLUX.2
# is trained up to 4 MP); past that they repeat subjects, so larger sizes are drawn natively then enlarged.
NATIVE_GROWTH = 4


@dataclasses.dataclass(frozen=True)
class DiffusionModel:
    name: str
    title: str
    pipeline: str  # the diffusers class; model_index.json in the weights must name the same one
    source: str  # Hugging Face repo id `flashbulb pull` downloads
    licence: str
    commercial_use: bool
    tasks: tuple[str, ...]
    steps: int
    guidance: float
    max_references: int = 0
    guidance_arg: str = "guidance_scale"  # Qwen-Image's real CFG knob is `true_cfg_scale`
    negative_prompt: bool = False  # whether the pipeline takes one (guidance-distilled models don't)
    pixels: int = 1024 * 1024  # native area; the ten Gemini aspect ratios are scaled to it
    size_multiple: int = 16  # VAE factor x patch size: heights and widths must divide by it
    download_gb: float = 0.0
    call_args: dict[str, Any] = dataclasses.field(default_factory=dict)  # fixed extra pipeline arguments
    min_reference_side: int = 0  # smaller references are enlarged to this (FLUX.2 refuses under 64 px)
    pass_max_area: bool = False  # the pipeline picks its size from max_area rather than height x width
    path: Path | None = None  # weights already on disk (else <model_dir>/<name>)
    like: str = ""  # an operator's model: the catalog entry it copies (and is priced as)

    def size(self, aspect_ratio: str) -> tuple[int, int]:
        """Width and height for a Gemini aspect ratio: its Gemini size scaled to this model's area."""
        width, height = GEMINI_SIZES[aspect_ratio]
        scale = math.sqrt(self.pixels / (1024 * 1024))
        m = self.size_multiple
        return max(m, round(width * scale / m) * m), max(m, round(height * scale / m) * m)

    def render_size(self, aspect_ratio: str, asked: tuple[int, int] | None) -> tuple[int, int]:
        """What to draw: the size asked where this model draws it well (up to NATIVE_GROWTH times its
        area, sides in its multiple), else its own size for the ratio (enlarged afterwards)."""
        if asked is not None:
            width, height = asked
            m = self.size_multiple
            if width % m == 0 and height % m == 0 and width * height <= self.pixels * NATIVE_GROWTH:
                return width, height
        return self.size(aspect_ratio)

    @property
    def licence_note(self) -> str:
        return self.licence if self.commercial_use else f"{self.licence} — NOT for commercial use"


CATALOG: tuple[DiffusionModel, ...] = (
    DiffusionModel(
        name="flux2-klein-4b",
        title="FLUX.2 [klein] 4B",
        pipeline="Flux2KleinPipeline",
        source="black-forest-labs/FLUX.2-klein-4B",
        licence=APACHE,
        commercial_use=True,
        tasks=(GENERATE, EDIT),
        max_references=4,
        min_reference_side=64,
        steps=4,
        guidance=1.0,
        download_gb=16,
    ),
    DiffusionModel(
        name="qwen-image-edit-2509",
        title="Qwen-Image-Edit-2509",
        pipeline="QwenImageEditPlusPipeline",
        source="Qwen/Qwen-Image-Edit-2509",
        licence=APACHE,
        commercial_use=True,
        tasks=(EDIT,),
        max_references=3,
        steps=40,
        guidance=4.0,
        guidance_arg="true_cfg_scale",
        negative_prompt=True,
        download_gb=58,
    ),
    DiffusionModel(
        name="z-image-turbo",
        title="Z-Image-Turbo",
        pipeline="ZImagePipeline",
        source="Tongyi-MAI/Z-Image-Turbo",
        licence=APACHE,
        commercial_use=True,
        tasks=(GENERATE,),
        steps=9,
        guidance=0.0,
        download_gb=33,
    ),
    DiffusionModel(
        name="flux1-schnell",
        title="FLUX.1 [schnell]",
        pipeline="FluxPipeline",
        source="black-forest-labs/FLUX.1-schnell",
        licence=APACHE,
        commercial_use=True,
        tasks=(GENERATE,),
        steps=4,
        guidance=0.0,
        download_gb=34,
        call_args={"max_sequence_length": 256},
    ),
    DiffusionModel(
        name="flux1-kontext-dev",
        title="FLUX.1 Kontext [dev]",
        pipeline="FluxKontextPipeline",
        source="black-forest-labs/FLUX.1-Kontext-dev",
        licence=FLUX_DEV_NC,
        commercial_use=False,
        tasks=(EDIT,),
        max_references=1,
        steps=28,
        guidance=2.5,
        download_gb=34,
        # Keep our size: by default Kontext snaps the output and the reference to ~1 MP.
        call_args={"_auto_resize": False},
        pass_max_area=True,
    ),
    DiffusionModel(
        name="sdxl-turbo",
        title="SDXL-Turbo",
        pipeline="StableDiffusionXLPipeline",
        source="stabilityai/sdxl-turbo",
        licence=SAI_COMMUNITY,
        commercial_use=False,
        tasks=(GENERATE,),
        steps=1,
        guidance=0.0,
        negative_prompt=True,
        pixels=512 * 512,
        size_multiple=8,
        download_gb=7,
    ),
    DiffusionModel(
        name="sd-turbo",
        title="SD-Turbo (small GPUs and CPU)",
        pipeline="StableDiffusionPipeline",
        source="stabilityai/sd-turbo",
        licence=SAI_COMMUNITY,
        commercial_use=False,
        tasks=(GENERATE,),
        steps=1,
        guidance=0.0,
        negative_prompt=True,
        pixels=512 * 512,
        size_multiple=8,
        download_gb=5,
    ),
    DiffusionModel(
        name="sdxl-inpainting",
        title="SDXL 1.0 Inpainting 0.1 (region edits: background, clothing)",
        pipeline="StableDiffusionXLInpaintPipeline",
        source="diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
        licence=OPENRAIL_XL,
        commercial_use=True,
        tasks=(INPAINT,),
        max_references=1,
        steps=20,
        guidance=8.0,
        negative_prompt=True,
        size_multiple=8,
        download_gb=14,
        call_args={"strength": 0.99},
    ),
)

# The headline model: what "flashbulb-image" means.
DEFAULT = "flux2-klein-4b"


def by_name() -> dict[str, DiffusionModel]:
    return {model.name: model for model in CATALOG}


def local_model(name: str, fields: dict[str, Any]) -> DiffusionModel:
    """An operator's [models.NAME] table: a copy of the `like` entry with its fields overridden."""
    fields = dict(fields)
    like = fields.pop("like", None)
    known = by_name()
    if like not in known:
        raise ValueError(f"flashbulb.toml [models.{name}]: `like` must name a catalog model ({', '.join(known)})")
    allowed = {f.name for f in dataclasses.fields(DiffusionModel)} - {"name", "pipeline", "like"}
    if unknown := set(fields) - allowed:
        raise ValueError(f"flashbulb.toml [models.{name}]: unknown keys {sorted(unknown)}")
    if "path" in fields:
        fields["path"] = Path(fields["path"]).expanduser()
    if "tasks" in fields:
        fields["tasks"] = tuple(fields["tasks"])
    return dataclasses.replace(known[like], name=name, like=like, **fields)

"""The one request type and the one result type every wire format and backend speaks."""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections.abc import Callable

from PIL import Image


class FinishReason(enum.Enum):
    """Why a result ended; names as the Gemini API spells them."""

    STOP = "STOP"
    NO_IMAGE = "NO_IMAGE"
    IMAGE_SAFETY = "IMAGE_SAFETY"
    IMAGE_OTHER = "IMAGE_OTHER"


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who is asking: resolved from an API key by the gateway."""

    account_id: int
    account_name: str
    key_id: int
    is_admin: bool
    models: tuple[str, ...] | None = None  # the key's scope: the models it may call (None: all)
    expires_in_s: float | None = None  # how long the key had left when it was looked up (None: no expiry)


@dataclasses.dataclass
class ImageRequest:
    """A prompt plus input images, in domain terms (already decoded and validated)."""

    request_id: str
    model: str
    prompt: str
    images: list[Image.Image] = dataclasses.field(default_factory=list)
    # Where an edit may change the first image: "L" mode, 255 = repaint, 0 = keep (None: the model decides).
    mask: Image.Image | None = None
    aspect_ratio: str | None = None
    # The exact output size asked for (Gemini's imageSize, OpenAI's size); None: the model's own size.
    size: tuple[int, int] | None = None
    n: int = 1
    seed: int | None = None
    system: str = ""  # the system instruction: style and presets for generative models
    want_text: bool = True
    caller: Caller | None = None  # in the API process only (executors.for_backend)
    # The caller's account id, as a worker sees it: its repeated checks of the same pixels are
    # answered from memory (vision/remembered.py), another account's never.
    owner: int | None = None
    priority: int = 0  # lower runs first: live traffic 0, batch jobs 1
    quality: str | None = None  # OpenAI's low | medium | high (priced, see flashbulb.billing.prices); None: default
    watermark: int | None = None  # the 32-bit payload the worker hides in each result image (None: unmarked)
    # How many of a reading's least sure bits verify may flip on this server now (provenance/verify.py
    # doubts_for): a mark whose read-back is wrong beyond them could not be traced, so it isn't claimed.
    watermark_doubts: int = 6
    # Intermediate images a streaming caller asked for (OpenAI's partial_images): a diffusion model
    # decodes that many steps' latents, which costs a VAE decode each, so it does only when asked.
    partial_images: int = 0
    # How readily the safety check blocks: "strict", "default" or "loose" (a caller's safetySettings
    # or moderation; vision/safety.py MIN_SCORES). There is no "off".
    safety_level: str = "default"

    @property
    def input_pixels(self) -> int:
        return sum(im.width * im.height for im in self.images)


@dataclasses.dataclass
class ImageResult:
    """What a backend produced, with what it measured on the way."""

    images: list[Image.Image] = dataclasses.field(default_factory=list)
    text: str = ""
    finish_reason: FinishReason = FinishReason.STOP
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    quality: dict[str, object] = dataclasses.field(default_factory=dict)
    replica: dict | None = None  # {"id", "host", "pid"} of the replica that made it (set by the engine)
    input_blocked: bool = False  # refused for what was sent (Gemini: promptFeedback, no candidate)
    # "L", 255 where an edit changed the first input; outside it every pixel is the one sent (so the
    # watermark stays inside too). None: the whole image may have changed.
    edited_region: Image.Image | None = None
    watermark: int | None = None  # the payload its images carry (provenance/watermark.py); None: unmarked

    @property
    def output_pixels(self) -> int:
        return sum(im.width * im.height for im in self.images)


class Cancelled(Exception):
    """Raised inside a backend when the job's cancel flag is set (client went away, timeout)."""


@dataclasses.dataclass
class JobContext:
    """What a running backend may look at: a cancel flag to honour and a progress sink."""

    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    on_progress: Callable[[float], None] = lambda fraction: None
    # An intermediate image (a stage of a multi-step edit), for callers that stream partial images.
    on_preview: Callable[[Image.Image], None] = lambda image: None

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def progress(self, fraction: float) -> None:
        self.check()
        self.on_progress(fraction)

    def preview(self, image: Image.Image) -> None:
        self.check()
        self.on_preview(image)

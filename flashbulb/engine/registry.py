"""The model catalog: what each model is, what it can do, what it costs, how to build its backend."""

from __future__ import annotations

import dataclasses
from typing import Callable

from flashbulb import __version__
from flashbulb.config import Settings
from flashbulb.engine.backends import Backend
from flashbulb.errors import ErrorKind, FlashbulbError


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    display_name: str
    description: str
    capabilities: tuple[str, ...]
    price_micros_per_image: int
    make_backend: Callable[[], Backend]
    version: str = __version__
    input_token_limit: int = 32768
    output_token_limit: int = 32768

    def installed(self) -> bool:
        return True


def _photo_entry(settings: Settings) -> ModelEntry:
    from flashbulb.engine.backends.photo import DESCRIPTION

    return ModelEntry(
        name="flashbulb-photo",
        display_name="flashbulb photo (offline restore and upscale)",
        description=DESCRIPTION,
        capabilities=("edit", "restore", "upscale"),
        price_micros_per_image=2_000,
        make_backend=lambda: _photo_backend(settings),
    )


def _photo_backend(settings: Settings) -> Backend:
    from flashbulb.engine.backends.photo import PhotoBackend

    return PhotoBackend(safety_block=settings.safety_block)


# Customers' code names the hosted model; it reaches our default offline model unchanged.
DEFAULT_ALIASES = {
    "gemini-2.5-flash-image": "flashbulb-photo",
    "gemini-2.5-flash-image-preview": "flashbulb-photo",
}


class Registry:
    def __init__(self, entries: list[ModelEntry], aliases: dict[str, str] | None = None):
        self.entries = {entry.name: entry for entry in entries}
        self.aliases = dict(DEFAULT_ALIASES if aliases is None else aliases)

    @classmethod
    def default(cls, settings: Settings | None = None) -> "Registry":
        settings = settings or Settings()
        entries = [_photo_entry(settings)]
        prices = settings.prices_micros
        entries = [
            dataclasses.replace(e, price_micros_per_image=prices[e.name]) if e.name in prices else e for e in entries
        ]
        return cls(entries)

    def resolve(self, name: str) -> ModelEntry:
        name = name.removeprefix("models/")
        entry = self.entries.get(self.aliases.get(name, name))
        if entry is None:
            raise FlashbulbError(
                ErrorKind.NOT_FOUND,
                f"models/{name} is not found. Available models: {', '.join(self.entries)}.",
            )
        return entry

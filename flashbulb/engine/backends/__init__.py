"""Backends turn an ImageRequest into an ImageResult. They never see HTTP, keys or money."""

from __future__ import annotations

import importlib
from typing import Protocol

from flashbulb.engine.types import ImageRequest, ImageResult, JobContext


class Backend(Protocol):
    def run(self, request: ImageRequest, job: JobContext) -> ImageResult: ...


class BatchingBackend(Backend, Protocol):
    """A backend that runs several requests at once: the engine batches requests whose
    `ModelEntry.batch_key` match."""

    def run_batch(self, requests: list[ImageRequest], jobs: list[JobContext]) -> list[ImageResult]: ...


def import_each(*modules: str) -> None:
    """Import what a backend's worker loads, for the process its workers fork from (each model's
    `libraries.py`, named in `ModelEntry.worker_imports`). One that fails is skipped: there it would
    stop every model's workers; the worker that needs it fails alone, with its own error."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - see above: a broken install is the worker's to report
            pass

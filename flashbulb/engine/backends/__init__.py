"""Backends turn an ImageRequest into an ImageResult. They never see HTTP, keys or money."""

from __future__ import annotations

from typing import Protocol

from flashbulb.engine.types import ImageRequest, ImageResult, JobContext


class Backend(Protocol):
    def run(self, request: ImageRequest, job: JobContext) -> ImageResult: ...


class BatchingBackend(Backend, Protocol):
    """A backend that runs several requests at once: the engine batches requests whose
    `ModelEntry.batch_key` match."""

    def run_batch(self, requests: list[ImageRequest], jobs: list[JobContext]) -> list[ImageResult]: ...

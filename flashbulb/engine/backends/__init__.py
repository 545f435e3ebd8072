"""Backends turn an ImageRequest into an ImageResult. They never see HTTP, keys or money."""

from __future__ import annotations

from typing import Protocol

from flashbulb.engine.types import ImageRequest, ImageResult, JobContext


class Backend(Protocol):
    def run(self, request: ImageRequest, job: JobContext) -> ImageResult: ...

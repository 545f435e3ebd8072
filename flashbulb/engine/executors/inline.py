"""Replicas in this process: no isolation, no copies (the one-shot CLI, benchmarks' baseline)."""

from __future__ import annotations

import os
import socket

from flashbulb.engine.backends import Backend
from flashbulb.engine.executors import run_backend
from flashbulb.engine.registry import ModelEntry
from flashbulb.engine.types import ImageRequest, ImageResult, JobContext


class InlineReplica:
    def __init__(self, entry: ModelEntry):
        self.entry = entry
        self.backend: Backend | None = None
        self.info = {"id": f"{entry.name}/inline", "host": socket.gethostname(), "pid": os.getpid()}

    def start(self) -> None:
        if self.backend is None:
            self.backend = self.entry.make_backend()

    def alive(self) -> bool:
        return self.backend is not None

    def run(self, requests: list[ImageRequest], jobs: list[JobContext]) -> list[ImageResult]:
        return run_backend(self.backend, requests, jobs)

    def close(self) -> None:
        self.backend = None


class InlineExecutor:
    def replicas(self, entry: ModelEntry) -> list[InlineReplica]:
        return [InlineReplica(entry)]

    def close(self) -> None:
        pass

"""Where a model's replicas run. The engine's queues and the gateway above don't know which:

- `inline`: in this process, on the replica's thread (the one-shot CLI, benchmarks' baseline);
- `local` (the server's default): each replica in its own supervised child process;
- `ray`: each model a Ray Serve deployment, its replicas placed by Ray across GPUs and hosts.

`Executor.replicas(entry)` gives a model's replicas; each loads its backend in `start` and runs one
job, or one batch of jobs, at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from PIL import Image

from flashbulb.engine.imageio import encode_png
from flashbulb.engine.output_size import fit_result
from flashbulb.engine.registry import ModelEntry
from flashbulb.engine.types import ImageRequest, ImageResult, JobContext
from flashbulb.provenance.watermark import mark_result


class WorkerDied(Exception):
    """The process running a replica's backend ended (a native crash, an OOM kill, SIGKILL)."""

    def __init__(self, message: str, *, started: bool = True):
        super().__init__(message)
        self.started = started  # False: it died before it took the jobs, so they can run elsewhere


class Replica(Protocol):
    info: dict  # {"id", "host", "pid"}: named in every answer it makes (flashbulb.replica)

    def start(self) -> None: ...  # load the backend (again, after a crash); raises if it can't

    def alive(self) -> bool: ...  # False once its process has gone (then `start` brings it back)

    def run(self, requests: list[ImageRequest], jobs: list[JobContext]) -> list[ImageResult]: ...

    def close(self) -> None: ...


class Executor(Protocol):
    def replicas(self, entry: ModelEntry) -> Sequence[Replica]: ...

    def close(self) -> None: ...  # after every replica is closed


def for_backend(requests: list[ImageRequest]) -> list[ImageRequest]:
    """The requests as a worker gets them: callers and price quotes stay in the API process (a
    backend never sees keys or money), only the account's id goes (ImageRequest.owner)."""
    return [dataclasses.replace(r, caller=None, owner=r.caller.account_id if r.caller else r.owner) for r in requests]


def replica_count(deployment: dict, gpus: float) -> int:
    """How many replicas a model gets (at most, when autoscaled): `replicas` or `max_replicas` as
    configured, else one per `gpus_per_replica` GPUs, else one."""
    configured = deployment.get("replicas") or deployment.get("max_replicas")
    return int(configured or max(1, gpus // deployment.get("gpus_per_replica", 1)))


PREVIEW_SIDE = 768  # previews are for watching progress: small enough to cross a process boundary as PNG bytes


def preview_png(image: Image.Image) -> bytes:
    preview = image.copy()
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    return encode_png(preview)


def run_backend(backend, requests: list[ImageRequest], jobs: list[JobContext]) -> list[ImageResult]:
    """One request through `run`, several (a batch the engine gathered) through `run_batch`; then
    each result brought to the exact size its request asked for (engine/output_size.py), then
    watermarked (provenance/watermark.py)."""
    results = [backend.run(requests[0], jobs[0])] if len(requests) == 1 else backend.run_batch(requests, jobs)
    return [mark_result(request, fit_result(request, result, job)) for request, result, job in zip(requests, results, jobs)]


def make_executor(settings, worker_imports: list[str] | None = None) -> Executor:  # flashbulb.config.Settings
    """The executor `[cluster] engine` names; `worker_imports`: what the warm models' workers load."""
    if settings.cluster_engine == "inline":
        from flashbulb.engine.executors.inline import InlineExecutor

        return InlineExecutor()
    if settings.cluster_engine == "ray":
        from flashbulb.engine.executors.ray_serve import RayServeExecutor

        return RayServeExecutor(settings)
    from flashbulb.engine.executors.local import LocalExecutor

    return LocalExecutor(settings, worker_imports)

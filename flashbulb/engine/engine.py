"""The engine: one worker thread per model owns that model's backend and runs its jobs.

A backend is never called from two threads at once (a diffusers pipeline shared across threads
corrupts its scheduler's state). A backend that can batch says which jobs may share a run
(`batch_key`): the worker then waits up to `batch_window_s` for more jobs with the same key and
runs them together. Past `max_queue` waiting jobs a model answers 503 instead of queueing forever.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Hashable
from concurrent.futures import Future

from flashbulb.engine.backends import Backend
from flashbulb.engine.registry import ModelEntry, Registry
from flashbulb.engine.types import Cancelled, ImageRequest, ImageResult, JobContext
from flashbulb.errors import ErrorKind, FlashbulbError


@dataclasses.dataclass
class _Job:
    request: ImageRequest | None  # None: just load the backend (warm-up)
    context: JobContext
    queued_at: float = dataclasses.field(default_factory=time.perf_counter)
    future: Future = dataclasses.field(default_factory=Future)


def _priority(job: _Job) -> int:
    return -1 if job.request is None else job.request.priority  # a warm-up goes first


class _Worker:
    def __init__(self, entry: ModelEntry, batch_window_s: float, max_batch: int):
        self.entry = entry
        self.batch_window_s = batch_window_s
        self.max_batch = max_batch
        self.backend: Backend | None = None
        self.waiting: list[_Job] = []
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name=f"worker-{entry.name}", daemon=True)
        self.thread.start()

    def submit(self, job: _Job) -> Future:
        with self.cond:
            # Behind every job of the same or a more urgent priority: live traffic overtakes batch jobs.
            position = next((i for i, w in enumerate(self.waiting) if _priority(w) > _priority(job)), len(self.waiting))
            self.waiting.insert(position, job)
            self.cond.notify()
        return job.future

    def close(self) -> None:
        with self.cond:
            self.closed = True
            for job in self.waiting:
                job.future.cancel()
            self.cond.notify()

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.waiting and not self.closed:
                    self.cond.wait()
                if self.closed:
                    return
                first = self.waiting.pop(0)
            try:
                backend = self._ensure_backend()
            except Exception as exc:  # a model that fails to load fails its jobs, and is tried again later
                first.future.set_exception(exc)
                continue
            if first.request is None:
                first.future.set_result(None)
                continue
            self._run(backend, [first, *self._gather(backend, first)])

    def _ensure_backend(self) -> Backend:
        if self.backend is None:
            self.backend = self.entry.make_backend()
        return self.backend

    def _gather(self, backend: Backend, first: _Job) -> list[_Job]:
        """Jobs that may share `first`'s run: same batch key, arriving within the batch window."""
        batch_key = getattr(backend, "batch_key", None)
        key: Hashable | None = batch_key(first.request) if batch_key else None
        if key is None or self.max_batch <= 1:
            return []
        found: list[_Job] = []
        deadline = time.perf_counter() + self.batch_window_s
        with self.cond:
            while len(found) < self.max_batch - 1:
                for job in list(self.waiting):
                    if len(found) < self.max_batch - 1 and job.request is not None and batch_key(job.request) == key:
                        self.waiting.remove(job)
                        found.append(job)
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or len(found) >= self.max_batch - 1:
                    break
                self.cond.wait(remaining)
        return found

    def _run(self, backend: Backend, jobs: list[_Job]) -> None:
        live = []
        for job in jobs:
            if job.context.cancel.is_set():  # the caller went away while this job waited
                job.future.set_exception(Cancelled())
            else:
                live.append(job)
        if not live:
            return
        started = time.perf_counter()
        try:
            if len(live) == 1:
                results = [backend.run(live[0].request, live[0].context)]
            else:
                results = backend.run_batch([j.request for j in live], [j.context for j in live])
        except BaseException as exc:  # noqa: BLE001 - every waiting caller must hear about it
            for job in live:
                job.future.set_exception(exc)
            return
        model_ms = round((time.perf_counter() - started) * 1000, 1)
        for job, result in zip(live, results):
            result.timings_ms = {"queue": round((started - job.queued_at) * 1000, 1), **result.timings_ms, "model": model_ms}
            job.future.set_result(result)


class Engine:
    def __init__(self, registry: Registry, max_queue: int = 32, batch_window_s: float = 0.02, max_batch: int = 4):
        self.registry = registry
        self.max_queue = max_queue
        self.batch_window_s = batch_window_s
        self.max_batch = max_batch
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        self.warm: set[str] = set()  # models whose backend is loaded and answering

    def _worker(self, entry: ModelEntry) -> _Worker:
        with self._lock:
            if entry.name not in self._workers:
                self._workers[entry.name] = _Worker(entry, self.batch_window_s, self.max_batch)
            return self._workers[entry.name]

    async def run(self, request: ImageRequest, job: JobContext) -> ImageResult:
        worker = self._worker(self.registry.resolve(request.model))
        with worker.cond:
            waiting = len(worker.waiting)
        if waiting >= self.max_queue:
            raise FlashbulbError(
                ErrorKind.OVERLOADED,
                f"{worker.entry.name} is overloaded ({waiting} requests waiting); retry shortly.",
                retry_after_s=5,
            )
        future = worker.submit(_Job(request, job))
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            job.cancel.set()  # stop the worker at its next check; it must not run on for nobody
            raise

    def queue_depths(self) -> dict[str, int]:
        with self._lock:
            workers = dict(self._workers)
        return {name: len(worker.waiting) for name, worker in workers.items()}

    def warm_up(self, model: str) -> None:
        """Load a model's backend now (on its own worker thread), not in its first request."""
        worker = self._worker(self.registry.resolve(model))
        worker.submit(_Job(None, JobContext())).result()
        self.warm.add(worker.entry.name)

    def close(self) -> None:
        for worker in self._workers.values():
            worker.close()

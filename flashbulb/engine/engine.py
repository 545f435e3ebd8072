"""The engine: one worker thread per model owns that model's backend and runs its jobs in order.

A backend is never called from two threads at once (diffusers pipelines and their schedulers are
not thread-safe). Past `max_queue` waiting jobs a model answers 503 instead of queueing forever.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from flashbulb.engine.backends import Backend
from flashbulb.engine.registry import ModelEntry, Registry
from flashbulb.engine.types import ImageRequest, ImageResult, JobContext
from flashbulb.errors import ErrorKind, FlashbulbError


class _Worker:
    def __init__(self, entry: ModelEntry):
        self.entry = entry
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"worker-{entry.name}")
        self.backend: Backend | None = None
        self.pending = 0
        self.lock = threading.Lock()

    def ensure_backend(self) -> Backend:
        """Build the backend on the worker's own thread, the first time it is needed."""
        if self.backend is None:
            self.backend = self.entry.make_backend()
        return self.backend

    def run(self, request: ImageRequest, job: JobContext, queued_at: float) -> ImageResult:
        started = time.perf_counter()
        job.check()  # the caller may have gone while this job waited
        result = self.ensure_backend().run(request, job)
        result.timings_ms = {
            "queue": round((started - queued_at) * 1000, 1),
            **result.timings_ms,
            "model": round((time.perf_counter() - started) * 1000, 1),
        }
        return result


class Engine:
    def __init__(self, registry: Registry, max_queue: int = 32):
        self.registry = registry
        self.max_queue = max_queue
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        self.warm: set[str] = set()  # models whose backend is loaded and answering

    def _worker(self, entry: ModelEntry) -> _Worker:
        with self._lock:
            if entry.name not in self._workers:
                self._workers[entry.name] = _Worker(entry)
            return self._workers[entry.name]

    async def run(self, request: ImageRequest, job: JobContext) -> ImageResult:
        worker = self._worker(self.registry.resolve(request.model))
        with worker.lock:
            if worker.pending >= self.max_queue:
                raise FlashbulbError(
                    ErrorKind.OVERLOADED,
                    f"{worker.entry.name} is overloaded ({worker.pending} requests waiting); retry shortly.",
                    retry_after_s=5,
                )
            worker.pending += 1
        try:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(worker.executor, worker.run, request, job, time.perf_counter())
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                job.cancel.set()  # stop the worker at its next check; it must not run on for nobody
                raise
        finally:
            with worker.lock:
                worker.pending -= 1

    def warm_up(self, model: str) -> None:
        worker = self._worker(self.registry.resolve(model))
        worker.executor.submit(worker.ensure_backend).result()
        self.warm.add(worker.entry.name)

    def close(self) -> None:
        for worker in self._workers.values():
            worker.executor.shutdown(wait=False, cancel_futures=True)

"""The engine: a queue per model, drained by that model's replicas.

A replica owns one loaded backend and runs one job (or one batch of jobs) at a time: a diffusers
pipeline shared across threads corrupts its scheduler's state. Where the replica runs is the
executor's business (`engine/executors/`): in a supervised child process by default, so a native
crash in a model costs only the calls it was running. A model with several replicas (one per GPU)
has them all take from its one queue, live traffic ahead of batch jobs.

A model that can batch says which requests may share a run (`ModelEntry.batch_key`): a replica then
waits up to `batch_window_s` for more with the same key. Past `max_queue` waiting jobs a model
answers 503 instead of queueing forever. A request whose run killed its worker twice is refused at
once from then on (a poison request must not take down replica after replica).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import overload

from flashbulb.engine.executors import Executor, Replica, WorkerDied
from flashbulb.engine.registry import ModelEntry, Registry
from flashbulb.engine.types import Cancelled, ImageRequest, ImageResult, JobContext
from flashbulb.errors import ErrorKind, FlashbulbError, invalid

log = logging.getLogger("flashbulb.engine")

POISON_CRASHES = 2  # runs of one request that killed a worker before it is refused outright


@dataclasses.dataclass
class Job:
    request: ImageRequest
    context: JobContext
    queued_at: float = dataclasses.field(default_factory=time.perf_counter)
    future: Future = dataclasses.field(default_factory=Future)


def fingerprint(request: ImageRequest) -> str:
    """What makes two requests the same run for a model: the poison list's key."""
    digest = hashlib.sha256()
    for part in (
        request.model,
        request.prompt,
        request.system,
        request.aspect_ratio,
        request.size,
        request.n,
        request.seed,
        request.quality,
    ):
        digest.update(repr(part).encode() + b"\0")
    for image in [*request.images, *([request.mask] if request.mask is not None else [])]:
        digest.update(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


@overload
def finite(value: dict[str, object]) -> dict[str, object]: ...
@overload
def finite(value: object) -> object: ...
def finite(value: object) -> object:
    """`value` with every NaN or infinite float made None: measurements of degenerate images (a 1x1
    photo's noise level) must not make an answer or a usage record unwritable as JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "dtype") and hasattr(value, "item") and getattr(value, "shape", None) == ():  # a numpy scalar
        return finite(value.item())
    return value


def _account(job: Job) -> int | None:
    return job.request.caller.account_id if job.request.caller is not None else None


class _ModelQueue:
    """One model's waiting jobs and the threads that feed them to its replicas."""

    def __init__(self, entry: ModelEntry, replicas: Sequence[Replica], batch_window_s: float, max_batch: int, on_crash) -> None:
        self.entry = entry
        self.replicas = replicas
        self.batch_window_s = batch_window_s
        self.max_batch = max_batch
        self.on_crash = on_crash
        self.waiting: list[Job] = []
        self.turns: dict[int | None, int] = {}  # account -> jobs it has had (its place in the round)
        self.clock = 0  # the turn of the job taken last
        self.cond = threading.Condition()
        self.closed = False
        self.started: dict[int, BaseException | None] = {}  # replica index -> its start error (None: serving)
        self.threads = [
            threading.Thread(target=self._loop, args=(i, r), name=f"replica-{entry.name}-{i}", daemon=True)
            for i, r in enumerate(replicas)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, job: Job) -> Future:
        with self.cond:
            account = _account(job)
            if not any(_account(w) == account for w in self.waiting):
                # An account that had nothing waiting joins the round at the current turn: it neither
                # jumps ahead on credit saved while idle nor waits behind another's backlog.
                self.turns[account] = max(self.turns.get(account, 0), self.clock)
            self.waiting.append(job)
            self.cond.notify()
        return job.future

    def _take_next(self) -> Job:
        """Live traffic before batch jobs; within a priority, accounts take turns (fair share, so one
        account's flood can't starve another's call), each account's own jobs in order. Under the lock."""
        top = min(w.request.priority for w in self.waiting)
        index = min(
            (i for i, w in enumerate(self.waiting) if w.request.priority == top),
            key=lambda i: (self.turns.get(_account(self.waiting[i]), 0), i),
        )
        job = self.waiting.pop(index)
        self._took(job)
        return job

    def _took(self, job: Job) -> None:
        account = _account(job)
        self.clock = max(self.clock, self.turns.get(account, 0))
        self.turns[account] = self.turns.get(account, 0) + 1
        if len(self.turns) > 10_000:  # forget accounts behind the clock: they rejoin at it anyway
            self.turns = {a: t for a, t in self.turns.items() if t > self.clock}

    def close(self) -> None:
        with self.cond:
            self.closed = True
            for job in self.waiting:
                job.future.cancel()
            self.cond.notify_all()
        for replica in self.replicas:
            replica.close()

    def wait_started(self, timeout: float | None = None) -> None:
        """Until every replica has loaded its backend; raises the first one's error if one could not."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while len(self.started) < len(self.replicas):
                if not self.cond.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"{self.entry.name} did not start in time")
            errors = [e for e in self.started.values() if e is not None]
        if errors and len(errors) == len(self.replicas):
            raise errors[0]

    def _start(self, index: int, replica: Replica) -> bool:
        """Start (or restart) a replica. One that can't load fails the job that found it so, and is
        tried again on the next job."""
        try:
            replica.start()
            error = None
        except Exception as exc:  # noqa: BLE001
            log.error("%s replica %d failed to start: %s", self.entry.name, index, exc)
            error = exc
        with self.cond:
            self.started[index] = error
            self.cond.notify_all()
        return error is None

    def _loop(self, index: int, replica: Replica) -> None:
        self._start(index, replica)
        while True:
            with self.cond:
                while not self.waiting and not self.closed:
                    self.cond.wait()
                if self.closed:
                    return
                first = self._take_next()
            self._serve(index, replica, first)
            # The thread waits for the next job holding none: a request's images are freed with its
            # answer (a job left in a local kept them, counted in flight, until the next one came).
            del first

    def _serve(self, index: int, replica: Replica, first: Job) -> None:
        # A worker that died while idle (killed, OOM-killed) is brought back before it is given a job.
        if (self.started.get(index) is not None or not replica.alive()) and not self._start(index, replica):
            error = self.started[index]
            if not isinstance(error, FlashbulbError):  # a fault of this server's, not of the request: 503, not 500
                error = FlashbulbError(
                    ErrorKind.UNAVAILABLE,
                    f"The {self.entry.name} worker could not start ({error}); it is tried again on the next request. "
                    "You were not charged.",
                    retry_after_s=5,
                )
            first.future.set_exception(error)
            return
        jobs = [first, *self._gather(first)]
        try:
            try:
                self._run(replica, jobs)
            except WorkerDied as died:
                if died.started or self.closed or not self._start(index, replica):
                    raise
                # It was dying already (killed while idle) and never took these jobs: run them now.
                self._run(replica, jobs)
        except WorkerDied as died:
            log.error("%s replica %d died running %d request(s): %s; restarting it", self.entry.name, index, len(jobs), died)
            if died.started:  # only a run that began can be what killed it
                self.on_crash(jobs)
            error = FlashbulbError(
                ErrorKind.UNAVAILABLE,
                f"The {self.entry.name} worker stopped while running this request ({died}); it is restarting. "
                "You were not charged; retry shortly.",
                retry_after_s=2,
            )
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            if not self.closed:
                self._start(index, replica)

    def _gather(self, first: Job) -> list[Job]:
        """Jobs that may share `first`'s run: same batch key, arriving within the batch window."""
        batch_key = self.entry.batch_key
        if batch_key is None:
            return []
        key: Hashable | None = batch_key(first.request)
        if key is None or self.max_batch <= 1:
            return []
        found: list[Job] = []
        deadline = time.perf_counter() + self.batch_window_s
        with self.cond:
            while len(found) < self.max_batch - 1:
                for job in list(self.waiting):
                    if len(found) < self.max_batch - 1 and batch_key(job.request) == key:
                        self.waiting.remove(job)
                        self._took(job)
                        found.append(job)
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or len(found) >= self.max_batch - 1:
                    break
                self.cond.wait(remaining)
        return found

    def _run(self, replica: Replica, jobs: list[Job]) -> None:
        live = []
        for job in jobs:
            if job.future.done():  # answered already (a run retried on a new worker)
                continue
            if job.context.cancel.is_set():  # the caller went away while this job waited
                job.future.set_exception(Cancelled())
            else:
                live.append(job)
        if not live:
            return
        started = time.perf_counter()
        try:
            results = replica.run([j.request for j in live], [j.context for j in live])
        except WorkerDied:
            raise
        except BaseException as exc:  # noqa: BLE001 - every waiting caller must hear about it
            for job in live:
                job.future.set_exception(exc)
            return
        model_ms = round((time.perf_counter() - started) * 1000, 1)
        for job, result in zip(live, results):
            result.timings_ms = {"queue": round((started - job.queued_at) * 1000, 1), **result.timings_ms, "model": model_ms}
            result.replica = result.replica or dict(replica.info)  # a Ray replica names itself
            result.quality = finite(result.quality)
            job.future.set_result(result)


class Engine:
    def __init__(
        self,
        registry: Registry,
        executor: Executor | None = None,
        max_queue: int = 32,
        batch_window_s: float = 0.02,
        max_batch: int = 4,
        on_crash: Callable[[list[str], str], None] | None = None,
        to_warm: list[str] | None = None,
    ):
        from flashbulb.engine.executors.inline import InlineExecutor

        self.registry = registry
        self.executor: Executor = executor or InlineExecutor()
        self.max_queue = max_queue
        self.batch_window_s = batch_window_s
        self.max_batch = max_batch
        self._queues: dict[str, _ModelQueue] = {}
        self._lock = threading.Lock()
        self._crashes: dict[str, int] = {}  # request fingerprint -> runs of it that killed a worker
        # Told of each crash (fingerprints, model): the server shares them with the others on its
        # database, whose counts come back through `merge_crashes`.
        self._on_crash = on_crash
        self.to_warm = to_warm or []  # the installed models to load at start ([server] warm_models, by name)
        self.warm: set[str] = set()  # models whose replicas are loaded and answering

    def _queue(self, entry: ModelEntry) -> _ModelQueue:
        with self._lock:
            if entry.name not in self._queues:
                self._queues[entry.name] = _ModelQueue(
                    entry, self.executor.replicas(entry), self.batch_window_s, self.max_batch, self._record_crash
                )
            return self._queues[entry.name]

    def _record_crash(self, jobs: list[Job]) -> None:
        keys = [fingerprint(job.request) for job in jobs]  # hashing pixels: outside the lock
        with self._lock:
            for key in keys:
                self._crashes[key] = self._crashes.get(key, 0) + 1
        if self._on_crash is not None and jobs:
            try:
                self._on_crash(keys, jobs[0].request.model)
            except Exception:  # a database hiccup must not stop the worker coming back
                log.exception("could not share a worker crash with the other servers")

    def merge_crashes(self, counts: dict[str, int]) -> None:
        """Take the crash counts every server on the database recorded (a count only grows here)."""
        with self._lock:
            for key, crashes in counts.items():
                self._crashes[key] = max(self._crashes.get(key, 0), crashes)

    def _check_not_poison(self, request: ImageRequest) -> None:
        if self._crashes.get(fingerprint(request), 0) >= POISON_CRASHES:
            raise invalid(
                f"This exact request stopped the {request.model} worker {POISON_CRASHES} times, so it is refused "
                "(nothing was charged). Change the input or the instruction.",
                code="poison_request",
            )

    async def run(self, request: ImageRequest, job: JobContext) -> ImageResult:
        queue = self._queue(self.registry.resolve(request.model))
        if self._crashes:  # the common case, nothing crashed, has nothing to hash; hashing pixels is off the loop
            await asyncio.to_thread(self._check_not_poison, request)
        with queue.cond:
            waiting = len(queue.waiting)
        if waiting >= self.max_queue:
            raise FlashbulbError(
                ErrorKind.OVERLOADED,
                f"{queue.entry.name} is overloaded ({waiting} requests waiting); retry shortly.",
                retry_after_s=5,
            )
        future = queue.submit(Job(request, job))
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            job.cancel.set()  # stop the worker at its next check; it must not run on for nobody
            raise

    def queue_depths(self) -> dict[str, int]:
        with self._lock:
            queues = dict(self._queues)
        return {name: len(queue.waiting) for name, queue in queues.items()}

    def replicas(self) -> dict[str, list[dict]]:
        """Each model's replicas as they are now (for /readyz and the operator)."""
        with self._lock:
            queues = dict(self._queues)
        return {name: [dict(r.info) for r in queue.replicas] for name, queue in queues.items()}

    def start(self, model: str) -> None:
        """Have a model's replicas start loading (without waiting for them)."""
        self._queue(self.registry.resolve(model))

    def warm_up(self, model: str, timeout: float | None = None) -> None:
        """Start a model's replicas now (each loads its backend), not in its first request."""
        queue = self._queue(self.registry.resolve(model))
        queue.wait_started(timeout)
        self.warm.add(queue.entry.name)

    def close(self) -> None:
        with self._lock:
            queues = list(self._queues.values())
        for queue in queues:
            queue.close()
        self.executor.close()

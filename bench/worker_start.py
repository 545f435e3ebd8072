"""How long model workers take to start, and the CPU they spend doing it: workers forked from a
forkserver that has imported what they load (flashbulb's executor) against workers spawned fresh,
each importing torch or the photo libraries itself (the executor before, the baseline, same run).

    .venv/bin/python bench/worker_start.py [--rounds 3] [--photo-replicas 2] [--tiny-diffusion 2]

Each variant runs in its own process (the forkserver is one per process), alternating, `--rounds`
times: it starts every replica at once, as a server's warm-up does, then kills one photo worker and
times its restart. CPU is read from /proc for the workers and the forkserver.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run_variant(variant: str, photo_replicas: int, tiny: int, root: Path) -> dict:
    from flashbulb.config import Settings
    from flashbulb.engine.executors import local
    from flashbulb.engine.registry import Registry

    tables = f"[models.flashbulb-photo]\nreplicas = {photo_replicas}\n"
    for i in range(tiny):
        tables += f'[models.tiny-{i}]\nlike = "sd-turbo"\npath = {json.dumps(str(root / "tiny-sd"))}\nsteps = 2\npixels = 4096\n'
    data_dir = Path(tempfile.mkdtemp(prefix="flashbulb-bench-"))
    (data_dir / "flashbulb.toml").write_text(tables)
    settings = Settings.load(str(data_dir), None)
    registry = Registry.default(settings)
    models = ["flashbulb-photo", *(f"tiny-{i}" for i in range(tiny))]
    if variant == "spawn":  # the executor before: each worker a fresh interpreter that imports everything itself
        local._context = multiprocessing.get_context("spawn")
        executor = local.LocalExecutor(settings)
    else:
        executor = local.LocalExecutor(settings, registry.worker_imports(models))
    replicas = [r for m in models for r in executor.replicas(registry.resolve(m))]
    started = time.perf_counter()
    threads = [threading.Thread(target=r.start) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    all_ready = time.perf_counter() - started
    pids = [r.process.pid for r in replicas]
    forkserver = multiprocessing.forkserver._forkserver._forkserver_pid if variant == "forkserver" else None
    cpu = sum(cpu_s(p) for p in pids) + (cpu_s(forkserver) if forkserver else 0)
    # A crashed photo worker's restart: what a caller behind it waits for.
    photo = replicas[0]
    os.kill(photo.process.pid, signal.SIGKILL)
    photo.process.join(5)
    started = time.perf_counter()
    photo.start()
    restart = time.perf_counter() - started
    for r in replicas:
        r.close()
    return {"ready_s": all_ready, "cpu_s": cpu, "restart_s": restart, "workers": len(replicas)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photo-replicas", type=int, default=2)
    parser.add_argument("--tiny-diffusion", type=int, default=2, help="tiny random-weight sd-turbo models (0: none)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.photo_replicas, args.tiny_diffusion, Path(args.root))))
        return
    root = Path(tempfile.mkdtemp(prefix="flashbulb-bench-weights-"))
    if args.tiny_diffusion:
        import tiny_pipelines

        from flashbulb.engine.backends.diffusion import catalog

        tiny_pipelines.build(catalog.by_name()["sd-turbo"].pipeline, root / "tiny-sd")
    results: dict[str, list[dict]] = {"spawn": [], "forkserver": []}
    for _ in range(args.rounds):
        for variant in results:
            command = [sys.executable, __file__, "--variant", variant, "--root", str(root)]
            command += ["--photo-replicas", str(args.photo_replicas), "--tiny-diffusion", str(args.tiny_diffusion)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[variant].append(json.loads(out.strip().splitlines()[-1]))
    workers = results["spawn"][0]["workers"]
    print(
        f"{workers} workers ({args.photo_replicas} flashbulb-photo, {args.tiny_diffusion} tiny diffusion), {args.rounds} rounds, medians"
    )
    print(f"{'measure':<44}{'spawn (baseline)':>18}{'forkserver':>12}{'ratio':>8}")
    for name, label in [
        ("ready_s", "all workers ready, wall s"),
        ("cpu_s", "their CPU (and the forkserver's), s"),
        ("restart_s", "a killed photo worker back, wall s"),
    ]:
        before = statistics.median(r[name] for r in results["spawn"])
        after = statistics.median(r[name] for r in results["forkserver"])
        print(f"{label:<44}{before:>18.2f}{after:>12.2f}{after / before:>8.2f}")


if __name__ == "__main__":
    main()

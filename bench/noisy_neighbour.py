"""Can one account slow another's live calls? Through a live server and the SDK.

Account B edits a 64x64 photo on flashbulb-photo in a loop, while account A
1. floods the same model from --flood concurrent callers, no rate limit (an attacker has as many
   keys as it likes), first with calls like B's, then with 256-px edits (~10x longer: their
   watermark): the model queue gives accounts turns, so B waits for the call A is running, not for
   A's backlog;
2. creates a batch of --items requests (the most one may hold: 10,000) from an uploaded JSONL, on a
   model of its own worker (tests/fault_backends.py). Before the batch limit, a 200,000-item batch
   took B's calls from 0.2 s to 7.5 s.
Baseline in the same run: B's calls with nothing else going on. Printed: B's median and slowest call
in each phase and their ratio to the baseline.

    .venv/bin/python bench/noisy_neighbour.py [--flood 16] [--items 10000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import SLOW_MODEL, astronaut, gemini_body, png_bytes, start_server
from databases import scratch_databases

UNLIMITED = "[rate_limits]\nkey_rpm = 0\naccount_rpm = 0\nkey_concurrent = 0\naccount_concurrent = 0\n"


def measure(database_url: str, flood: int, items: int) -> dict[str, list[float]]:
    data_dir = Path(tempfile.mkdtemp(prefix="flashbulb-bench-"))
    server = start_server(data_dir, database_url, config=SLOW_MODEL + UNLIMITED)
    try:
        noisy, quiet = server.create_key("100"), server.create_key("100")
        small = base64.b64encode(png_bytes(astronaut(16))).decode()
        lines = (
            json.dumps(
                {"key": f"k{i}", "request": {"contents": [{"parts": [{"text": "sleep 0"}, {"inlineData": {"data": small}}]}]}}
            )
            for i in range(items)
        )
        jsonl = data_dir / "batch.jsonl"
        jsonl.write_text("\n".join(lines) + "\n")
        client = server.genai(noisy)
        uploaded = client.files.upload(file=str(jsonl), config={"mime_type": "application/jsonl"})
        quiet_body = gemini_body(png_bytes(astronaut(64)), "make it brighter")
        noisy_body = gemini_body(png_bytes(astronaut(256)), "make it brighter and warmer")

        def call(key: str, body: dict) -> float:
            started = time.perf_counter()
            assert server.generate(key, body).status_code == 200
            return time.perf_counter() - started

        def while_running(noise) -> list[float]:
            """B's calls for as long as `noise()` runs."""
            during: list[float] = []
            running = threading.Event()
            running.set()

            def loop() -> None:
                while running.is_set():
                    during.append(call(quiet, quiet_body))

            caller = threading.Thread(target=loop)
            caller.start()
            try:
                noise()
            finally:
                running.clear()
                caller.join()
            return during

        def flooding(body: dict, calls: int):
            def noise() -> None:
                with ThreadPoolExecutor(flood) as pool:
                    list(pool.map(lambda _: call(noisy, body), range(calls)))

            return noise

        phases = {"alone": [call(quiet, quiet_body) for _ in range(20)]}
        phases["A floods with B's kind of call"] = while_running(flooding(quiet_body, flood * 10))
        phases["A floods with 256-px edits"] = while_running(flooding(noisy_body, flood * 3))
        phases[f"A creates a {items:,}-item batch"] = while_running(
            lambda: client.batches.create(model="slow", src=uploaded.name)
        )
        return phases
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flood", type=int, default=16)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--postgres", default=os.environ.get("FLASHBULB_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    print("B's 64x64 edits on flashbulb-photo while account A is noisy; baseline = B's calls alone")
    print(f"{'database':<12}{'phase':<32}{'calls':>6}{'median s':>10}{'max s':>8}{'median ratio':>14}{'max ratio':>11}")
    with scratch_databases(args.postgres) as targets:
        for label, url in targets:
            phases = measure(url, args.flood, args.items)
            alone = phases["alone"]
            for phase, times in phases.items():
                print(
                    f"{label:<12}{phase:<32}{len(times):>6}{statistics.median(times):>10.3f}{max(times):>8.3f}"
                    f"{statistics.median(times) / statistics.median(alone):>14.2f}{max(times) / max(alone):>11.2f}"
                )


if __name__ == "__main__":
    main()

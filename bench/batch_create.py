"""Does creating a big batch slow another account's live calls? Through a live server and the SDK.

Account A uploads a JSONL of --items requests (the most a batch may hold: 10,000) and creates a
batch from it, on a model of its own worker (tests/fault_backends.py), while account B edits a
64x64 photo in a loop on flashbulb-photo. Baseline in the same run: B's calls with nothing else
going on. Printed: B's median and slowest call, before and during the creation, and their ratio.
(Before the batch limit, a 200,000-item batch took B's calls from 0.2 s to 7.5 s.)

    .venv/bin/python bench/batch_create.py [--items 10000] [--postgres URL]
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
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import SLOW_MODEL, astronaut, gemini_body, png_bytes, start_server

UNLIMITED = "[rate_limits]\nkey_rpm = 0\naccount_rpm = 0\nkey_concurrent = 0\naccount_concurrent = 0\n"


def measure(database_url: str, items: int) -> tuple[list[float], list[float], float]:
    data_dir = Path(tempfile.mkdtemp(prefix="flashbulb-bench-"))
    server = start_server(data_dir, database_url, config=SLOW_MODEL + UNLIMITED)
    try:
        batch_owner, live_caller = server.create_key("100"), server.create_key("100")
        small = base64.b64encode(png_bytes(astronaut(16))).decode()
        lines = (
            json.dumps(
                {"key": f"k{i}", "request": {"contents": [{"parts": [{"text": "sleep 0"}, {"inlineData": {"data": small}}]}]}}
            )
            for i in range(items)
        )
        jsonl = data_dir / "batch.jsonl"
        jsonl.write_text("\n".join(lines) + "\n")
        client = server.genai(batch_owner)
        uploaded = client.files.upload(file=str(jsonl), config={"mime_type": "application/jsonl"})
        body = gemini_body(png_bytes(astronaut(64)), "make it brighter")

        def call() -> float:
            started = time.perf_counter()
            assert server.generate(live_caller, body).status_code == 200
            return time.perf_counter() - started

        alone = [call() for _ in range(20)]
        during: list[float] = []
        creating = threading.Event()

        def live() -> None:
            while creating.is_set():
                during.append(call())

        creating.set()
        caller = threading.Thread(target=live)
        caller.start()
        started = time.perf_counter()
        client.batches.create(model="slow", src=uploaded.name)
        took = time.perf_counter() - started
        creating.clear()
        caller.join()
        return alone, during, took
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--postgres", default=os.environ.get("FLASHBULB_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    targets = [("sqlite", f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}")]
    admin, name = None, f"flashbulb_bench_{uuid.uuid4().hex[:8]}"
    if args.postgres:
        admin = sa.create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        targets.append(("postgresql", args.postgres.rsplit("/", 1)[0] + "/" + name))
    print(f"a batch of {args.items:,} requests created while another account calls; baseline = its calls alone")
    print(f"{'database':<12}{'create s':>9}{'alone med/max s':>17}{'during med/max s':>18}{'max ratio':>11}")
    try:
        for label, url in targets:
            alone, during, took = measure(url, args.items)
            print(
                f"{label:<12}{took:>9.2f}{statistics.median(alone):>10.3f}/{max(alone):.3f}"
                f"{statistics.median(during):>11.3f}/{max(during):.3f}{max(during) / max(alone):>11.2f}"
            )
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()

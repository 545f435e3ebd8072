"""Batch throughput: N flashbulb-photo items as one batch job vs the same N items sent one by one as
live generateContent calls from one client (the baseline, measured in the same run on the same
server), in items per minute, with what each cost. Optionally kills the server (SIGKILL) K times
while the batch runs and checks that every item still ran and was charged exactly once.

    .venv/bin/python bench/batch_throughput.py [--items 1000] [--size 16] [--text "make it brighter"]
                                               [--kill 2] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import base64
import collections
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image
from skimage import data
from sqlalchemy import func, select

from flashbulb.batchclient import BatchClient, stats
from flashbulb.store import db as store
from flashbulb.store.tables import Account, BatchJob, Hold, LedgerEntry

CLI = [sys.executable, "-m", "flashbulb.cli"]


class Server:
    def __init__(self, data_dir: Path, database_url: str):
        self.data_dir = data_dir
        self.env = {**os.environ, "FLASHBULB_DATA_DIR": str(data_dir), "FLASHBULB_DATABASE_URL": database_url}
        self.process: subprocess.Popen | None = None
        self.base = ""

    def start(self) -> float:
        """Start and wait until ready (model loaded); returns the seconds it took."""
        started = time.perf_counter()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        log = open(self.data_dir / "server.log", "a")  # noqa: SIM115
        self.process = subprocess.Popen([*CLI, "serve", "--port", str(port)], stdout=log, stderr=log, env=self.env)
        self.base = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=5).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise SystemExit(f"server exited: {(self.data_dir / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)

    def key(self, name: str, usd: str) -> str:
        done = subprocess.run(
            [*CLI, "keys", "create", "--name", name, "--credits", usd], capture_output=True, text=True, env=self.env, check=True
        )
        return done.stdout.strip()


def request_body(size: int, text: str) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((size, size)).save(buffer, "PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    return {"contents": [{"role": "user", "parts": [{"text": text}, {"inlineData": {"mimeType": "image/png", "data": image}}]}]}


def live_baseline(server: Server, key: str, body: dict, count: int) -> tuple[float, int]:
    """(seconds, micro-USD charged) for `count` live calls, one after another from one client."""
    charged = 0
    url = f"{server.base}/v1beta/models/flashbulb-photo:generateContent"
    with httpx.Client(headers={"x-goog-api-key": key}, timeout=120) as client:
        client.post(url, json=body).raise_for_status()  # warm-up, not timed
        started = time.perf_counter()
        for _ in range(count):
            response = client.post(url, json=body)
            response.raise_for_status()
            charged += response.json()["flashbulb"]["charge_micros"]
    return time.perf_counter() - started, charged


def run_batch(
    server: Server, key: str, jsonl: Path, items: int, kills: int, database_url: str
) -> tuple[float, dict, list[float]]:
    """Submit, wait (killing and restarting the server `kills` times on the way); (seconds, batch, restart seconds)."""
    client = BatchClient(server.base, key)
    file_name = client.upload(jsonl)
    started = time.perf_counter()
    batch = client.create("flashbulb-photo", file_name, "bench")
    batch_id = batch["name"].removeprefix("batches/")
    database = store.connect(database_url)
    restarts: list[float] = []
    try:
        for k in range(1, kills + 1):
            while _done(database, batch_id) < items * k / (kills + 1):
                time.sleep(0.25)
            server.kill()
            restarts.append(server.start())
        client = BatchClient(server.base, key)
        while not (batch := client.get(batch_id)).get("done"):
            time.sleep(0.25)
    finally:
        database.dispose()
    return time.perf_counter() - started, batch, restarts


def _done(database, batch_id: str) -> int:
    with database.connect() as conn:
        row = conn.execute(select(BatchJob.succeeded_count, BatchJob.failed_count).where(BatchJob.id == batch_id)).one()
    return row.succeeded_count + row.failed_count


def check_exactly_once(server: Server, key: str, batch: dict, items: int, database_url: str, account: str) -> list[str]:
    """What is wrong with the batch's results or its books (nothing, when all is well)."""
    problems = []
    out = io.BytesIO()
    BatchClient(server.base, key).results(batch, out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    if [line["key"] for line in lines] != [f"k{i}" for i in range(items)]:
        problems.append("results are not one per item in input order")
    if any("response" not in line for line in lines):
        problems.append("some items have no response")
    batch_id = batch["name"].removeprefix("batches/")
    database = store.connect(database_url)
    try:
        with database.connect() as conn:
            holds = conn.execute(select(Hold.request_id, Hold.state).where(Hold.request_id.like(f"batch-{batch_id}-%"))).all()
            row = conn.execute(select(Account).where(Account.name == account)).one()
            ledger_sum = conn.execute(
                select(func.sum(LedgerEntry.amount_micros)).where(LedgerEntry.account_id == row.id)
            ).scalar()
    finally:
        database.dispose()
    settled = collections.Counter(
        int(re.match(rf"batch-{batch_id}-(\d+)-", h.request_id).group(1)) for h in holds if h.state == "settled"
    )
    if settled != collections.Counter(range(items)):
        problems.append("not exactly one settled hold per item")
    if any(h.state == "held" for h in holds):
        problems.append("holds left open")
    if row.balance_micros != ledger_sum or row.held_micros != 0:
        problems.append("the ledger does not balance")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--size", type=int, default=16, help="input image side, px")
    parser.add_argument("--text", default="make it brighter", help="the instruction of every item")
    parser.add_argument("--baseline-items", type=int, default=None, help="live calls for the baseline (default: --items)")
    parser.add_argument("--kill", type=int, default=0, help="SIGKILL the server this many times during the batch")
    parser.add_argument("--database-url", default="", help="default: SQLite in a fresh data dir")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="flashbulb-bench-"))
    # The baseline sends live calls as fast as one client can: a benchmark, not a customer to limit.
    (data_dir / "flashbulb.toml").write_text(
        "[rate_limits]\nkey_rpm = 0\naccount_rpm = 0\nkey_concurrent = 0\naccount_concurrent = 0\n"
    )
    database_url = args.database_url or f"sqlite:///{data_dir / 'flashbulb.db'}"
    server = Server(data_dir, database_url)
    try:
        start_s = server.start()
        body = request_body(args.size, args.text)
        live_key, batch_key = server.key("bench-live", "1000"), server.key("bench-batch", "1000")
        baseline_items = args.baseline_items or args.items
        live_s, live_charge = live_baseline(server, live_key, body, baseline_items)
        jsonl = data_dir / "in.jsonl"
        jsonl.write_text("".join(json.dumps({"key": f"k{i}", "request": body}) + "\n" for i in range(args.items)))
        batch_s, batch, restarts = run_batch(server, batch_key, jsonl, args.items, args.kill, database_url)
        total, succeeded, failed, _ = stats(batch)
        live_rate, batch_rate = baseline_items / live_s * 60, args.items / batch_s * 60
        print(
            f"flashbulb-photo, {args.size}x{args.size} PNG, {args.text!r}; {database_url.split(':')[0]}; {os.cpu_count()} CPUs; server start {start_s:.1f} s"
        )
        print(f"{'':<48}{'items':>7}{'seconds':>10}{'items/min':>11}{'USD/item':>10}")
        print(
            f"{'baseline: live generateContent, one by one':<48}{baseline_items:>7}{live_s:>10.1f}{live_rate:>11.0f}{live_charge / baseline_items / 1e6:>10.6f}"
        )
        batch_charge = _charged(database_url, "bench-batch")
        label = f"batch job ({args.kill} SIGKILL{'s' if args.kill != 1 else ''})" if args.kill else "batch job"
        print(f"{label:<48}{args.items:>7}{batch_s:>10.1f}{batch_rate:>11.0f}{batch_charge / max(1, succeeded) / 1e6:>10.6f}")
        print(
            f"batch / baseline: {batch_rate / live_rate:.2f}x the items per minute; {succeeded}/{total} succeeded, {failed} failed"
        )
        if args.kill:
            print(f"restarts took {', '.join(f'{s:.1f}' for s in restarts)} s (included in the batch time)")
            problems = check_exactly_once(server, batch_key, batch, args.items, database_url, "bench-batch")
            print(
                "exactly once: "
                + (
                    "ok (one result per item in order, one settled hold per item, no open holds, ledger balances)"
                    if not problems
                    else "; ".join(problems)
                )
            )
    finally:
        server.stop()


def _charged(database_url: str, account: str) -> int:
    database = store.connect(database_url)
    try:
        with database.connect() as conn:
            row = conn.execute(select(Account.id).where(Account.name == account)).one()
            return -int(
                conn.execute(  # PostgreSQL sums bigints as numeric
                    select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(
                        LedgerEntry.account_id == row.id, LedgerEntry.kind == "charge"
                    )
                ).scalar()
            )
    finally:
        database.dispose()


if __name__ == "__main__":
    main()

"""What a /metrics scrape costs in the database as the usage table grows: the running totals
(billing.usage.RunningTotals: each record summed once, then only the newer ones) against a named
baseline measured in the same run on the same rows: summing the whole usage table, as every scrape
did before.

    .venv/bin/python bench/metrics_scrape.py [--records 200000] [--postgres URL]

SQLite always; PostgreSQL too when --postgres or FLASHBULB_TEST_POSTGRES_URL is given (a fresh
database is created and dropped). Between two scrapes, 100 new calls are recorded (about a
minute of one busy GPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from databases import scratch_databases

from flashbulb.billing.usage import RunningTotals, _per_model_status
from flashbulb.clock import clock
from flashbulb.gateway import accounts
from flashbulb.store import db as store
from flashbulb.store.tables import UsageRecord, utcnow

MODELS = ["flashbulb-photo", "flux2-klein-4b", "sd-turbo"]
STATUSES = ["ok", "ok", "ok", "no_image", "error"]


def add_records(db: sa.Engine, count: int, account_id: int) -> None:
    now = utcnow()
    rows = [
        {
            "request_id": uuid.uuid4().hex,
            "account_id": account_id,
            "key_id": 0,
            "model": MODELS[i % len(MODELS)],
            "status": STATUSES[i % len(STATUSES)],
            "output_images": 1,
            "charge_micros": 39_000,
            "quality": {},
            "created_at": now,
        }
        for i in range(count)
    ]
    with db.begin() as conn:
        for start in range(0, count, 10_000):
            conn.execute(sa.insert(UsageRecord), rows[start : start + 10_000])


def timed_ms(work, runs: int = 7, before=lambda: None) -> float:
    times = []
    for _ in range(runs):
        before()  # not timed
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(url: str, records: int) -> tuple[float, float]:
    db = store.connect(url)
    store.migrate(db)
    made = accounts.create_key(db, "bench")  # the records' account and key
    add_records(db, records, made.account_id)
    if db.dialect.name == "postgresql":  # the statistics autovacuum keeps on a table that grew this much
        with db.begin() as conn:
            conn.execute(sa.text("ANALYZE usage_records"))
    totals = RunningTotals()
    totals.read(db)  # a server's first scrape sums everything
    clock.advance(RunningTotals.SETTLED_S + 1)
    totals.read(db)  # a minute on, what it saw then is behind its cursor: kept, not read again

    def full_sum() -> None:
        with db.connect() as conn:
            conn.execute(_per_model_status()).all()

    baseline = timed_ms(full_sum)
    running = timed_ms(lambda: totals.read(db), before=lambda: add_records(db, 100, made.account_id))
    db.dispose()
    clock.offset_s = 0.0
    return baseline, running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--postgres", default=os.environ.get("FLASHBULB_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    print(f"{args.records:,} usage records; baseline = summing the whole usage table (each scrape, before)")
    print(f"{'database':<12}{'baseline ms':>13}{'running totals ms':>19}{'ratio':>8}")
    with scratch_databases(args.postgres) as targets:
        for label, url in targets:
            baseline, running = measure(url, args.records)
            print(f"{label:<12}{baseline:>13.1f}{running:>19.2f}{running / baseline:>8.3f}")


if __name__ == "__main__":
    main()

"""Ledger throughput: settled charges per second (ledger.hold + ledger.close_hold pairs, each its own
transaction, with a referred account so the commission is paid in the settle) from N threads,
against a named baseline measured in the same run on the same database: a bare INSERT of one row
per transaction (the least one durable write can cost there).

    .venv/bin/python bench/ledger_throughput.py [--threads 8] [--seconds 5] [--postgres URL]

SQLite always; PostgreSQL too when --postgres or FLASHBULB_TEST_POSTGRES_URL is given (a fresh
database is created and dropped).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from databases import scratch_databases

from flashbulb.billing import ledger, quotes
from flashbulb.gateway import accounts
from flashbulb.store import db as store
from flashbulb.store.tables import Account

BASELINE = sa.Table("bench_baseline", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.BigInteger))


def run_threads(threads: int, seconds: float, work) -> float:
    """Call work(thread, i) from `threads` threads for `seconds`; operations per second."""
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def loop(t: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            work(t, i)
            i += 1
        counts[t] = i

    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def measure(url: str, threads: int, seconds: float) -> tuple[float, float]:
    db = store.connect(url)
    store.migrate(db)
    BASELINE.create(db, checkfirst=True)
    referrer = accounts.create_key(db, f"bench-r-{uuid.uuid4().hex[:6]}")
    with db.connect() as conn:
        code = conn.execute(sa.select(Account.referral_code).where(Account.id == referrer.account_id)).scalar()
    customer = accounts.create_key(db, f"bench-{uuid.uuid4().hex[:6]}", credits_micros=10**15, referred_by=code)
    quote = quotes.Quote(small=1_000, standard=2_000, large=4_000, input_image=100, images=1, inputs=1)
    run = uuid.uuid4().hex[:8]

    def insert(t: int, i: int) -> None:
        with db.begin() as conn:
            conn.execute(BASELINE.insert().values(v=i))

    def charge(t: int, i: int) -> None:
        rid = f"{run}-{t}-{i}"
        ledger.hold(
            db,
            request_id=rid,
            account_id=customer.account_id,
            key_id=customer.key_id,
            model="bench",
            amount_micros=quote.hold_micros,
            ttl_s=600,
            quote=quote,
        )
        pixels = [1024 * 1024]  # as the gateway settles: the charge its quote gives, and the images returned
        ledger.close_hold(db, rid, quote.charge_for(pixels), ledger.Usage(status="ok", output_images=1), output_pixels=pixels)

    baseline = run_threads(threads, seconds, insert)
    charges = run_threads(threads, seconds, charge)
    with db.connect() as conn:
        balance = conn.execute(sa.select(Account.balance_micros).where(Account.id == customer.account_id)).scalar()
        entries = conn.execute(
            sa.text("SELECT COALESCE(SUM(amount_micros), 0) FROM ledger_entries WHERE account_id = :a"),
            {"a": customer.account_id},
        ).scalar()
    assert balance == entries, "the books do not balance"
    db.dispose()
    return baseline, charges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--postgres", default=os.environ.get("FLASHBULB_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    print(f"{args.threads} threads, {args.seconds:g} s each; baseline = bare INSERT of one row per transaction")
    print(f"{'database':<12}{'baseline tx/s':>15}{'charges/s':>12}{'ratio':>8}")
    with scratch_databases(args.postgres) as targets:
        for label, url in targets:
            baseline, charges = measure(url, args.threads, args.seconds)
            print(f"{label:<12}{baseline:>15.0f}{charges:>12.0f}{charges / baseline:>8.2f}")


if __name__ == "__main__":
    main()

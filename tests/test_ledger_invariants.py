"""Random concurrent sequences of holds, settles, releases and grants keep the books exact (SQLite, PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select, update

from flashbulb.billing import ledger
from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.gateway import accounts
from flashbulb.store import db as db_module
from flashbulb.store.tables import Account, Hold, LedgerEntry, UsageRecord, utcnow

REQUESTS = [f"r{i}" for i in range(6)]
operation = st.one_of(
    st.tuples(st.just("hold"), st.sampled_from(REQUESTS), st.integers(1, 1000)),
    st.tuples(st.just("settle"), st.sampled_from(REQUESTS), st.integers(0, 400)),
    st.tuples(st.just("release"), st.sampled_from(REQUESTS), st.just(0)),
    st.tuples(st.just("grant"), st.just(""), st.integers(-300, 300)),
)


def apply(db, account: str, account_id: int, prefix: str, op: tuple) -> None:
    kind, rid, amount = op
    try:
        if kind == "hold":
            ledger.hold(db, request_id=prefix + rid, account_id=account_id, key_id=0, model="m", amount_micros=amount, ttl_s=60)
        elif kind == "settle":
            with db.connect() as conn:
                held = conn.execute(select(Hold.amount_micros).where(Hold.request_id == prefix + rid)).scalar()
            if held is not None:
                ledger.close_hold(db, prefix + rid, min(amount, held), ledger.Usage(status="ok"))
        elif kind == "release":
            ledger.close_hold(db, prefix + rid, 0, ledger.Usage(status="error"))
        else:
            ledger.grant(db, account, amount)
    except FlashbulbError:
        pass  # refused: out of credits, a reused request id, a grant below zero


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=30))
def test_books_balance_after_any_concurrent_sequence(any_database, ops):
    account = f"inv-{uuid.uuid4().hex[:8]}"
    prefix = uuid.uuid4().hex[:8] + "-"
    account_id = accounts.create_key(any_database, account, credits_micros=1_000).account_id
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda op: apply(any_database, account, account_id, prefix, op), ops))
    # Closing again changes nothing: each request is settled or released exactly once.
    for rid in REQUESTS:
        if _state(any_database, prefix + rid) in ("settled", "released"):
            assert not ledger.close_hold(any_database, prefix + rid, 0, ledger.Usage(status="retry"))
    with any_database.connect() as conn:
        row = conn.execute(select(Account.balance_micros, Account.held_micros).where(Account.id == account_id)).one()
        entries = conn.execute(
            select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(LedgerEntry.account_id == account_id)
        ).scalar()
        open_holds = conn.execute(
            select(func.coalesce(func.sum(Hold.amount_micros), 0)).where(Hold.account_id == account_id, Hold.state == "held")
        ).scalar()
        charges_per_request = (
            conn.execute(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.account_id == account_id, LedgerEntry.kind == "charge")
                .group_by(LedgerEntry.request_id)
            )
            .scalars()
            .all()
        )
        settled = conn.execute(
            select(func.coalesce(func.sum(Hold.charged_micros), 0)).where(Hold.account_id == account_id)
        ).scalar()
        charged = conn.execute(
            select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(
                LedgerEntry.account_id == account_id, LedgerEntry.kind == "charge"
            )
        ).scalar()
    assert row.balance_micros == entries
    assert row.held_micros == open_holds
    assert row.balance_micros - row.held_micros >= 0 and row.balance_micros >= 0
    assert all(count == 1 for count in charges_per_request)
    assert -charged == settled  # the ledger's charges are exactly what the holds settled for


def _state(db, request_id: str) -> str | None:
    with db.connect() as conn:
        return conn.execute(select(Hold.state).where(Hold.request_id == request_id)).scalar()


def test_the_hot_paths_driver_level_statements_refuse_as_sqlalchemy_would(any_database):
    """A hold and its settlement run as the driver's own SQL (store.db.Prepared): a reused request id
    is still refused as one, a NUL still can't be stored, and what a settlement records (dates, the
    usage's JSON, the commission of a referral that has ended) reads back as the ORM wrote it."""
    referrer = accounts.create_key(any_database, f"ref-{uuid.uuid4().hex[:6]}")
    with any_database.connect() as conn:
        code = conn.execute(select(Account.referral_code).where(Account.id == referrer.account_id)).scalar()
    customer = accounts.create_key(any_database, f"hot-{uuid.uuid4().hex[:6]}", credits_micros=10_000, referred_by=code)
    rid = uuid.uuid4().hex

    def hold(request_id: str) -> None:
        ledger.hold(
            any_database,
            request_id=request_id,
            account_id=customer.account_id,
            key_id=customer.key_id,
            model="m",
            amount_micros=500,
            ttl_s=60,
        )

    hold(rid)
    with pytest.raises(FlashbulbError) as reused:
        hold(rid)
    assert reused.value.kind is ErrorKind.ALREADY_EXISTS
    with pytest.raises(FlashbulbError) as nul:
        hold("nul\x00id")
    assert nul.value.kind is ErrorKind.INVALID_ARGUMENT
    assert ledger.balance(any_database, customer.account_id) == (10_000, 500)

    with any_database.begin() as conn:  # the referral ended a minute ago: no commission
        conn.execute(
            update(Account).where(Account.id == customer.account_id).values(commission_until=utcnow() - dt.timedelta(minutes=1))
        )
    usage = ledger.Usage(status="ok", output_images=1, quality={"identity": 0.2, "timings_ms": {"model": 5}}, replica={"id": "r"})
    assert ledger.close_hold(any_database, rid, 300, usage)
    assert ledger.balance(any_database, customer.account_id) == (9_700, 0)
    assert ledger.balance(any_database, referrer.account_id)[0] == 0
    with any_database.connect() as conn:
        record = conn.execute(
            select(UsageRecord.quality, UsageRecord.replica, UsageRecord.charge_micros, UsageRecord.created_at).where(
                UsageRecord.request_id == rid
            )
        ).one()
        held = conn.execute(select(Hold.created_at, Hold.expires_at).where(Hold.request_id == rid)).one()
    assert record.quality == usage.quality and record.replica == {"id": "r"} and record.charge_micros == 300
    assert isinstance(record.created_at, dt.datetime) and isinstance(held.expires_at, dt.datetime)
    assert held.expires_at - held.created_at == dt.timedelta(seconds=60)


def test_writes_arriving_together_commit_together_and_each_gets_its_own_answer(any_database):
    """Holds that arrive while another transaction commits run as one group (one commit for all);
    when one of a group is refused (out of credits, a reused request id) the rest still get the
    answer each would have had alone, and the books balance."""
    customer = accounts.create_key(any_database, f"grp-{uuid.uuid4().hex[:6]}", credits_micros=1_000)
    prefix = uuid.uuid4().hex[:8]
    commits = []

    def count(conn) -> None:
        commits.append(1)

    event.listen(any_database, "commit", count)
    try:

        def hold(request_id: str, amount: int) -> str:
            try:
                ledger.hold(
                    any_database,
                    request_id=f"{prefix}-{request_id}",
                    account_id=customer.account_id,
                    key_id=customer.key_id,
                    model="m",
                    amount_micros=amount,
                    ttl_s=60,
                )
            except FlashbulbError as exc:
                return exc.kind.name
            return "held"

        def arrive_together(calls: list[tuple[str, int]]) -> list[str]:
            """Run `calls` while a first write holds the group's turn, so they queue and go as one group."""
            release = threading.Event()
            group = db_module.group_commit(any_database)
            blocker = threading.Thread(target=db_module.transact, args=(any_database, lambda conn: release.wait(30)))
            blocker.start()
            while not group._leading:
                time.sleep(0.01)
            with ThreadPoolExecutor(len(calls)) as pool:
                answers = [pool.submit(hold, *call) for call in calls]
                while len(group._waiting) < len(calls):
                    time.sleep(0.01)
                commits.clear()
                release.set()
                blocker.join()
                return [answer.result() for answer in answers]

        assert arrive_together([(f"a{i}", 100) for i in range(5)]) == ["held"] * 5
        assert len(commits) == 2  # the first write's and the group's: not six
        # 500 is left: one more fits, the second can't, and a reused request id is refused.
        answers = arrive_together([("b0", 300), ("a0", 100), ("b1", 300)])
        assert sorted(answers) == ["ALREADY_EXISTS", "OUT_OF_CREDITS", "held"]
        assert len(commits) == 1 + 1  # the group rolled back; each then ran alone (one of them held)
        assert ledger.balance(any_database, customer.account_id) == (1_000, 800)
    finally:
        event.remove(any_database, "commit", count)

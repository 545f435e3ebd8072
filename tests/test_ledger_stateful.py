"""A hypothesis state machine drives random sequences of holds, settles, releases, refunds, grants,
code redemptions and (through the settles of a referred account) referral payouts, some steps from
several threads at once, on SQLite and PostgreSQL; after every step the books must be exact:

- balance = sum of the account's ledger entries, for every account;
- held = sum of the account's open holds, and free balance (balance - held) >= 0;
- per request: at most one charge, refund, commission and clawback entry; the charge entry is the
  hold's charged amount; a refund is at most the charge;
- the key's spent = its settled charges less refunds, its held = its open holds;
- commission = percent x charge (rounded down) for every settled charge of the referred account, and
  the clawback = commission x refunded / charged (rounded down);
- at the end (teardown) every hold is settled or released.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import func, select

from flashbulb.billing import ledger, usage
from flashbulb.errors import FlashbulbError
from flashbulb.gateway import accounts
from flashbulb.store.tables import Account, ApiKey, Hold, LedgerEntry

PERCENT = 10


class Books(RuleBasedStateMachine):
    db = None  # set by the test

    @initialize(credits=st.integers(0, 3_000), cap=st.one_of(st.none(), st.integers(0, 4_000)))
    def open_accounts(self, credits: int, cap: int | None) -> None:
        tag = uuid.uuid4().hex[:8]
        self.referrer = accounts.create_key(self.db, f"r-{tag}")
        with self.db.connect() as conn:
            code = conn.execute(select(Account.referral_code).where(Account.id == self.referrer.account_id)).scalar()
        self.name = f"c-{tag}"
        self.customer = accounts.create_key(
            self.db, self.name, credits_micros=credits, cap_micros=cap, referred_by=code, referral_percent=PERCENT
        )
        self.prefix = tag + "-"
        self.count = 0

    def _new_id(self) -> str:
        self.count += 1
        return f"{self.prefix}{self.count}"

    def _ids(self) -> list[str]:
        return [f"{self.prefix}{i}" for i in range(1, self.count + 1)]

    # ---- single operations (each also usable from a thread) ----

    def _hold(self, amount: int) -> None:
        try:
            ledger.hold(
                self.db,
                request_id=self._new_id(),
                account_id=self.customer.account_id,
                key_id=self.customer.key_id,
                model="m",
                amount_micros=amount,
                ttl_s=600,
            )
        except FlashbulbError:
            pass  # out of credits or past the cap

    def _close(self, pick: int, fraction: float) -> bool:
        ids = self._ids()
        if not ids:
            return False
        rid = ids[pick % len(ids)]
        with self.db.connect() as conn:
            amount = conn.execute(select(Hold.amount_micros).where(Hold.request_id == rid)).scalar()
        if amount is None:
            return False
        return ledger.close_hold(self.db, rid, int(amount * fraction), ledger.Usage(status="ok"))

    def _refund(self, pick: int, fraction: float | None) -> None:
        ids = self._ids()
        if not ids:
            return
        rid = ids[pick % len(ids)]
        with self.db.connect() as conn:
            charged = conn.execute(select(Hold.charged_micros).where(Hold.request_id == rid)).scalar() or 0
        try:
            ledger.refund(self.db, rid, None if fraction is None else max(1, int(charged * fraction)))
        except FlashbulbError:
            pass  # not settled, refunded already, or more than the charge

    # ---- rules ----

    @rule(amount=st.integers(1, 800))
    def hold(self, amount: int) -> None:
        self._hold(amount)

    @rule(pick=st.integers(0, 50), fraction=st.sampled_from([0.0, 0.3, 1.0]))
    def settle_or_release(self, pick: int, fraction: float) -> None:
        self._close(pick, fraction)

    @rule(pick=st.integers(0, 50), fraction=st.one_of(st.none(), st.floats(0.1, 1.5)))
    def refund(self, pick: int, fraction: float | None) -> None:
        self._refund(pick, fraction)

    @rule(amount=st.integers(-500, 1_000))
    def grant(self, amount: int) -> None:
        try:
            ledger.grant(self.db, self.name, amount)
        except FlashbulbError:
            pass  # would take the free balance below zero

    @rule(amount=st.integers(1, 2_000))
    def redeem_twice_at_once(self, amount: int) -> None:
        code = ledger.create_code(self.db, amount)
        barrier = threading.Barrier(2)
        outcomes: list[bool] = []

        def redeem() -> None:
            barrier.wait()
            try:
                ledger.redeem_code(self.db, self.customer.account_id, code)
                outcomes.append(True)
            except FlashbulbError:
                outcomes.append(False)

        threads = [threading.Thread(target=redeem) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == [False, True]

    @rule(pick=st.integers(0, 50), fraction=st.sampled_from([0.0, 0.5, 1.0]))
    def settle_twice_at_once(self, pick: int, fraction: float) -> None:
        with ThreadPoolExecutor(2) as pool:
            closed = list(pool.map(lambda _: self._close(pick, fraction), range(2)))
        assert closed.count(True) <= 1

    @rule(
        ops=st.lists(
            st.tuples(st.sampled_from(["hold", "close", "refund"]), st.integers(0, 50), st.sampled_from([0.0, 0.5, 1.0])),
            min_size=2,
            max_size=6,
        )
    )
    def concurrently(self, ops: list) -> None:
        def run(op: tuple) -> None:
            kind, number, fraction = op
            if kind == "hold":
                self._hold(number * 20 + 1)
            elif kind == "close":
                self._close(number, fraction)
            else:
                self._refund(number, fraction or None)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(run, ops))

    # ---- the invariants ----

    @invariant()
    def books_are_exact(self) -> None:
        if not hasattr(self, "customer"):
            return
        balances: dict[int, int] = {}
        with self.db.connect() as conn:
            for account_id in (self.customer.account_id, self.referrer.account_id):
                row = conn.execute(select(Account.balance_micros, Account.held_micros).where(Account.id == account_id)).one()
                total = conn.execute(
                    select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(LedgerEntry.account_id == account_id)
                ).scalar()
                open_holds = conn.execute(
                    select(func.coalesce(func.sum(Hold.amount_micros), 0)).where(
                        Hold.account_id == account_id, Hold.state == "held"
                    )
                ).scalar()
                assert row.balance_micros == total
                balances[account_id] = row.balance_micros
                assert row.held_micros == open_holds
                assert row.balance_micros - row.held_micros >= 0
            holds = {
                h.request_id: h
                for h in conn.execute(
                    select(Hold.request_id, Hold.state, Hold.amount_micros, Hold.charged_micros, Hold.refunded_micros).where(
                        Hold.account_id == self.customer.account_id
                    )
                ).all()
            }
            entries: dict[tuple[str, str], list[int]] = {}
            for e in conn.execute(
                select(LedgerEntry.kind, LedgerEntry.request_id, LedgerEntry.amount_micros).where(
                    LedgerEntry.request_id.like(self.prefix + "%")
                )
            ):
                entries.setdefault((e.kind, e.request_id), []).append(e.amount_micros)
            key = conn.execute(
                select(ApiKey.spent_micros, ApiKey.held_micros, ApiKey.cap_micros).where(ApiKey.id == self.customer.key_id)
            ).one()
        assert all(len(amounts) == 1 for amounts in entries.values())  # each request charged (refunded...) at most once
        for account_id, balance in balances.items():  # what the customer's statement shows
            newest = usage.statement(self.db, account_id, limit=1)[0]
            assert (newest[0].balance_after_micros if newest else 0) == balance
        spent = 0
        for rid, h in holds.items():
            charge = entries.get(("charge", rid), [0])[0]
            refund = entries.get(("refund", rid), [0])[0]
            commission = entries.get(("commission", rid), [0])[0]
            clawback = entries.get(("clawback", rid), [0])[0]
            assert -charge == h.charged_micros and (h.state == "settled") == (h.charged_micros > 0)
            assert refund == h.refunded_micros <= h.charged_micros
            assert commission == h.charged_micros * PERCENT // 100
            assert -clawback == (commission * refund // h.charged_micros if refund else 0)
            if h.state == "settled":
                spent += h.charged_micros - h.refunded_micros
        assert key.spent_micros == spent
        assert key.held_micros == sum(h.amount_micros for h in holds.values() if h.state == "held")
        if key.cap_micros is not None:
            assert key.spent_micros + key.held_micros <= key.cap_micros

    def teardown(self) -> None:
        if not hasattr(self, "customer"):
            return
        for rid in self._ids():
            ledger.close_hold(self.db, rid, 0, ledger.Usage(status="teardown"))
        with self.db.connect() as conn:
            assert (
                conn.execute(
                    select(func.count())
                    .select_from(Hold)
                    .where(Hold.account_id == self.customer.account_id, Hold.state == "held")
                ).scalar()
                == 0
            )
            assert conn.execute(select(Account.held_micros).where(Account.id == self.customer.account_id)).scalar() == 0


def test_the_books_stay_exact_under_random_concurrent_sequences(any_database):
    Books.db = any_database
    Books.TestCase.settings = settings(
        max_examples=60,
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    Books.TestCase().runTest()

"""Credits and charges. Every charge is hold -> settle or release, each one transaction,
keyed by request id so that a retry or a second caller can never charge twice.

Invariants (checked by the tests): balance = sum of ledger entries; held = sum of open holds;
balance - held >= 0 at every commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from typing import Callable

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.store.tables import Account, Hold, LedgerEntry, UsageRecord, utcnow


@dataclasses.dataclass
class Usage:
    """What one request did, written with its settlement."""

    status: str
    finish_reason: str = ""
    input_images: int = 0
    input_pixels: int = 0
    output_images: int = 0
    output_pixels: int = 0
    latency_ms: int = 0
    quality: dict = dataclasses.field(default_factory=dict)
    error: str = ""


def hold(
    db: Engine, *, request_id: str, account_id: int, key_id: int, model: str, amount_micros: int, ttl_s: float
) -> None:
    """Reserve `amount_micros`; fails (429) if it would take the account's free balance below zero."""
    try:
        with db.begin() as conn:
            # Lock order is hold row, then account row, in every transaction (close_hold too):
            # the other order deadlocks a retried request id against its own settlement.
            conn.execute(
                insert(Hold).values(
                    request_id=request_id,
                    account_id=account_id,
                    key_id=key_id,
                    model=model,
                    amount_micros=amount_micros,
                    state="held",
                    charged_micros=0,
                    expires_at=utcnow() + dt.timedelta(seconds=ttl_s),
                )
            )
            # One conditional UPDATE: the check and the reservation cannot be separated by a race.
            reserved = conn.execute(
                update(Account)
                .where(Account.id == account_id, Account.balance_micros - Account.held_micros >= amount_micros)
                .values(held_micros=Account.held_micros + amount_micros)
            ).rowcount
            if reserved != 1:
                raise FlashbulbError(
                    ErrorKind.OUT_OF_CREDITS,
                    "Not enough credits for this request; ask the operator to add credits to your account.",
                )
    except IntegrityError as exc:
        raise FlashbulbError(ErrorKind.ALREADY_EXISTS, f"request id {request_id!r} was already used") from exc


def close_hold(
    db: Engine, request_id: str, charge_micros: int, usage: Usage, also: Callable[[Connection], None] | None = None
) -> bool:
    """Settle (charge > 0) or release (charge 0) a hold and write its usage record, atomically.

    `also` runs the caller's own statements in the same transaction (a batch item's result): they
    commit with the settlement or, if they raise, roll it back. Returns False, changing nothing
    (and not running `also`), when the hold was already closed: closing is idempotent.
    """
    with db.begin() as conn:
        row = conn.execute(
            update(Hold)
            .where(Hold.request_id == request_id, Hold.state == "held")
            .values(state="settled" if charge_micros else "released", charged_micros=charge_micros)
            .returning(Hold.account_id, Hold.key_id, Hold.model, Hold.amount_micros)
        ).first()
        if row is None:
            return False
        if charge_micros > row.amount_micros:
            raise ValueError(f"charge {charge_micros} exceeds hold {row.amount_micros} for {request_id}")
        conn.execute(
            update(Account)
            .where(Account.id == row.account_id)
            .values(
                held_micros=Account.held_micros - row.amount_micros,
                balance_micros=Account.balance_micros - charge_micros,
            )
        )
        if charge_micros:
            _append_entry(conn, row.account_id, -charge_micros, "charge", request_id, row.model)
        conn.execute(
            insert(UsageRecord).values(
                request_id=request_id,
                account_id=row.account_id,
                key_id=row.key_id,
                model=row.model,
                charge_micros=charge_micros,
                **dataclasses.asdict(usage),
            )
        )
        if also is not None:
            also(conn)
    return True


def release_expired(db: Engine, now: dt.datetime | None = None) -> int:
    """Release holds left behind by a crash or a lost worker. Returns how many were released."""
    with db.connect() as conn:
        stale = conn.execute(
            select(Hold.request_id).where(Hold.state == "held", Hold.expires_at < (now or utcnow()))
        ).scalars().all()
    return sum(close_hold(db, rid, 0, Usage(status="expired", error="hold expired before settlement")) for rid in stale)


def grant(db: Engine, account_name: str, amount_micros: int, note: str = "") -> int:
    """Add (or, negative, remove) credits; a removal can not take the free balance below zero."""
    with db.begin() as conn:
        account_id = conn.execute(select(Account.id).where(Account.name == account_name)).scalar()
        if account_id is None:
            raise FlashbulbError(ErrorKind.NOT_FOUND, f"no account named {account_name!r}")
        changed = conn.execute(
            update(Account)
            .where(Account.id == account_id, Account.balance_micros - Account.held_micros + amount_micros >= 0)
            .values(balance_micros=Account.balance_micros + amount_micros)
            .returning(Account.balance_micros)
        ).scalar()
        if changed is None:
            raise FlashbulbError(ErrorKind.INVALID_ARGUMENT, "that would make the balance negative")
        _append_entry(conn, account_id, amount_micros, "grant", None, note)
        return changed


def _append_entry(conn: Connection, account_id: int, amount: int, kind: str, request_id: str | None, note: str) -> None:
    conn.execute(
        insert(LedgerEntry).values(
            account_id=account_id, amount_micros=amount, kind=kind, request_id=request_id, note=note
        )
    )


def balance(db: Engine, account_id: int) -> tuple[int, int]:
    """(balance, held) in micro-USD."""
    with db.connect() as conn:
        row = conn.execute(
            select(Account.balance_micros, Account.held_micros).where(Account.id == account_id)
        ).one()
    return row.balance_micros, row.held_micros

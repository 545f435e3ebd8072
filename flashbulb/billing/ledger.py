"""Credits and charges. Every charge is hold -> settle or release, each atomic (concurrent ones
share a commit: store.db.GroupCommit), keyed by request id so that a retry or a second caller can
never charge twice.

Invariants (checked by the tests): balance = sum of ledger entries; held = sum of open holds;
balance - held >= 0 at every commit; a key's spent + held <= its cap; each (kind, request id) once in
the ledger: one charge, one refund (<= the charge), one commission and one clawback per request.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from sqlalchemy import Connection, Engine, Table, bindparam, case, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from flashbulb.billing.money import micros_to_usd
from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.store.db import Prepared, pipelined, transact
from flashbulb.store.tables import Account, ApiKey, CreditCode, Hold, LedgerEntry, UsageRecord, utcnow

if TYPE_CHECKING:
    from flashbulb.billing.quotes import Quote

CODE_PREFIX = "fbc-"


def hash_secret(secret: str) -> str:
    """API keys and codes are long random strings, so a plain hash is enough (no password stretching)."""
    return hashlib.sha256(secret.encode()).hexdigest()


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
    replica: dict | None = None  # {"id", "host", "pid"}: where it ran
    watermark: int | None = None  # the payload its images' watermark carries


# The hot path's statements (a hold, its settlement), built once at import and compiled once per
# dialect (store.db.Prepared). Building them on every call was two thirds of a charge's time (2.6 ms
# of Python per hold + settle on SQLite), and executing them through Connection.execute still cost
# ~22 us of Python per statement (cProfile of bench/ledger_throughput.py).
def _table(model: type) -> Table:
    return model.__table__  # type: ignore[attr-defined]


def _insert(table: Table) -> Prepared:
    """An INSERT of every column but a generated id, each value a parameter of the column's name."""
    return Prepared(insert(table).values({c.name: bindparam(c.name, type_=c.type) for c in table.c if c.name != "id"}))


_HOLDS, _ACCOUNTS, _KEYS = _table(Hold), _table(Account), _table(ApiKey)
_holds, _accounts, _keys = _HOLDS.c, _ACCOUNTS.c, _KEYS.c
_INSERT_HOLD = _insert(_HOLDS)
# One conditional UPDATE each: the check and the reservation cannot be separated by a race.
_RESERVE_ON_ACCOUNT = Prepared(
    update(_ACCOUNTS)
    .where(_accounts.id == bindparam("b_account"), _accounts.balance_micros - _accounts.held_micros >= bindparam("b_amount"))
    .values(held_micros=_accounts.held_micros + bindparam("b_amount"))
)
# The key, the same way: still live (a batch item runs long after its key was checked, and a live
# call may race a revocation) and spent + held + this hold <= its cap.
_RESERVE_ON_KEY = Prepared(
    update(_KEYS)
    .where(
        _keys.id == bindparam("b_key"),
        _keys.revoked_at.is_(None),
        or_(_keys.expires_at.is_(None), _keys.expires_at > bindparam("b_now", type_=_keys.expires_at.type)),
        or_(_keys.cap_micros.is_(None), _keys.spent_micros + _keys.held_micros + bindparam("b_amount") <= _keys.cap_micros),
    )
    .values(held_micros=_keys.held_micros + bindparam("b_amount"))
)


def hold(
    db: Engine,
    *,
    request_id: str,
    account_id: int,
    key_id: int,
    model: str,
    amount_micros: int,
    ttl_s: float,
    quote: Quote | None = None,
) -> None:
    """Reserve `amount_micros`; fails (429) if it would take the account's free balance below zero or
    the key past its spending cap. `quote`'s unit prices are recorded: the settlement charges them."""
    now = utcnow()

    def reserve(conn: Connection) -> None:
        amounts = {"b_account": account_id, "b_key": key_id, "b_amount": amount_micros, "b_now": now}
        # Lock order is hold row, then account row, then key row, in every transaction (close_hold,
        # refund too): the other order deadlocks a retried request id against its own settlement.
        with pipelined(conn):  # one round trip: a refused hold is rolled back whatever ran after it
            _INSERT_HOLD(
                conn,
                {
                    "request_id": request_id,
                    "account_id": account_id,
                    "key_id": key_id,
                    "model": model,
                    "amount_micros": amount_micros,
                    "state": "held",
                    "charged_micros": 0,
                    "refunded_micros": 0,
                    "created_at": now,
                    "expires_at": now + dt.timedelta(seconds=ttl_s),
                    **_quoted_columns(quote),
                },
            )
            on_account = _RESERVE_ON_ACCOUNT(conn, amounts)
            on_key = _RESERVE_ON_KEY(conn, amounts)
        if on_account.rowcount != 1:
            balance, held = conn.execute(
                select(Account.balance_micros, Account.held_micros).where(Account.id == account_id)
            ).one()
            raise FlashbulbError(
                ErrorKind.OUT_OF_CREDITS,
                f"Not enough credits for this request: it needs up to {micros_to_usd(amount_micros)} USD and "
                f"{micros_to_usd(balance - held)} USD is available ({micros_to_usd(balance)} balance, "
                f"{micros_to_usd(held)} held for running requests); ask the operator to add credits.",
            )
        if on_key.rowcount != 1:
            _refuse_key(conn, key_id, amount_micros, now)

    try:
        transact(db, reserve)  # grouped with the holds and settlements arriving at the same time
    except IntegrityError as exc:
        raise FlashbulbError(ErrorKind.ALREADY_EXISTS, f"request id {request_id!r} was already used") from exc


def _refuse_key(conn: Connection, key_id: int, amount_micros: int, now: dt.datetime) -> None:
    """Say why the key could not hold `amount_micros` (a missing key, id 0 in the tests, has no limits)."""
    key = conn.execute(
        select(ApiKey.revoked_at, ApiKey.expires_at, ApiKey.cap_micros, ApiKey.spent_micros, ApiKey.held_micros).where(
            ApiKey.id == key_id
        )
    ).first()
    if key is None:
        return
    check_key_live(key.revoked_at, key.expires_at, now)
    raise FlashbulbError(
        ErrorKind.OUT_OF_CREDITS,
        f"This API key has reached its spending cap of {micros_to_usd(key.cap_micros)} USD "
        f"(spent {micros_to_usd(key.spent_micros)}, held for running requests {micros_to_usd(key.held_micros)}, "
        f"this request needs up to {micros_to_usd(amount_micros)}); ask the operator to raise it or use another key.",
        code="key_spending_cap",
    )


def check_key_live(revoked_at: dt.datetime | None, expires_at: dt.datetime | None, now: dt.datetime) -> None:
    """A revoked or expired key answers as an invalid one, saying which and when."""
    if revoked_at is not None:
        raise FlashbulbError(
            ErrorKind.API_KEY_INVALID, f"API key not valid: it was revoked on {revoked_at.isoformat(timespec='seconds')} UTC."
        )
    if expires_at is not None and expires_at <= now:
        raise FlashbulbError(
            ErrorKind.API_KEY_INVALID,
            f"API key expired on {expires_at.isoformat(timespec='seconds')} UTC. Ask the operator for a new key.",
            code="expired_api_key",
        )


def _quoted_columns(quote: Quote | None) -> dict:
    return {
        "unit_small_micros": quote and quote.small,
        "unit_standard_micros": quote and quote.standard,
        "unit_large_micros": quote and quote.large,
        "unit_input_micros": quote and quote.input_image,
        "input_images": quote and quote.inputs,
    }


def close_hold(
    db: Engine,
    request_id: str,
    charge_micros: int,
    usage: Usage,
    also: Callable[[Connection], None] | None = None,
    *,
    output_pixels: list[int] | None = None,
) -> bool:
    """Settle (charge > 0) or release (charge 0) a hold and write its usage record, atomically.

    With `output_pixels` (one entry per image returned), the charge is computed from the unit prices
    recorded on the hold when it was taken (`charge_micros`, what the caller computed from its quote,
    is only a first guess): a price change between hold and settle never alters it. A settled charge of a referred account pays its referrer's
    commission in the same transaction, once (the ledger's (kind, request_id) is unique).

    `also` runs the caller's own statements in the same transaction (a batch item's result): they
    commit with the settlement or, if they raise, roll it back. Returns False, changing nothing
    (and not running `also`), when the hold was already closed: closing is idempotent.
    """

    def settle(conn: Connection) -> bool:
        charge = charge_micros
        row = _CLOSE_HOLD(
            conn, {"b_request": request_id, "b_state": "settled" if charge else "released", "b_charge": charge}
        ).first()
        if row is None:
            return False
        if output_pixels is not None:  # the hold's prices, which it returned as it closed
            charge = _quote_of(row).charge_for(output_pixels) if row.unit_standard_micros is not None else 0
        if not 0 <= charge <= row.amount_micros:
            raise ValueError(f"charge {charge} is not within the hold of {row.amount_micros} for {request_id}")
        if also is not None:
            also(conn)
        now = utcnow()
        amounts = {
            "b_account": row.account_id,
            "b_key": row.key_id,
            "b_amount": row.amount_micros,
            "b_charge": charge,
            "b_now": now,
        }
        # What only this request's rows are touched by comes first; the account and key rows, which
        # every call of the account updates, last: their locks are held until the commit.
        with pipelined(conn):
            if charge != charge_micros:  # the caller's guess was not what the hold's prices give
                _RECORD_CHARGE(
                    conn, {"b_request": request_id, "b_state": "settled" if charge else "released", "b_charge": charge}
                )
            _INSERT_USAGE(conn, _usage_row(usage, request_id, row, charge, now))
            if charge:
                _append_entry(conn, row.account_id, -charge, "charge", request_id, row.model)
            on_account = _SETTLE_ON_ACCOUNT(conn, amounts)
            _SETTLE_ON_KEY(conn, amounts)
        if charge:
            _pay_commission(conn, on_account.one(), charge, request_id)
        return True

    # Grouped with the holds and settlements arriving at the same time, but for one with `also`: a
    # grouped write may run twice, and `also`'s maker may note that it ran (a batch item's recorder).
    return transact(db, settle, alone=also is not None)


def _usage_row(usage: Usage, request_id: str, hold_row, charge_micros: int, now: dt.datetime) -> dict:
    # A shallow copy: asdict's deep copy of the quality dict cost 63 us a call (1.6 us this way).
    row = {field.name: getattr(usage, field.name) for field in dataclasses.fields(usage)}
    return {
        **row,
        "error": usage.error.replace("\x00", "\\0"),  # it may quote the caller: it must never keep the hold open
        "request_id": request_id,
        "account_id": hold_row.account_id,
        "key_id": hold_row.key_id,
        "model": hold_row.model,
        "charge_micros": charge_micros,
        "created_at": now,
    }


# Closes a hold still open and returns what the settlement needs, its recorded unit prices included
# (one round trip): the charge from those prices is written by _RECORD_CHARGE if it is not the one
# the caller's own quote gave (the gateway's quote is the hold's; another server's may differ).
_CLOSE_HOLD = Prepared(
    update(_HOLDS)
    .where(_holds.request_id == bindparam("b_request"), _holds.state == "held")
    .values(state=bindparam("b_state"), charged_micros=bindparam("b_charge"))
    .returning(
        _holds.account_id,
        _holds.key_id,
        _holds.model,
        _holds.amount_micros,
        _holds.unit_small_micros,
        _holds.unit_standard_micros,
        _holds.unit_large_micros,
        _holds.unit_input_micros,
        _holds.input_images,
    )
)
_RECORD_CHARGE = Prepared(
    update(_HOLDS)
    .where(_holds.request_id == bindparam("b_request"))
    .values(state=bindparam("b_state"), charged_micros=bindparam("b_charge"))
)
# Returns the commission the account's referrer earns now: its percent while the referral runs, else 0.
_SETTLE_ON_ACCOUNT = Prepared(
    update(_ACCOUNTS)
    .where(_accounts.id == bindparam("b_account"))
    .values(
        held_micros=_accounts.held_micros - bindparam("b_amount"), balance_micros=_accounts.balance_micros - bindparam("b_charge")
    )
    .returning(
        _accounts.referrer_id,
        case(
            (
                or_(
                    _accounts.commission_until.is_(None),
                    _accounts.commission_until > bindparam("b_now", type_=_accounts.commission_until.type),
                ),
                func.coalesce(_accounts.commission_percent, 0),
            ),
            else_=0,
        ).label("commission_percent"),
    )
)
_SETTLE_ON_KEY = Prepared(
    update(_KEYS)
    .where(_keys.id == bindparam("b_key"))
    .values(held_micros=_keys.held_micros - bindparam("b_amount"), spent_micros=_keys.spent_micros + bindparam("b_charge"))
)
_INSERT_USAGE = _insert(_table(UsageRecord))
_INSERT_ENTRY = _insert(_table(LedgerEntry))
_PAY_COMMISSION = Prepared(
    update(_ACCOUNTS)
    .where(_accounts.id == bindparam("b_account"))
    .values(balance_micros=_accounts.balance_micros + bindparam("b_amount"))
)


def _quote_of(row) -> Quote:
    from flashbulb.billing.quotes import Quote

    return Quote(
        small=row.unit_small_micros,
        standard=row.unit_standard_micros,
        large=row.unit_large_micros,
        input_image=row.unit_input_micros,
        images=0,
        inputs=row.input_images or 0,
    )


def _pay_commission(conn: Connection, account, charge_micros: int, request_id: str) -> None:
    """The referrer's share of a settled charge, if the referral is still running (`account`: what
    _SETTLE_ON_ACCOUNT returned). Its ledger entry first: the referrer's row is locked last."""
    commission = charge_micros * account.commission_percent // 100
    if account.referrer_id is None or commission <= 0:
        return
    with pipelined(conn):
        _append_entry(
            conn, account.referrer_id, commission, "commission", request_id, f"{account.commission_percent}% of a referred charge"
        )
        _PAY_COMMISSION(conn, {"b_account": account.referrer_id, "b_amount": commission})


@dataclasses.dataclass(frozen=True)
class Refunded:
    request_id: str
    refunded_micros: int
    charged_micros: int
    balance_micros: int  # the account's, after the refund
    clawed_back_micros: int  # taken back from the referrer's commission on the charge


def refund(db: Engine, request_id: str, amount_micros: int | None = None, note: str = "") -> Refunded:
    """Give back a settled charge, fully (None) or partly, once. The referrer's commission on it is
    clawed back in proportion (as far as the referrer's free balance allows: never below zero)."""
    if amount_micros is not None and amount_micros <= 0:
        raise FlashbulbError(ErrorKind.INVALID_ARGUMENT, "a refund must be more than 0")
    with db.begin() as conn:
        refunded = Hold.charged_micros if amount_micros is None else amount_micros
        conditions = [Hold.request_id == request_id, Hold.state == "settled", Hold.refunded_micros == 0]
        if amount_micros is not None:
            conditions.append(Hold.charged_micros >= amount_micros)
        row = conn.execute(
            update(Hold)
            .where(*conditions)
            .values(refunded_micros=refunded)
            .returning(Hold.account_id, Hold.key_id, Hold.charged_micros, Hold.refunded_micros)
        ).first()
        if row is None:
            _why_no_refund(conn, request_id, amount_micros)
        amount = row.refunded_micros
        balance = conn.execute(
            update(Account)
            .where(Account.id == row.account_id)
            .values(balance_micros=Account.balance_micros + amount)
            .returning(Account.balance_micros)
        ).scalar_one()
        conn.execute(update(ApiKey).where(ApiKey.id == row.key_id).values(spent_micros=ApiKey.spent_micros - amount))
        _append_entry(conn, row.account_id, amount, "refund", request_id, note)
        clawed = _claw_back(conn, request_id, amount, row.charged_micros)
    return Refunded(request_id, amount, row.charged_micros, balance, clawed)


def _why_no_refund(conn: Connection, request_id: str, amount_micros: int | None) -> NoReturn:
    hold_row = conn.execute(
        select(Hold.state, Hold.charged_micros, Hold.refunded_micros).where(Hold.request_id == request_id)
    ).first()
    if hold_row is None:
        raise FlashbulbError(ErrorKind.NOT_FOUND, f"no request {request_id!r}")
    if hold_row.state != "settled":
        raise FlashbulbError(
            ErrorKind.FAILED_PRECONDITION, f"request {request_id!r} was not charged ({hold_row.state}): nothing to refund"
        )
    if hold_row.refunded_micros:
        raise FlashbulbError(
            ErrorKind.ALREADY_EXISTS,
            f"request {request_id!r} was already refunded ({micros_to_usd(hold_row.refunded_micros)} USD)",
        )
    raise FlashbulbError(
        ErrorKind.INVALID_ARGUMENT,
        f"a refund of {micros_to_usd(amount_micros or 0)} USD is more than the {micros_to_usd(hold_row.charged_micros)} USD charged",
    )


def _claw_back(conn: Connection, request_id: str, refunded: int, charged: int) -> int:
    paid = conn.execute(
        select(LedgerEntry.account_id, LedgerEntry.amount_micros).where(
            LedgerEntry.kind == "commission", LedgerEntry.request_id == request_id
        )
    ).first()
    if paid is None:
        return 0
    due = paid.amount_micros * refunded // charged
    referrer = conn.execute(
        select(Account.balance_micros, Account.held_micros).where(Account.id == paid.account_id).with_for_update()
    ).one()
    taken = max(0, min(due, referrer.balance_micros - referrer.held_micros))
    if due <= 0:
        return 0
    conn.execute(update(Account).where(Account.id == paid.account_id).values(balance_micros=Account.balance_micros - taken))
    note = f"commission on a refunded charge: {taken} of {due} micro-USD due" + (
        "" if taken == due else " (the rest exceeded the free balance)"
    )
    _append_entry(conn, paid.account_id, -taken, "clawback", request_id, note)
    return taken


@dataclasses.dataclass(frozen=True)
class Redeemed:
    amount_micros: int
    balance_micros: int  # the account's, after the credits


def redeem_code(db: Engine, account_id: int, code: str) -> Redeemed:
    """Credit a redemption code's value to the account, once: a conditional UPDATE claims the code,
    so of two concurrent redemptions exactly one credits (the other finds it redeemed)."""
    now = utcnow()
    with db.begin() as conn:
        row = conn.execute(
            update(CreditCode)
            .where(
                CreditCode.code_hash == hash_secret(code),
                CreditCode.redeemed_at.is_(None),
                or_(CreditCode.expires_at.is_(None), CreditCode.expires_at > now),
            )
            .values(redeemed_at=now, redeemed_by=account_id)
            .returning(CreditCode.id, CreditCode.amount_micros)
        ).first()
        if row is None:
            known = conn.execute(
                select(CreditCode.redeemed_at, CreditCode.expires_at).where(CreditCode.code_hash == hash_secret(code))
            ).first()
            if known is None:
                raise FlashbulbError(ErrorKind.NOT_FOUND, "no such code; check it was typed exactly")
            if known.redeemed_at is not None:
                raise FlashbulbError(ErrorKind.ALREADY_EXISTS, "this code has already been redeemed")
            raise FlashbulbError(
                ErrorKind.FAILED_PRECONDITION, f"this code expired on {known.expires_at.isoformat(timespec='seconds')} UTC"
            )
        balance = conn.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(balance_micros=Account.balance_micros + row.amount_micros)
            .returning(Account.balance_micros)
        ).scalar_one()
        _append_entry(conn, account_id, row.amount_micros, "redeem", f"code-{row.id}", "redemption code")
    return Redeemed(row.amount_micros, balance)


def create_code(db: Engine, amount_micros: int, *, expires_at: dt.datetime | None = None, note: str = "") -> str:
    """A new single-use code worth `amount_micros` (shown once; only its hash is kept)."""
    if amount_micros <= 0:
        raise FlashbulbError(ErrorKind.INVALID_ARGUMENT, "a code must be worth more than 0 USD")
    code = CODE_PREFIX + secrets.token_urlsafe(16)
    with db.begin() as conn:
        conn.execute(
            insert(CreditCode).values(
                code_hash=hash_secret(code), prefix=code[:10], amount_micros=amount_micros, note=note, expires_at=expires_at
            )
        )
    return code


def set_referrer(db: Engine, account_id: int, referral_code: str, *, percent: int, days: int) -> str:
    """Make the owner of `referral_code` this account's referrer (once, never oneself or a cycle).
    The commission rate and end date are fixed now. Returns the referrer's account name."""
    with db.begin() as conn:
        return set_referrer_in(conn, account_id, referral_code, percent=percent, days=days)


def set_referrer_in(conn: Connection, account_id: int, referral_code: str, *, percent: int, days: int) -> str:
    """`set_referrer` inside the caller's transaction."""
    if conn.dialect.name == "postgresql":
        # Referral changes take turns: two accounts naming each other at once would each pass the
        # cycle check below, and a cycle would make their settlements lock each other's rows.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('flashbulb.referrals'))"))
    referrer = conn.execute(select(Account.id, Account.name).where(Account.referral_code == referral_code)).first()
    if referrer is None:
        raise FlashbulbError(ErrorKind.NOT_FOUND, f"no referral code {referral_code!r}")
    ancestor, steps = referrer.id, 0
    while ancestor is not None and steps < 100:
        if ancestor == account_id:
            raise FlashbulbError(
                ErrorKind.INVALID_ARGUMENT, "an account can't be referred by itself or by an account it referred"
            )
        ancestor = conn.execute(select(Account.referrer_id).where(Account.id == ancestor)).scalar()
        steps += 1
    changed = conn.execute(
        update(Account)
        .where(Account.id == account_id, Account.referrer_id.is_(None))
        .values(referrer_id=referrer.id, commission_percent=percent, commission_until=utcnow() + dt.timedelta(days=days))
    ).rowcount
    if changed != 1:
        raise FlashbulbError(ErrorKind.ALREADY_EXISTS, "this account already has a referrer")
    return referrer.name


def release_expired(db: Engine, now: dt.datetime | None = None) -> list[str]:
    """Release holds left behind by a crash, a lost worker or a stream that never started. Returns
    the request ids released."""
    with db.connect() as conn:
        stale = (
            conn.execute(select(Hold.request_id).where(Hold.state == "held", Hold.expires_at < (now or utcnow()))).scalars().all()
        )
    return [rid for rid in stale if close_hold(db, rid, 0, Usage(status="expired", error="hold expired before settlement"))]


LOCAL_ACCOUNT = "local"  # the one-shot CLI's runs on this machine: recorded, never charged


def record_unbilled(db: Engine, request_id: str, model: str, usage: Usage) -> None:
    """A call that ran outside the gateway (`flashbulb edit` without --server) in the usage records
    of the "local" account, so the image it made traces back like any other (its watermark)."""
    with db.begin() as conn:
        account_id = conn.execute(select(Account.id).where(Account.name == LOCAL_ACCOUNT)).scalar()
        if account_id is None:
            account_id = conn.execute(insert(Account).values(name=LOCAL_ACCOUNT).returning(Account.id)).scalar_one()
        conn.execute(
            insert(UsageRecord).values(
                request_id=request_id, account_id=account_id, key_id=0, model=model, charge_micros=0, **dataclasses.asdict(usage)
            )
        )


def grant(db: Engine, account_name: str, amount_micros: int, note: str = "") -> int:
    """Add (or, negative, remove) credits; a removal can not take the free balance below zero."""
    with db.begin() as conn:
        account_id = conn.execute(select(Account.id).where(Account.name == account_name)).scalar()
        if account_id is None:
            raise FlashbulbError(ErrorKind.NOT_FOUND, f"no account named {account_name!r}")
        return grant_in(conn, account_id, amount_micros, note)


def grant_in(conn: Connection, account_id: int, amount_micros: int, note: str = "") -> int:
    """`grant` inside the caller's transaction; returns the new balance."""
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
    _INSERT_ENTRY(
        conn,
        {
            "account_id": account_id,
            "amount_micros": amount,
            "kind": kind,
            "request_id": request_id,
            "note": note,
            "created_at": utcnow(),
        },
    )


def balance(db: Engine, account_id: int) -> tuple[int, int]:
    """(balance, held) in micro-USD."""
    with db.connect() as conn:
        row = conn.execute(select(Account.balance_micros, Account.held_micros).where(Account.id == account_id)).one()
    return row.balance_micros, row.held_micros

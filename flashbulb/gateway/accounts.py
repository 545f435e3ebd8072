"""Accounts and API keys. A key is shown once at creation; only its SHA-256 is stored."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from flashbulb.billing import ledger
from flashbulb.engine.types import Caller
from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.store.tables import Account, ApiKey, utcnow

KEY_PREFIX = "fb-"
REFERRAL_PREFIX = "ref-"
MAX_DURATION = dt.timedelta(days=36_500)  # key and code expiry: past this, dates stop being representable


# Built once (building it per call was a third of the lookup's time): the key and its account.
_KEY_LOOKUP = (
    select(ApiKey.id, ApiKey.account_id, ApiKey.revoked_at, ApiKey.expires_at, ApiKey.models, Account.name, Account.is_admin)
    .join(Account, Account.id == ApiKey.account_id)
    .where(ApiKey.key_hash == bindparam("b_hash"))
)


def authenticate(db: Engine, key: str | None) -> Caller:
    if not key:
        raise FlashbulbError(
            ErrorKind.API_KEY_MISSING,
            "Method doesn't allow unregistered callers. Send an API key in the x-goog-api-key header or ?key=.",
        )
    with db.connect() as conn:
        row = conn.execute(_KEY_LOOKUP, {"b_hash": ledger.hash_secret(key)}).first()
    if row is None:
        raise FlashbulbError(ErrorKind.API_KEY_INVALID, "API key not valid. Please pass a valid API key.")
    now = utcnow()
    ledger.check_key_live(row.revoked_at, row.expires_at, now)
    models = tuple(row.models) if row.models is not None else None
    left = (row.expires_at - now).total_seconds() if row.expires_at is not None else None
    return Caller(
        account_id=row.account_id, account_name=row.name, key_id=row.id, is_admin=row.is_admin, models=models, expires_in_s=left
    )


def check_scope(caller: Caller, requested: str, model: str) -> None:
    """403 when the caller's key may not call this model (by the name asked for or the model it resolves to)."""
    if caller.models is None or requested.removeprefix("models/") in caller.models or model in caller.models:
        return
    allowed = ", ".join(caller.models) or "none"
    raise FlashbulbError(ErrorKind.PERMISSION_DENIED, f"This API key may not call {model}; it may call: {allowed}.")


def parse_duration(text: str) -> dt.timedelta:
    """ "30d", "12h", "45m", "90s" (or a bare number of days)."""
    match = re.fullmatch(r"\s*(\d{1,9})\s*([dhms]?)\s*", text or "")  # (9 digits: any unit fits a timedelta)
    if not match or int(match.group(1)) <= 0:
        raise FlashbulbError(ErrorKind.INVALID_ARGUMENT, f"{text!r} is not a duration such as 30d, 12h, 45m or 90s")
    unit = {"d": "days", "": "days", "h": "hours", "m": "minutes", "s": "seconds"}[match.group(2)]
    duration = dt.timedelta(**{unit: int(match.group(1))})
    if duration > MAX_DURATION:
        raise FlashbulbError(ErrorKind.INVALID_ARGUMENT, f"{text!r} is longer than {MAX_DURATION.days} days")
    return duration


@dataclasses.dataclass(frozen=True)
class NewKey:
    key: str
    account_id: int
    key_id: int


def create_key(
    db: Engine,
    account_name: str,
    *,
    key_name: str = "default",
    credits_micros: int = 0,
    admin: bool = False,
    models: list[str] | None = None,
    expires_in: dt.timedelta | None = None,
    cap_micros: int | None = None,
    referred_by: str | None = None,
    referral_percent: int = 10,
    referral_days: int = 365,
) -> NewKey:
    """Create the account if it does not exist, give it a new key (optionally scoped to `models`,
    expiring, with a spending cap) and, optionally, credits and a referrer (by referral code)."""
    if not account_name.strip():
        raise FlashbulbError(ErrorKind.INVALID_ARGUMENT, "account name is empty")
    if cap_micros is not None and cap_micros < 0:
        raise FlashbulbError(ErrorKind.INVALID_ARGUMENT, "a spending cap can't be negative")
    if models is not None:
        models = [m.strip().removeprefix("models/") for m in models if m.strip()]
        if not models:
            raise FlashbulbError(ErrorKind.INVALID_ARGUMENT, "a scoped key needs at least one model name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with db.begin() as conn:
        account_id = conn.execute(select(Account.id).where(Account.name == account_name)).scalar()
        if account_id is None:
            try:
                with conn.begin_nested():
                    account_id = conn.execute(
                        insert(Account)
                        .values(
                            name=account_name,
                            is_admin=admin,
                            balance_micros=0,
                            held_micros=0,
                            referral_code=new_referral_code(),
                            commission_percent=0,
                        )
                        .returning(Account.id)
                    ).scalar_one()
            except IntegrityError:  # created by a concurrent caller
                account_id = conn.execute(select(Account.id).where(Account.name == account_name)).scalar_one()
        key_id = conn.execute(
            insert(ApiKey)
            .values(
                account_id=account_id,
                name=key_name,
                prefix=key[:10],
                key_hash=ledger.hash_secret(key),
                models=models,
                expires_at=utcnow() + expires_in if expires_in else None,
                cap_micros=cap_micros,
                spent_micros=0,
                held_micros=0,
            )
            .returning(ApiKey.id)
        ).scalar_one()
        # In the same transaction: a bad referral code or amount leaves no account and no key behind.
        if referred_by:
            ledger.set_referrer_in(conn, account_id, referred_by, percent=referral_percent, days=referral_days)
        if credits_micros:
            ledger.grant_in(conn, account_id, credits_micros, note="initial credits")
    return NewKey(key=key, account_id=account_id, key_id=key_id)


def new_referral_code() -> str:
    return REFERRAL_PREFIX + secrets.token_hex(6)


def revoke_key(db: Engine, key_id: int) -> bool:
    """Revoke a key (it answers 401/400 from now on). False when it was revoked already."""
    with db.begin() as conn:
        if not 0 < key_id < 2**62 or conn.execute(select(ApiKey.id).where(ApiKey.id == key_id)).first() is None:
            raise FlashbulbError(ErrorKind.NOT_FOUND, f"no key with id {key_id}")
        return (
            conn.execute(
                update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
            ).rowcount
            == 1
        )


@dataclasses.dataclass(frozen=True)
class AccountInfo:
    referral_code: str  # to hand out: accounts made with it pay this one a commission
    referred: bool
    commission_percent: int | None  # what this account's referrer earns of its spend, when referred


def account_info(db: Engine, account_id: int) -> AccountInfo:
    with db.connect() as conn:
        row = conn.execute(
            select(Account.referral_code, Account.referrer_id, Account.commission_percent, Account.commission_until).where(
                Account.id == account_id
            )
        ).one()
    referred = row.referrer_id is not None
    return AccountInfo(row.referral_code, referred, row.commission_percent if referred else None)


def has_admin(db: Engine) -> bool:
    with db.connect() as conn:
        return conn.execute(select(Account.id).where(Account.is_admin.is_(True)).limit(1)).first() is not None


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """One API key with its account, as the operator lists them (never the key itself)."""

    account: str
    admin: bool
    balance_micros: int
    held_micros: int
    key_id: int
    key_name: str
    key_prefix: str
    created_at: dt.datetime  # UTC
    revoked: bool
    expires_at: dt.datetime | None
    models: list[str] | None  # None: every model
    cap_micros: int | None
    spent_micros: int
    referral_code: str | None


def list_keys(db: Engine) -> list[KeyInfo]:
    with db.connect() as conn:
        rows = conn.execute(
            select(
                Account.name.label("account"),
                Account.is_admin,
                Account.balance_micros,
                Account.held_micros,
                ApiKey.id.label("key_id"),
                ApiKey.name.label("key_name"),
                ApiKey.prefix,
                ApiKey.created_at,
                ApiKey.revoked_at,
                ApiKey.expires_at,
                ApiKey.models,
                ApiKey.cap_micros,
                ApiKey.spent_micros,
                Account.referral_code,
            )
            .join(ApiKey, ApiKey.account_id == Account.id)
            .order_by(Account.name, ApiKey.id)
        ).all()
    return [
        KeyInfo(
            account=r.account,
            admin=r.is_admin,
            balance_micros=r.balance_micros,
            held_micros=r.held_micros,
            key_id=r.key_id,
            key_name=r.key_name,
            key_prefix=r.prefix,
            created_at=r.created_at,
            revoked=r.revoked_at is not None,
            expires_at=r.expires_at,
            models=r.models,
            cap_micros=r.cap_micros,
            spent_micros=r.spent_micros,
            referral_code=r.referral_code,
        )
        for r in rows
    ]

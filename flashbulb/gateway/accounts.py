"""Accounts and API keys. A key is shown once at creation; only its SHA-256 is stored."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from flashbulb.engine.types import Caller
from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.gateway import ledger
from flashbulb.store.tables import Account, ApiKey

KEY_PREFIX = "fb-"


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a plain hash is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def authenticate(db: Engine, key: str | None) -> Caller:
    if not key:
        raise FlashbulbError(
            ErrorKind.API_KEY_MISSING,
            "Method doesn't allow unregistered callers. Send an API key in the x-goog-api-key header or ?key=.",
        )
    with db.connect() as conn:
        row = conn.execute(
            select(ApiKey.id, ApiKey.account_id, Account.name, Account.is_admin)
            .join(Account, Account.id == ApiKey.account_id)
            .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
        ).first()
    if row is None:
        raise FlashbulbError(ErrorKind.API_KEY_INVALID, "API key not valid. Please pass a valid API key.")
    return Caller(account_id=row.account_id, account_name=row.name, key_id=row.id, is_admin=row.is_admin)


@dataclasses.dataclass(frozen=True)
class NewKey:
    key: str
    account_id: int
    key_id: int


def create_key(db: Engine, account_name: str, *, key_name: str = "default", credits_micros: int = 0, admin: bool = False) -> NewKey:
    """Create the account if it does not exist, give it a new key and, optionally, credits."""
    if not account_name.strip():
        raise FlashbulbError(ErrorKind.INVALID_ARGUMENT, "account name is empty")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with db.begin() as conn:
        account_id = conn.execute(select(Account.id).where(Account.name == account_name)).scalar()
        if account_id is None:
            try:
                with conn.begin_nested():
                    account_id = conn.execute(
                        Account.__table__.insert()
                        .values(name=account_name, is_admin=admin, balance_micros=0, held_micros=0)
                        .returning(Account.id)
                    ).scalar_one()
            except IntegrityError:  # created by a concurrent caller
                account_id = conn.execute(select(Account.id).where(Account.name == account_name)).scalar_one()
        key_id = conn.execute(
            ApiKey.__table__.insert()
            .values(account_id=account_id, name=key_name, prefix=key[:10], key_hash=hash_key(key))
            .returning(ApiKey.id)
        ).scalar_one()
    if credits_micros:
        ledger.grant(db, account_name, credits_micros, note="initial credits")
    return NewKey(key=key, account_id=account_id, key_id=key_id)


def has_admin(db: Engine) -> bool:
    with db.connect() as conn:
        return conn.execute(select(Account.id).where(Account.is_admin.is_(True)).limit(1)).first() is not None


def list_keys(db: Engine) -> list[dict]:
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
            )
            .join(ApiKey, ApiKey.account_id == Account.id)
            .order_by(Account.name, ApiKey.id)
        ).all()
    return [
        {
            "account": r.account,
            "admin": r.is_admin,
            "balance_micros": r.balance_micros,
            "held_micros": r.held_micros,
            "key_id": r.key_id,
            "key_name": r.key_name,
            "key_prefix": r.prefix,
            "created_at": r.created_at.isoformat(timespec="seconds"),
            "revoked": r.revoked_at is not None,
        }
        for r in rows
    ]

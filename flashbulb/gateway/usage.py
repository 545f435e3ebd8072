"""Reading usage records back: per-call rows and per-account/model totals."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from flashbulb.store.tables import Account, UsageRecord


def recent(db: Engine, *, account_id: int | None = None, limit: int = 100) -> list[dict]:
    query = (
        select(*UsageRecord.__table__.c, Account.name.label("account"))
        .join(Account, Account.id == UsageRecord.account_id)
        .order_by(UsageRecord.id.desc())
        .limit(limit)
    )
    if account_id is not None:
        query = query.where(UsageRecord.account_id == account_id)
    with db.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        {
            **{name: row[name] for name in _REPORTED},
            "created_at": row["created_at"].isoformat(timespec="seconds"),
        }
        for row in rows
    ]


_REPORTED = (
    "request_id", "account", "key_id", "model", "status", "finish_reason", "input_images", "input_pixels",
    "output_images", "output_pixels", "latency_ms", "charge_micros", "quality", "error",
)


def totals(db: Engine, *, account_id: int | None = None) -> list[dict]:
    query = (
        select(
            Account.name.label("account"),
            UsageRecord.model,
            func.count().label("calls"),
            func.sum(UsageRecord.output_images).label("images"),
            func.sum(UsageRecord.charge_micros).label("charge_micros"),
        )
        .join(Account, Account.id == UsageRecord.account_id)
        .group_by(Account.name, UsageRecord.model)
        .order_by(Account.name, UsageRecord.model)
    )
    if account_id is not None:
        query = query.where(UsageRecord.account_id == account_id)
    with db.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {"account": r.account, "model": r.model, "calls": r.calls, "images": int(r.images or 0), "charge_micros": int(r.charge_micros or 0)}
        for r in rows
    ]

"""Reading usage records back: per-call rows and per-account/model totals."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from flashbulb.store.tables import Account, UsageRecord


def recent(db: Engine, *, account_id: int | None = None, limit: int = 100) -> list[dict]:
    query = (
        select(UsageRecord, Account.name.label("account"))
        .join(Account, Account.id == UsageRecord.account_id)
        .order_by(UsageRecord.id.desc())
        .limit(limit)
    )
    if account_id is not None:
        query = query.where(UsageRecord.account_id == account_id)
    with db.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "request_id": r.UsageRecord.request_id,
            "account": r.account,
            "key_id": r.UsageRecord.key_id,
            "model": r.UsageRecord.model,
            "status": r.UsageRecord.status,
            "finish_reason": r.UsageRecord.finish_reason,
            "input_images": r.UsageRecord.input_images,
            "input_pixels": r.UsageRecord.input_pixels,
            "output_images": r.UsageRecord.output_images,
            "output_pixels": r.UsageRecord.output_pixels,
            "latency_ms": r.UsageRecord.latency_ms,
            "charge_micros": r.UsageRecord.charge_micros,
            "quality": r.UsageRecord.quality,
            "error": r.UsageRecord.error,
            "created_at": r.UsageRecord.created_at.isoformat(timespec="seconds"),
        }
        for r in rows
    ]


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

"""Reading usage records back: per-call rows and per-account/model totals."""

from __future__ import annotations

import csv
import datetime as dt
import io

from sqlalchemy import Engine, func, select

from flashbulb.config import micros_to_usd
from flashbulb.errors import invalid
from flashbulb.store.tables import Account, UsageRecord, utcnow


def recent(db: Engine, *, account_id: int | None = None, limit: int = 100) -> list[dict]:
    return page(db, account_id=account_id, limit=limit)[0]


def page(db: Engine, *, account_id: int | None = None, limit: int = 100, page_token: str = "") -> tuple[list[dict], str]:
    """Newest first, `limit` records from `page_token` on; returns them and the token of the next
    page ("" when there is none). The token is opaque to callers (it is the last record's id)."""
    query = (
        select(*UsageRecord.__table__.c, Account.name.label("account"))
        .join(Account, Account.id == UsageRecord.account_id)
        .order_by(UsageRecord.id.desc())
        .limit(limit + 1)
    )
    if account_id is not None:
        query = query.where(UsageRecord.account_id == account_id)
    if page_token:
        if not page_token.isdigit():
            raise invalid("pageToken is not one this server gave out")
        query = query.where(UsageRecord.id < int(page_token))
    with db.connect() as conn:
        rows = conn.execute(query).mappings().all()
    more = len(rows) > limit
    rows = rows[:limit]
    records = [
        {
            **{name: row[name] for name in _REPORTED},
            "created_at": row["created_at"].isoformat(timespec="seconds"),
        }
        for row in rows
    ]
    return records, str(rows[-1]["id"]) if more and rows else ""


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


def summary(db: Engine, *, account_id: int | None = None, days: int = 30, today: dt.date | None = None) -> dict:
    """Spend over the last `days` UTC days (today included): one row per day, zeros included, and
    one row per model, newest spend first."""
    today = today or utcnow().date()
    first = today - dt.timedelta(days=days - 1)
    since = dt.datetime.combine(first, dt.time())
    day = func.date(UsageRecord.created_at)
    where = [UsageRecord.created_at >= since]
    if account_id is not None:
        where.append(UsageRecord.account_id == account_id)
    sums = (
        func.count().label("calls"),
        func.sum(UsageRecord.output_images).label("images"),
        func.sum(UsageRecord.charge_micros).label("charge_micros"),
    )
    with db.connect() as conn:
        per_day = conn.execute(select(day.label("day"), *sums).where(*where).group_by(day)).all()
        per_model = conn.execute(select(UsageRecord.model, *sums).where(*where).group_by(UsageRecord.model)).all()

    def row(r) -> dict:  # noqa: ANN001
        return {"calls": int(r.calls), "images": int(r.images or 0), "charge_micros": int(r.charge_micros or 0)}

    # SQLite's date() gives 'YYYY-MM-DD', PostgreSQL's a date: both print the same.
    by_day = {str(r.day)[:10]: row(r) for r in per_day}
    zero = {"calls": 0, "images": 0, "charge_micros": 0}
    dates = [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]
    models = sorted(({"model": r.model, **row(r)} for r in per_model), key=lambda m: (-m["charge_micros"], m["model"]))
    return {
        "from": dates[0],
        "to": dates[-1],
        "days": [{"date": d, **by_day.get(d, zero)} for d in dates],
        "models": models,
        "calls": sum(m["calls"] for m in models),
        "charge_micros": sum(m["charge_micros"] for m in models),
    }


CSV_COLUMNS = (
    "created_at", "request_id", "account", "model", "status", "finish_reason", "input_images", "output_images",
    "output_pixels", "latency_ms", "charge_micros", "charge_usd", "identity_distance", "same_person", "error",
)


def to_csv(records: list[dict]) -> str:
    """Usage records as CSV (UTC times; money in micro-USD and in USD; the measured identity)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        quality = r.get("quality") or {}
        distances = quality.get("identity_distance") or []
        writer.writerow(
            [
                r["created_at"] + "Z", r["request_id"], _no_formula(r["account"]), r["model"], r["status"], r["finish_reason"],
                r["input_images"], r["output_images"], r["output_pixels"], r["latency_ms"], r["charge_micros"],
                micros_to_usd(r["charge_micros"]), " ".join(str(d) for d in distances),
                "" if "same_person" not in quality else str(bool(quality["same_person"])).lower(),
                _no_formula(r.get("error") or ""),
            ]
        )
    return out.getvalue()


def _no_formula(text: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading quote (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

"""Reading usage back (per-call rows, an account's ledger statement, summaries grouped by
account/key/model/day, exports) and
retention: `rollup` moves old per-call records into daily totals that every summary still counts."""

from __future__ import annotations

import collections
import csv
import dataclasses
import datetime as dt
import io
import json
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Engine, RowMapping, Select, delete, func, insert, select, text, update
from sqlalchemy.orm import InstrumentedAttribute

from flashbulb.billing.money import micros_to_usd
from flashbulb.clock import clock
from flashbulb.errors import ErrorKind, FlashbulbError, invalid
from flashbulb.parsing import whole_number
from flashbulb.store.tables import Account, ApiKey, LedgerEntry, UsageDaily, UsageRecord, utcnow


@dataclasses.dataclass(frozen=True)
class UsageRow:
    """One call as its usage record keeps it (api/records.py shapes it for the wire)."""

    request_id: str
    account: str
    key_id: int | None
    model: str
    status: str
    finish_reason: str
    input_images: int
    input_pixels: int
    output_images: int
    output_pixels: int
    latency_ms: int
    charge_micros: int
    quality: dict
    error: str
    replica: dict | None
    created_at: dt.datetime  # UTC


@dataclasses.dataclass(frozen=True)
class StatementEntry:
    """One movement of an account's balance, with the balance right after it."""

    kind: str  # grant, code, charge, refund, commission, clawback
    amount_micros: int
    balance_after_micros: int
    request_id: str | None
    note: str
    created_at: dt.datetime  # UTC


@dataclasses.dataclass(frozen=True)
class Spend:
    """Calls, images and charges summed over usage records (rolled-up days included)."""

    calls: int = 0
    input_images: int = 0
    images: int = 0
    output_pixels: int = 0
    latency_ms: int = 0  # the sum: the mean is latency_ms / calls
    charge_micros: int = 0

    def __add__(self, other: Spend) -> Spend:
        return Spend(*(getattr(self, f) + getattr(other, f) for f in _SUMS))


@dataclasses.dataclass(frozen=True)
class SpendRow:
    """One combination of the dimensions a report is grouped by, and its sums. A dimension the
    report is not grouped by stays None ("key" fills key_id, key_name and key_prefix)."""

    spend: Spend
    account: str | None = None
    key_id: int | None = None
    key_name: str | None = None
    key_prefix: str | None = None
    model: str | None = None
    day: str | None = None  # YYYY-MM-DD (UTC)
    status: str | None = None


@dataclasses.dataclass(frozen=True)
class SpendReport:
    """`summarize`'s answer: rows per combination of `group`, between two UTC days (None: unbounded)."""

    start: dt.date | None
    end: dt.date | None
    group: tuple[str, ...]
    rows: list[SpendRow]
    totals: Spend


@dataclasses.dataclass(frozen=True)
class SpendSummary:
    """`summary`'s answer: every UTC day of a window (zeros included) and each model, newest spend first."""

    start: dt.date
    end: dt.date
    days: list[tuple[str, Spend]]  # (YYYY-MM-DD, its sums)
    models: list[tuple[str, Spend]]
    total: Spend


@dataclasses.dataclass(frozen=True)
class Rollup:
    """What `rollup` moved: records of `days` UTC days before `before` into `daily_rows` daily totals."""

    before: dt.date
    days: int = 0
    records: int = 0
    daily_rows: int = 0


_REPORTED = tuple(field.name for field in dataclasses.fields(UsageRow))


def recent(db: Engine, *, account_id: int | None = None, limit: int = 100) -> list[UsageRow]:
    return page(db, account_id=account_id, limit=limit)[0]


def page(db: Engine, *, account_id: int | None = None, limit: int = 100, page_token: str = "") -> tuple[list[UsageRow], str]:
    """Newest first, `limit` records from `page_token` on; returns them and the token of the next
    page ("" when there is none). The token is opaque to callers (it is the last record's id)."""
    query = select(*UsageRecord.__table__.c, Account.name.label("account")).join(Account, Account.id == UsageRecord.account_id)
    if account_id is not None:
        query = query.where(UsageRecord.account_id == account_id)
    rows, next_token = _newest_first(db, query, UsageRecord.id, limit, page_token)
    return [UsageRow(**{name: row[name] for name in _REPORTED}) for row in rows], next_token


def statement(db: Engine, account_id: int, *, limit: int = 100, page_token: str = "") -> tuple[list[StatementEntry], str]:
    """The account's ledger entries, newest first, each with the balance right after it, so a
    customer can follow every cent (the newest entry's balance is the account's balance). Returns
    `limit` entries from `page_token` on and the next page's token ("" when there is none)."""
    running = (
        select(
            LedgerEntry.id,
            LedgerEntry.kind,
            LedgerEntry.amount_micros,
            LedgerEntry.request_id,
            LedgerEntry.note,
            LedgerEntry.created_at,
            func.sum(LedgerEntry.amount_micros).over(order_by=LedgerEntry.id).label("balance_after_micros"),
        )
        .where(LedgerEntry.account_id == account_id)
        .subquery()
    )
    # One statement: the running sums and the page come from one snapshot of the ledger.
    rows, next_token = _newest_first(db, select(running), running.c.id, limit, page_token)
    entries = [
        StatementEntry(
            kind=r["kind"],
            amount_micros=r["amount_micros"],
            balance_after_micros=int(r["balance_after_micros"]),
            request_id=r["request_id"],
            note=r["note"],
            created_at=r["created_at"],
        )
        for r in rows
    ]
    return entries, next_token


def _newest_first(
    db: Engine, query: Select, id_column: ColumnElement[int] | InstrumentedAttribute[int], limit: int, page_token: str
) -> tuple[Sequence[RowMapping], str]:
    """One page of `query`'s rows, newest (highest id) first, and the next page's token: the id of
    this page's last row ("" when nothing is older). Tokens are opaque to callers."""
    query = query.order_by(id_column.desc()).limit(limit + 1)
    if page_token:
        query = query.where(id_column < whole_number(page_token, "pageToken", param="pageToken"))
    with db.connect() as conn:
        rows = conn.execute(query).mappings().all()
    if len(rows) > limit:
        return rows[:limit], str(rows[limit - 1]["id"])
    return rows, ""


def totals(db: Engine, *, account_id: int | None = None) -> list[SpendRow]:
    """All-time calls, images and charges per account and model (rolled-up days included)."""
    return summarize(db, group=("account", "model"), account_id=account_id).rows


def summary(
    db: Engine,
    *,
    account_id: int | None = None,
    days: int = 30,
    today: dt.date | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> SpendSummary:
    """Spend over the last `days` UTC days (today included), or from `start` to `end` (both
    included): one row per day, zeros included, and one row per model, newest spend first.
    Rolled-up days count the same as days still kept call by call."""
    today = today or utcnow().date()
    end = end or today
    first = start or end - dt.timedelta(days=days - 1)
    by_day = {r.day: r.spend for r in summarize(db, group=("day",), start=first, end=end, account_id=account_id).rows}
    per_model = summarize(db, group=("model",), start=first, end=end, account_id=account_id).rows
    dates = [(first + dt.timedelta(days=i)).isoformat() for i in range((end - first).days + 1)]
    models = sorted(((r.model or "", r.spend) for r in per_model), key=lambda m: (-m[1].charge_micros, m[0]))
    return SpendSummary(
        start=first,
        end=end,
        days=[(d, by_day.get(d, Spend())) for d in dates],
        models=models,
        total=sum((spend for _, spend in models), Spend()),
    )


def account_id_of(db: Engine, name: str) -> int:
    with db.connect() as conn:
        found = conn.execute(select(Account.id).where(Account.name == name)).scalar()
    if found is None:
        raise FlashbulbError(ErrorKind.NOT_FOUND, f"no account named {name!r}")
    return found


def window(start: str | None, end: str | None, *, default_days: int = 30, max_days: int = 3700) -> tuple[dt.date, dt.date]:
    """?from=&to= (UTC days, both included) -> dates; by default the last `default_days` days."""
    last = parse_day(end, "to") or utcnow().date()
    first = parse_day(start, "from") or last - dt.timedelta(days=default_days - 1)
    if first > last:
        raise invalid("from must not be after to", param="from")
    if (last - first).days >= max_days:
        raise invalid(f"ask for at most {max_days} days at a time", param="from")
    return first, last


GROUPS = ("account", "key", "model", "day", "status")
_SUMS = tuple(field.name for field in dataclasses.fields(Spend))


def parse_group(text: str | None) -> tuple[str, ...]:
    """ "account,key,model,day" -> the dimensions to group by (each once, in the order of GROUPS)."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise invalid(f"cannot group by {', '.join(unknown)}; choose from {', '.join(GROUPS)}", param="group")
    return tuple(g for g in GROUPS if g in names)


EARLIEST_DAY, LATEST_DAY = dt.date(1970, 1, 1), dt.date(9000, 12, 31)  # days outside are clamped: no date overflow


def parse_day(text: str | None, what: str) -> dt.date | None:
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text[:10])
    except ValueError as exc:
        raise invalid(f"{what} must be a date like 2025-01-31", param=what) from exc
    return min(max(day, EARLIEST_DAY), LATEST_DAY)


def summarize(
    db: Engine,
    *,
    group: tuple[str, ...] | list[str] = (),
    start: dt.date | None = None,
    end: dt.date | None = None,
    account_id: int | None = None,
) -> SpendReport:
    """Calls, images and charges between two UTC days (both included; None: unbounded), one row
    per combination of the `group` dimensions (account, key, model, day, status). Detail records
    and rolled-up daily totals are added together, so a rollup never changes an answer."""
    group = tuple(g for g in GROUPS if g in group)
    detail_day = func.date(UsageRecord.created_at)
    dims = {
        "account": (UsageRecord.account_id, UsageDaily.account_id),
        "key": (UsageRecord.key_id, UsageDaily.key_id),
        "model": (UsageRecord.model, UsageDaily.model),
        "day": (detail_day, UsageDaily.day),
        "status": (UsageRecord.status, UsageDaily.status),
    }
    detail: Select = select(
        *(dims[g][0].label(g) for g in group),
        func.count().label("calls"),
        func.sum(UsageRecord.input_images).label("input_images"),
        func.sum(UsageRecord.output_images).label("images"),
        func.sum(UsageRecord.output_pixels).label("output_pixels"),
        func.sum(UsageRecord.latency_ms).label("latency_ms"),
        func.sum(UsageRecord.charge_micros).label("charge_micros"),
    )
    daily = select(
        *(dims[g][1].label(g) for g in group),
        func.sum(UsageDaily.calls).label("calls"),
        func.sum(UsageDaily.input_images).label("input_images"),
        func.sum(UsageDaily.output_images).label("images"),
        func.sum(UsageDaily.output_pixels).label("output_pixels"),
        func.sum(UsageDaily.latency_ms).label("latency_ms"),
        func.sum(UsageDaily.charge_micros).label("charge_micros"),
    )
    if start is not None:
        detail = detail.where(UsageRecord.created_at >= dt.datetime.combine(start, dt.time()))
        daily = daily.where(UsageDaily.day >= start)
    if end is not None:
        detail = detail.where(UsageRecord.created_at < dt.datetime.combine(end + dt.timedelta(days=1), dt.time()))
        daily = daily.where(UsageDaily.day <= end)
    if account_id is not None:
        detail = detail.where(UsageRecord.account_id == account_id)
        daily = daily.where(UsageDaily.account_id == account_id)
    if group:
        detail = detail.group_by(*(dims[g][0] for g in group))
        daily = daily.group_by(*(dims[g][1] for g in group))
    merged: dict[tuple, Spend] = {}
    with db.connect() as conn:
        for query in (detail, daily):
            for r in conn.execute(query).mappings():
                if not r["calls"]:
                    continue  # an ungrouped sum over nothing
                # SQLite's date() gives 'YYYY-MM-DD', PostgreSQL's a date: both print the same.
                key = tuple(str(r[g])[:10] if g == "day" else r[g] for g in group)
                merged[key] = merged.get(key, Spend()) + Spend(*(int(r[name] or 0) for name in _SUMS))
        names = dict(conn.execute(select(Account.id, Account.name)).all()) if "account" in group else {}
        keys = {r.id: r for r in conn.execute(select(ApiKey.id, ApiKey.name, ApiKey.prefix))} if "key" in group else {}
    rows = []
    for key in sorted(merged, key=lambda k: tuple("" if v is None else v for v in k)):
        named: dict[str, Any] = {}
        for g, value in zip(group, key):
            if g == "account":
                named["account"] = names.get(value, str(value))
            elif g == "key":
                found = keys.get(value)
                named.update(key_id=value, key_name=found.name if found else "", key_prefix=found.prefix if found else "")
            else:
                named[g] = value
        rows.append(SpendRow(merged[key], **named))
    return SpendReport(start, end, group, rows, sum((r.spend for r in rows), Spend()))


def rollup(db: Engine, *, older_than_days: int, batch_days: int = 7, today: dt.date | None = None) -> Rollup:
    """Move usage records of UTC days before `today - older_than_days` into daily totals
    (usage_daily) and delete them: one transaction per `batch_days` days, so an interrupted run
    loses nothing and a second run finds nothing left to move (it is idempotent)."""
    if older_than_days < 1:
        raise invalid("--older-than must be at least one day")
    cutoff = (today or utcnow().date()) - dt.timedelta(days=older_than_days)
    cutoff_at = dt.datetime.combine(cutoff, dt.time())
    moved = Rollup(before=cutoff)
    day = func.date(UsageRecord.created_at)
    while True:
        with db.connect() as conn:
            oldest = conn.execute(select(func.min(UsageRecord.created_at)).where(UsageRecord.created_at < cutoff_at)).scalar()
        if oldest is None:
            return moved
        first = oldest.date()
        last = min(first + dt.timedelta(days=batch_days), cutoff)  # exclusive
        window = (
            UsageRecord.created_at >= dt.datetime.combine(first, dt.time()),
            UsageRecord.created_at < dt.datetime.combine(last, dt.time()),
        )
        with db.begin() as conn:
            if conn.dialect.name == "postgresql":  # one rollup at a time (SQLite's BEGIN IMMEDIATE already is)
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('flashbulb.usage_rollup'))"))
            groups = (
                conn.execute(
                    select(
                        UsageRecord.account_id,
                        UsageRecord.key_id,
                        UsageRecord.model,
                        day.label("day"),
                        UsageRecord.status,
                        func.count().label("calls"),
                        func.sum(UsageRecord.input_images).label("input_images"),
                        func.sum(UsageRecord.input_pixels).label("input_pixels"),
                        func.sum(UsageRecord.output_images).label("output_images"),
                        func.sum(UsageRecord.output_pixels).label("output_pixels"),
                        func.sum(UsageRecord.latency_ms).label("latency_ms"),
                        func.sum(UsageRecord.charge_micros).label("charge_micros"),
                    )
                    .where(*window)
                    .group_by(UsageRecord.account_id, UsageRecord.key_id, UsageRecord.model, day, UsageRecord.status)
                )
                .mappings()
                .all()
            )
            for g in groups:
                the_day = g["day"] if isinstance(g["day"], dt.date) else dt.date.fromisoformat(str(g["day"])[:10])
                where = (
                    UsageDaily.account_id == g["account_id"],
                    UsageDaily.key_id == g["key_id"],
                    UsageDaily.model == g["model"],
                    UsageDaily.day == the_day,
                    UsageDaily.status == g["status"],
                )
                sums = {name: int(g[name] or 0) for name in _DAILY_SUMS}
                updated = conn.execute(
                    update(UsageDaily)
                    .where(*where)
                    .values({name: getattr(UsageDaily, name) + sums[name] for name in _DAILY_SUMS})
                ).rowcount
                if not updated:
                    conn.execute(
                        insert(UsageDaily).values(
                            account_id=g["account_id"],
                            key_id=g["key_id"],
                            model=g["model"],
                            day=the_day,
                            status=g["status"],
                            **sums,
                        )
                    )
            deleted = conn.execute(delete(UsageRecord).where(*window)).rowcount
            if deleted != sum(int(g["calls"]) for g in groups):
                raise RuntimeError("usage records changed during the rollup; nothing was moved")  # rolls back
        moved = dataclasses.replace(
            moved,
            days=moved.days + len({g["day"] for g in groups}),
            records=moved.records + deleted,
            daily_rows=moved.daily_rows + len(groups),
        )


_DAILY_SUMS = ("calls", "input_images", "input_pixels", "output_images", "output_pixels", "latency_ms", "charge_micros")


EXPORT_COLUMNS = (
    "kind",
    "date",
    "request_id",
    "account",
    "key_id",
    "model",
    "status",
    "calls",
    "input_images",
    "output_images",
    "output_pixels",
    "latency_ms",
    "charge_micros",
    "charge_usd",
    "finish_reason",
    "error",
)


def export_rows(db: Engine, *, start: dt.date | None = None, end: dt.date | None = None, account_id: int | None = None):
    """Every usage row between two UTC days (both included): rolled-up days as one row per
    account, key, model, day and status (kind "day"), then each call still kept (kind "call").
    Summing `calls` and `charge_micros` over the rows gives the summaries' totals exactly."""
    daily = select(*UsageDaily.__table__.c, Account.name.label("account")).join(Account, Account.id == UsageDaily.account_id)
    detail = (
        select(*UsageRecord.__table__.c, Account.name.label("account"))
        .join(Account, Account.id == UsageRecord.account_id)
        .order_by(UsageRecord.created_at, UsageRecord.id)
    )
    if start is not None:
        daily = daily.where(UsageDaily.day >= start)
        detail = detail.where(UsageRecord.created_at >= dt.datetime.combine(start, dt.time()))
    if end is not None:
        daily = daily.where(UsageDaily.day <= end)
        detail = detail.where(UsageRecord.created_at < dt.datetime.combine(end + dt.timedelta(days=1), dt.time()))
    if account_id is not None:
        daily = daily.where(UsageDaily.account_id == account_id)
        detail = detail.where(UsageRecord.account_id == account_id)
    daily = daily.order_by(UsageDaily.day, Account.name, UsageDaily.key_id, UsageDaily.model, UsageDaily.status)
    with db.connect() as conn:
        for d in conn.execute(daily):
            yield {
                "kind": "day",
                "date": d.day.isoformat(),
                "request_id": "",
                "account": d.account,
                "key_id": d.key_id,
                "model": d.model,
                "status": d.status,
                "calls": d.calls,
                "input_images": d.input_images,
                "output_images": d.output_images,
                "output_pixels": d.output_pixels,
                "latency_ms": d.latency_ms,
                "charge_micros": d.charge_micros,
                "charge_usd": micros_to_usd(d.charge_micros),
                "finish_reason": "",
                "error": "",
            }
        for r in conn.execution_options(yield_per=1000).execute(detail).mappings():
            yield {
                "kind": "call",
                "date": r["created_at"].isoformat(timespec="seconds") + "Z",
                "request_id": r["request_id"],
                "account": r["account"],
                "key_id": r["key_id"],
                "model": r["model"],
                "status": r["status"],
                "calls": 1,
                "input_images": r["input_images"],
                "output_images": r["output_images"],
                "output_pixels": r["output_pixels"],
                "latency_ms": r["latency_ms"],
                "charge_micros": r["charge_micros"],
                "charge_usd": micros_to_usd(r["charge_micros"]),
                "finish_reason": r["finish_reason"],
                "error": r["error"] or "",
            }


def write_export(rows, out, fmt: str, meta: dict) -> int:
    """Write export rows to a text file as CSV or as one JSON document; returns how many."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(EXPORT_COLUMNS)
        for r in rows:
            writer.writerow([_no_formula(v) if isinstance(v, str) else v for v in (r[c] for c in EXPORT_COLUMNS)])
            count += 1
        return count
    out.write(json.dumps(meta)[:-1] + ', "rows": [')
    for r in rows:
        out.write(("," if count else "") + "\n" + json.dumps(r))
        count += 1
    out.write("\n]}\n")
    return count


CSV_COLUMNS = (
    "created_at",
    "request_id",
    "account",
    "model",
    "status",
    "finish_reason",
    "input_images",
    "output_images",
    "output_pixels",
    "latency_ms",
    "charge_micros",
    "charge_usd",
    "identity_distance",
    "same_person",
    "error",
)


def to_csv(records: list[UsageRow]) -> str:
    """Usage records as CSV (UTC times; money in micro-USD and in USD; the measured identity)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        quality = r.quality or {}
        distances = quality.get("identity_distance") or []
        writer.writerow(
            [
                r.created_at.isoformat(timespec="seconds") + "Z",
                r.request_id,
                _no_formula(r.account),
                r.model,
                r.status,
                r.finish_reason,
                r.input_images,
                r.output_images,
                r.output_pixels,
                r.latency_ms,
                r.charge_micros,
                micros_to_usd(r.charge_micros),
                " ".join(str(d) for d in distances),
                "" if "same_person" not in quality else str(bool(quality["same_person"])).lower(),
                _no_formula(r.error or ""),
            ]
        )
    return out.getvalue()


def _no_formula(text: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading quote (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class RunningTotals:
    """All-time calls, images and charges per (model, status), exact across every server on the
    database, without summing the whole usage table at each read (/metrics is scraped every few
    seconds; the table grows by every call). Usage records are only ever inserted (a rollup moves
    whole days older than one day into usage_daily): rows up to `counted_to` are summed once and
    kept; each read sums only the newer ones, a range of the primary key.

    An id is taken before its transaction commits, so on PostgreSQL a smaller id can become visible
    after a larger one. The cursor therefore only moves up to the newest id seen SETTLED_S ago:
    every id below it has committed since (a settlement commits within milliseconds). Read less
    often than every REREAD_S, it reads everything again: rows past the cursor are then younger
    than a day, and a rollup moves only older ones."""

    SETTLED_S = 60.0
    REREAD_S = 3600.0

    def __init__(self) -> None:
        self.kept: dict[tuple[str, str], Spend] = {}
        self.counted_to: int | None = None  # the highest usage record id summed into `kept`
        self.read_at = 0.0  # clock.monotonic() of the last read
        self._newest_seen: collections.deque[tuple[float, int]] = collections.deque()  # (when, newest id then)
        self._lock = threading.Lock()  # two scrapes at once must not both move the cursor

    def read(self, db: Engine) -> dict[tuple[str, str], Spend]:
        """(model, status) -> its calls, images and charges (the other sums are not kept)."""
        with self._lock:
            return self._read(db)

    def _read(self, db: Engine) -> dict[tuple[str, str], Spend]:
        if self.counted_to is None or clock.monotonic() - self.read_at > self.REREAD_S:
            self._read_all(db)
        else:
            self._advance(db)
        self.read_at = clock.monotonic()
        totals = dict(self.kept)
        newer = _per_model_status(UsageRecord.id > self.counted_to)
        with db.connect() as conn:
            _add_rows(totals, conn.execute(newer))
        return totals

    def _read_all(self, db: Engine) -> None:
        """Every record an hour old (by its own time: well past its commit, unless the server that
        wrote it runs an hour behind) and the days rolled up, in one statement: one snapshot, so a
        rollup running at the same time moves no row out of it or into it twice."""
        old = utcnow() - dt.timedelta(seconds=self.REREAD_S)
        with db.connect() as conn:
            cursor = conn.execute(select(func.max(UsageRecord.id)).where(UsageRecord.created_at < old)).scalar() or 0
            records = _per_model_status(UsageRecord.id <= cursor)
            daily = select(
                UsageDaily.model,
                UsageDaily.status,
                func.sum(UsageDaily.calls),
                func.sum(UsageDaily.output_images),
                func.sum(UsageDaily.charge_micros),
            ).group_by(UsageDaily.model, UsageDaily.status)
            rows = conn.execute(records.union_all(daily)).all()
            newest = conn.execute(select(func.max(UsageRecord.id))).scalar() or 0
        self.kept = {}
        _add_rows(self.kept, rows)
        self.counted_to = cursor
        self._newest_seen = collections.deque([(clock.monotonic(), newest)])  # where the cursor may move a minute on

    def _advance(self, db: Engine) -> None:
        """Sum into `kept` the records up to the newest id seen SETTLED_S ago or more."""
        assert self.counted_to is not None
        now = clock.monotonic()
        with db.connect() as conn:
            newest = conn.execute(select(func.max(UsageRecord.id))).scalar() or 0
            self._newest_seen.append((now, newest))
            settled = None
            while self._newest_seen and self._newest_seen[0][0] <= now - self.SETTLED_S:
                settled = self._newest_seen.popleft()[1]
            if settled is None or settled <= self.counted_to:
                return
            between = _per_model_status(UsageRecord.id > self.counted_to, UsageRecord.id <= settled)
            _add_rows(self.kept, conn.execute(between))
        self.counted_to = settled


def _add_rows(totals: dict[tuple[str, str], Spend], rows) -> None:
    """Add (model, status, calls, images, charge) rows into `totals`."""
    for model, status, calls, images, charged in rows:
        found = Spend(calls=int(calls or 0), images=int(images or 0), charge_micros=int(charged or 0))
        totals[(model, status)] = totals.get((model, status), Spend()) + found


def _per_model_status(*where: ColumnElement[bool]) -> Select:
    return (
        select(
            UsageRecord.model,
            UsageRecord.status,
            func.count(),
            func.sum(UsageRecord.output_images),
            func.sum(UsageRecord.charge_micros),
        )
        .where(*where)
        .group_by(UsageRecord.model, UsageRecord.status)
    )

"""flashbulb's own records (usage rows and reports, statement entries, keys) as JSON: the one place
their wire shape is written, for the HTTP API and the CLI's --json alike. Field names as they are
(snake_case), UTC times to the second without a zone (as every flashbulb time on the wire)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from flashbulb.billing.money import micros_to_usd
from flashbulb.billing.usage import Rollup, Spend, SpendReport, SpendRow, SpendSummary


def as_json(record: Any) -> dict[str, Any]:
    """A record dataclass as a JSON object."""
    return {field.name: _value(getattr(record, field.name)) for field in dataclasses.fields(record)}


def all_as_json(records: list[Any]) -> list[dict[str, Any]]:
    return [as_json(record) for record in records]


def wire_time(when: dt.datetime) -> str:
    """A UTC time as flashbulb shows it: to the second, without a zone (the CLI's tables too)."""
    return when.isoformat(timespec="seconds")


def _value(value: Any) -> Any:
    return wire_time(value) if isinstance(value, dt.datetime) else value


def spend_json(spend: Spend) -> dict[str, Any]:
    return {**as_json(spend), "charge_usd": micros_to_usd(spend.charge_micros)}


def spend_row_json(row: SpendRow, group: tuple[str, ...]) -> dict[str, Any]:
    """The dimensions grouped by, in `group`'s order, then the sums."""
    dims: dict[str, Any] = {}
    for name in group:
        if name == "key":
            dims.update(key_id=row.key_id, key_name=row.key_name, key_prefix=row.key_prefix)
        else:
            dims[name] = getattr(row, name)
    return {**dims, **spend_json(row.spend)}


def report_json(report: SpendReport) -> dict[str, Any]:
    return {
        "from": report.start.isoformat() if report.start else None,
        "to": report.end.isoformat() if report.end else None,
        "group": list(report.group),
        "rows": [spend_row_json(row, report.group) for row in report.rows],
        "totals": spend_json(report.totals),
    }


def totals_json(rows: list[SpendRow]) -> list[dict[str, Any]]:
    """All-time sums per account and model (usage.totals), as /admin/usage and `flashbulb usage --json` list them."""
    return [{"account": r.account, "model": r.model, **_brief(r.spend)} for r in rows]


def summary_json(summary: SpendSummary) -> dict[str, Any]:
    return {
        "from": summary.start.isoformat(),
        "to": summary.end.isoformat(),
        "days": [{"date": day, **_brief(spend)} for day, spend in summary.days],
        "models": [{"model": model, **_brief(spend)} for model, spend in summary.models],
        "calls": summary.total.calls,
        "charge_micros": summary.total.charge_micros,
    }


def rollup_json(moved: Rollup) -> dict[str, Any]:
    return {**as_json(moved), "before": moved.before.isoformat()}


def _brief(spend: Spend) -> dict[str, int]:
    return {"calls": spend.calls, "images": spend.images, "charge_micros": spend.charge_micros}

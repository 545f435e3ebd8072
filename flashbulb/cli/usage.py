"""`flashbulb usage`: recent calls and totals, export, and the retention rollup."""

from __future__ import annotations

import json
import sys

import click

from flashbulb.api.records import all_as_json, rollup_json, totals_json, wire_time
from flashbulb.billing.money import micros_to_usd
from flashbulb.cli.root import Context, err, fail, main, print_table
from flashbulb.errors import ErrorKind, FlashbulbError


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=50, show_default=True)
@click.pass_context
def usage(ctx: click.Context, as_json: bool, limit: int) -> None:
    """Recent calls and totals per account and model (`usage export`, `usage rollup`: see their --help)."""
    from flashbulb.billing import usage as usage_report

    if ctx.invoked_subcommand is not None:
        return
    obj: Context = ctx.obj

    records = usage_report.recent(obj.db, limit=limit)
    totals = usage_report.totals(obj.db)
    if as_json:
        print(json.dumps({"records": all_as_json(records), "totals": totals_json(totals)}, indent=2))
        return
    lines = [
        [
            wire_time(r.created_at),
            r.account,
            r.model,
            r.status,
            str(r.input_images),
            str(r.output_images),
            str(r.latency_ms),
            micros_to_usd(r.charge_micros),
        ]
        for r in records
    ]
    print_table(
        ["when", "account", "model", "status", "in", "out", "ms", "charge USD"],
        lines,
        whole=("account", "model"),
        title="recent calls",
    )
    sums = [
        [t.account or "", t.model or "", str(t.spend.calls), str(t.spend.images), micros_to_usd(t.spend.charge_micros)]
        for t in totals
    ]
    print_table(["account", "model", "calls", "images", "charge USD"], sums, whole=("account", "model"), title="totals")


@usage.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--from", "start", help="First UTC day, YYYY-MM-DD (default: the oldest).")
@click.option("--to", "end", help="Last UTC day, YYYY-MM-DD, included (default: today).")
@click.option("--account", help="Only this account.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-", help="File to write (default stdout)."
)
@click.pass_obj
def usage_export(obj: Context, fmt: str, start: str | None, end: str | None, account: str | None, output: str) -> None:
    """Every usage row in a date range as CSV or JSON: rolled-up days as daily totals (kind "day"),
    then each call still kept (kind "call"); summing `calls` and `charge_micros` gives the totals."""
    from flashbulb.billing import usage as usage_report

    try:
        first, last = usage_report.parse_day(start, "from"), usage_report.parse_day(end, "to")
        account_id = usage_report.account_id_of(obj.db, account) if account else None
    except FlashbulbError as error:
        fail(error)
    rows = usage_report.export_rows(obj.db, start=first, end=last, account_id=account_id)
    meta = {"from": first and first.isoformat(), "to": last and last.isoformat(), "account": account}
    if output == "-":
        usage_report.write_export(rows, sys.stdout, fmt, meta)
        return
    with open(output, "w", encoding="utf-8", newline="") as out:
        count = usage_report.write_export(rows, out, fmt, meta)
    err.print(f"wrote {count} rows to {output}")


@usage.command("rollup")
@click.option("--older-than", required=True, help="Roll up days older than this: 90d (or a number of days).")
@click.option("--batch-days", default=7, show_default=True, help="Days moved per transaction.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def usage_rollup(obj: Context, older_than: str, batch_days: int, as_json: bool) -> None:
    """Move per-call usage records older than a cutoff into daily totals and delete them
    (summaries, exports and /metrics still count them). Running it again changes nothing."""
    from flashbulb.billing import usage as usage_report

    days = older_than.strip().lower().removesuffix("d")
    if not days.isdigit() or batch_days < 1:
        fail(FlashbulbError(ErrorKind.INVALID_ARGUMENT, "--older-than takes a number of days, like 90d"))
    try:
        moved = usage_report.rollup(obj.db, older_than_days=int(days), batch_days=batch_days)
    except FlashbulbError as error:
        fail(error)
    if as_json:
        print(json.dumps(rollup_json(moved)))
    else:
        print(
            f"rolled up {moved.records} usage records from {moved.days} days before {moved.before} into {moved.daily_rows} daily rows"
        )

"""Usage: summaries per account / key / model / day, CSV and JSON export from the CLI, and the
rollup of old records into daily totals (idempotent; summaries, exports and /metrics unchanged)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import uuid

import httpx
import pytest
from conftest import astronaut, gemini_body, http, png_bytes, start_server
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from flashbulb.store import db as store
from flashbulb.store.tables import Account, UsageDaily, UsageRecord

PRICE = 2_000


def cheap(text: str = "make it brighter") -> dict:
    return gemini_body(png_bytes(astronaut(16)), text)


def admin(server, path: str, **params) -> httpx.Response:
    return http.get(f"{server.base_url}/admin{path}", headers={"x-goog-api-key": server.admin_key}, params=params, timeout=30)


def own(server, key: str, path: str, **params) -> httpx.Response:
    return http.get(f"{server.base_url}/flashbulb{path}", headers={"x-goog-api-key": key}, params=params, timeout=30)


def scrape(server) -> dict:
    text = http.get(f"{server.base_url}/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(("flashbulb_calls", "flashbulb_images", "flashbulb_charged"))
    }


def backdate(server, name: str, days: int, count: int) -> None:
    """Move the account's `count` oldest usage records `days` days into the past."""
    database = store.connect(server.database_url)
    try:
        with database.begin() as conn:
            account_id = conn.execute(select(Account.id).where(Account.name == name)).scalar_one()
            ids = (
                conn.execute(
                    select(UsageRecord.id).where(UsageRecord.account_id == account_id).order_by(UsageRecord.id).limit(count)
                )
                .scalars()
                .all()
            )
            for i, rid in enumerate(ids):
                when = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=days + i % 2, hours=1)
                conn.execute(update(UsageRecord).where(UsageRecord.id == rid).values(created_at=when))
    finally:
        database.dispose()


def table_counts(server) -> tuple[int, int]:
    database = store.connect(server.database_url)
    try:
        with database.connect() as conn:
            return (
                conn.execute(select(func.count()).select_from(UsageRecord)).scalar(),
                conn.execute(select(func.count()).select_from(UsageDaily)).scalar(),
            )
    finally:
        database.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def usage_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp(f"usage-{request.param}")
    url = f"sqlite:///{data_dir / 'f.db'}" if request.param == "sqlite" else request.getfixturevalue("new_postgres_database")()
    server = start_server(data_dir, url, "[rate_limits]\nkey_rpm = 0\naccount_rpm = 0\n")
    yield server
    server.stop()


def test_summaries_group_by_account_key_model_and_day(usage_server):
    server = usage_server
    name = f"sum-{uuid.uuid4().hex[:6]}"
    first = server.create_key("1", name=name)
    second = server.create_key("0", name=name)
    other = server.create_key("1")
    for key, text in (
        (first, "make it brighter"),
        (first, "write a poem about it"),
        (second, "make it brighter"),
        (other, "make it brighter"),
    ):
        assert server.generate(key, cheap(text)).status_code == 200
    today = dt.datetime.now(dt.UTC).date().isoformat()

    summary = admin(server, "/usage/summary", group="account,key,model,day", account=name).json()
    assert summary["group"] == ["account", "key", "model", "day"] and summary["to"] == today
    rows = {(r["key_name"], r["key_id"]): r for r in summary["rows"]}
    assert len(rows) == 2 and {r["account"] for r in summary["rows"]} == {name}
    by_calls = sorted((r["calls"], r["images"], r["charge_micros"], r["model"], r["day"]) for r in summary["rows"])
    assert by_calls == [(1, 1, PRICE, "flashbulb-photo", today), (2, 1, PRICE, "flashbulb-photo", today)]
    assert summary["totals"]["calls"] == 3 and summary["totals"]["charge_micros"] == 2 * PRICE

    everyone = admin(server, "/usage/summary", group="account").json()["rows"]
    assert {"account": name, "calls": 3} == {
        k: v for k, v in next(r for r in everyone if r["account"] == name).items() if k in ("account", "calls")
    }
    by_status = admin(server, "/usage/summary", group="status", account=name).json()["rows"]
    assert {r["status"]: r["calls"] for r in by_status} == {"ok": 2, "no_image": 1}
    assert admin(server, "/usage/summary", group="colour").status_code == 400
    assert admin(server, "/usage/summary", **{"from": "2025-02-01", "to": "2025-01-01"}).status_code == 400
    assert admin(server, "/usage/summary", account="nobody-at-all").status_code == 404
    assert http.get(f"{server.base_url}/admin/usage/summary", headers={"x-goog-api-key": first}).status_code == 403

    mine = own(server, first, "/account/usage/summary", group="key,model").json()
    assert mine["calls"] == 3 and mine["days"][-1] == {"date": today, "calls": 3, "images": 2, "charge_micros": 2 * PRICE}
    assert mine["group"] == ["key", "model"] and sorted(r["calls"] for r in mine["rows"]) == [1, 2]
    ranged = own(server, first, "/account/usage/summary", **{"from": today, "to": today}).json()
    assert ranged["from"] == ranged["to"] == today and ranged["calls"] == 3 and "rows" not in ranged


def test_cli_exports_csv_and_json(usage_server, tmp_path):
    server = usage_server
    name = f"exp-{uuid.uuid4().hex[:6]}"
    key = server.create_key("1", name=name)
    for text in ("make it brighter", '=HYPERLINK("x")'):
        assert server.generate(key, cheap(text)).status_code == 200
    today = dt.datetime.now(dt.UTC).date().isoformat()
    out_csv = tmp_path / "usage.csv"
    server.cli("usage", "export", "--format", "csv", "--from", today, "--to", today, "--account", name, "-o", str(out_csv))
    rows = list(csv.DictReader(out_csv.open(newline="")))
    assert [r["kind"] for r in rows] == ["call", "call"] and {r["account"] for r in rows} == {name}
    assert sum(int(r["charge_micros"]) for r in rows) == sum(int(r["charge_micros"]) for r in rows if r["status"] == "ok") > 0
    out_json = tmp_path / "usage.json"
    server.cli("usage", "export", "--format", "json", "--account", name, "-o", str(out_json))
    doc = json.loads(out_json.read_text())
    assert doc["account"] == name and len(doc["rows"]) == 2
    assert [r["request_id"] for r in doc["rows"]] == [r["request_id"] for r in rows]
    assert server.cli("usage", "export", "--account", "nobody-at-all", check=False).returncode == 2
    assert server.cli("usage", "export", "--from", "yesterday", check=False).returncode == 2


def test_rollup_moves_old_records_into_daily_totals_and_changes_no_total(usage_server, tmp_path):
    server = usage_server
    name = f"old-{uuid.uuid4().hex[:6]}"
    key = server.create_key("1", name=name)
    for text in ("make it brighter", "upscale 2x", "write a poem about it", "make it brighter", "make it brighter"):
        assert server.generate(key, cheap(text)).status_code == 200
    backdate(server, name, days=120, count=4)  # four calls 120 and 121 days ago; one today

    def observed() -> dict:
        start = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=200)).isoformat()
        out = tmp_path / "export.json"
        server.cli("usage", "export", "--format", "json", "--account", name, "-o", str(out))
        exported = json.loads(out.read_text())["rows"]
        return {
            "summary": admin(
                server, "/usage/summary", group="account,key,model,day,status", account=name, **{"from": start}
            ).json(),
            "own": own(server, key, "/account/usage/summary", group="day", days=366).json(),
            "totals": [t for t in json.loads(server.cli("usage", "--json").stdout)["totals"] if t["account"] == name],
            "metrics": scrape(server),
            "export_calls": sum(r["calls"] for r in exported),
            "export_charge": sum(r["charge_micros"] for r in exported),
        }

    before = observed()
    assert before["summary"]["totals"]["calls"] == 5 and len(before["summary"]["rows"]) >= 3
    records, daily = table_counts(server)
    moved = json.loads(server.cli("usage", "rollup", "--older-than", "90d", "--batch-days", "1", "--json").stdout)
    assert moved["records"] >= 4 and moved["days"] >= 2
    assert table_counts(server)[0] == records - moved["records"] and table_counts(server)[1] == daily + moved["daily_rows"]
    after = observed()
    assert after == before

    again = json.loads(server.cli("usage", "rollup", "--older-than", "90d", "--json").stdout)
    assert again["records"] == 0 and again["daily_rows"] == 0
    assert observed() == before
    out = tmp_path / "rolled.csv"
    server.cli("usage", "export", "--account", name, "-o", str(out))
    kinds = [r["kind"] for r in csv.DictReader(out.open(newline=""))]
    assert kinds.count("call") == 1 and kinds.count("day") >= 2 and kinds.index("call") == len(kinds) - 1
    # New calls still add up on top of the rolled-up days.
    assert server.generate(key, cheap()).status_code == 200
    assert admin(server, "/usage/summary", group="account", account=name, **{"from": "2000-01-01"}).status_code == 400
    assert server.cli("usage", "rollup", "--older-than", "0d", check=False).returncode == 2

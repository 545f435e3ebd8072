"""GET /metrics as Prometheus scrapes it: HTTP traffic by route, and calls, images, charges and
open holds read from the ledger (exact, and the same from every server on one database)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from conftest import astronaut, gemini_body, http, png_bytes, start_server
from prometheus_client.parser import text_string_to_metric_families

from flashbulb.billing import ledger, usage
from flashbulb.billing.usage import RunningTotals
from flashbulb.clock import clock
from flashbulb.gateway import accounts


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    server = start_server(tmp_path_factory.mktemp("metrics"), "")
    yield server
    server.stop()


def scrape(server) -> dict[tuple[str, tuple], float]:
    text = http.get(f"{server.base_url}/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_calls_images_charges_and_holds(server):
    key = server.create_key("1")
    ok = server.generate(key, gemini_body(png_bytes(astronaut(32)), "upscale 2x"))
    refused = server.generate(key, gemini_body(png_bytes(astronaut(32)), "write a poem about it"))
    assert ok.status_code == refused.status_code == 200
    charged = int(ok.headers["x-flashbulb-charge-micros"])
    found = scrape(server)
    photo = (("model", "flashbulb-photo"),)
    assert found[("flashbulb_calls_total", (("model", "flashbulb-photo"), ("status", "ok")))] == 1
    assert found[("flashbulb_calls_total", (("model", "flashbulb-photo"), ("status", "no_image")))] == 1
    assert found[("flashbulb_images_total", photo)] == 1
    assert found[("flashbulb_charged_micros_total", photo)] == charged > 0
    assert found[("flashbulb_holds_open", ())] == 0 and found[("flashbulb_holds_open_micros", ())] == 0
    route = (("method", "POST"), ("route", "/v1beta/models/{model}:generateContent"), ("status", "200"))
    assert found[("flashbulb_http_requests_total", route)] == 2
    latency = (("le", "+Inf"), ("method", "POST"), ("route", "/v1beta/models/{model}:generateContent"))
    assert found[("flashbulb_http_request_seconds_bucket", latency)] == 2


def test_running_totals_sum_each_record_once_as_the_cursor_moves_and_days_are_rolled_up(any_database):
    """What /metrics reports (billing.usage.RunningTotals), on both databases: the same totals from a
    reader that keeps its cursor across reads, one that starts afresh, and one that read too long ago."""
    db = any_database
    model = f"m-{uuid.uuid4().hex[:8]}"  # this test's own calls, whatever else the database holds
    account_id = accounts.create_key(db, f"totals-{uuid.uuid4().hex[:8]}", credits_micros=10_000_000).account_id

    def call(charge: int) -> None:
        request_id = uuid.uuid4().hex
        ledger.hold(db, request_id=request_id, account_id=account_id, key_id=0, model=model, amount_micros=1000, ttl_s=60)
        outcome = ledger.Usage(status="ok", output_images=1) if charge else ledger.Usage(status="error")
        ledger.close_hold(db, request_id, charge, outcome)

    def ours(reader: RunningTotals) -> dict:
        return {s: (t.calls, t.images, t.charge_micros) for (m, s), t in reader.read(db).items() if m == model}

    kept = RunningTotals()
    try:
        call(100)
        call(0)
        assert ours(kept) == {"ok": (1, 1, 100), "error": (1, 0, 0)}  # both newer than the cursor: summed fresh
        clock.advance(RunningTotals.SETTLED_S + 1)
        call(200)
        assert ours(kept) == {"ok": (2, 2, 300), "error": (1, 0, 0)}  # the two seen a minute ago kept, the third fresh
        two_kept = kept.counted_to
        assert two_kept
        clock.advance(RunningTotals.SETTLED_S + 1)
        assert ours(kept) == {"ok": (2, 2, 300), "error": (1, 0, 0)} and kept.counted_to > two_kept  # all three kept
        behind = kept.counted_to

        # Two days on, the records are moved into daily totals: nobody's totals change.
        clock.advance(dt.timedelta(days=2).total_seconds())
        assert ours(kept) == {"ok": (2, 2, 300), "error": (1, 0, 0)}  # not read for two days: read again
        assert usage.rollup(db, older_than_days=1).records >= 3
        call(50)
        expected = {"ok": (3, 3, 350), "error": (1, 0, 0)}
        assert ours(kept) == expected and kept.counted_to == behind  # its kept sums stand; the new call is fresh
        assert ours(RunningTotals()) == expected  # read afresh: the daily totals and the one record left
        clock.advance(RunningTotals.REREAD_S + 1)
        assert ours(kept) == expected  # read after more than an hour: everything again, the same
    finally:
        clock.offset_s = 0.0


def test_a_usage_record_that_commits_after_a_newer_one_is_still_counted(new_postgres_database):
    """On PostgreSQL a usage record's id is taken when it is written, so one whose transaction commits
    late becomes visible after a record with a larger id: the cursor must not have passed it."""
    import sqlalchemy as sa

    from flashbulb.store import db as store
    from flashbulb.store.tables import UsageRecord, utcnow

    db = store.connect(new_postgres_database())
    store.migrate(db)
    made = accounts.create_key(db, "late", credits_micros=10_000_000)
    reader = RunningTotals()
    try:
        reader.read(db)
        with db.connect() as slow:
            late = slow.begin()  # a settlement still committing: its id is taken, its row not yet visible
            row = {"request_id": "late", "account_id": made.account_id, "key_id": made.key_id, "model": "m", "status": "ok"}
            slow.execute(sa.insert(UsageRecord).values(**row, output_images=1, charge_micros=7, quality={}, created_at=utcnow()))
            ledger.hold(
                db, request_id="newer", account_id=made.account_id, key_id=made.key_id, model="m", amount_micros=10, ttl_s=60
            )
            ledger.close_hold(db, "newer", 5, ledger.Usage(status="ok", output_images=1))
            clock.advance(RunningTotals.SETTLED_S + 1)
            assert reader.read(db)[("m", "ok")].charge_micros == 5  # the newer one only
            late.commit()
        for _ in range(2):  # the cursor moves past both, a minute apart
            clock.advance(RunningTotals.SETTLED_S + 1)
            assert reader.read(db)[("m", "ok")].charge_micros == 12
        assert RunningTotals().read(db)[("m", "ok")].charge_micros == 12  # a reader starting now agrees
    finally:
        clock.offset_s = 0.0
        db.dispose()

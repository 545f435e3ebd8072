"""Money: exactly-once charges under concurrency, crashes, timeouts and disconnects, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import astronaut, gemini_body, http, png_bytes, start_server, wait_for
from sqlalchemy import func, select

from flashbulb.store import db as store
from flashbulb.store.tables import Account, Hold, IdempotentCall, LedgerEntry, UsageRecord

PRICE = 2_000  # flashbulb-photo, micro-USD per image


def body(size: int, text: str = "upscale 2x") -> dict:
    return gemini_body(png_bytes(astronaut(size)), text)


def account_state(server, name: str) -> dict:
    """Read the books straight from the database the server uses."""
    database = store.connect(server.database_url)
    try:
        with database.connect() as conn:
            account = conn.execute(select(Account).where(Account.name == name)).one()
            return {
                "balance": account.balance_micros,
                "held": account.held_micros,
                "ledger_sum": conn.execute(
                    select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(LedgerEntry.account_id == account.id)
                ).scalar(),
                "open_holds": conn.execute(
                    select(func.count()).select_from(Hold).where(Hold.account_id == account.id, Hold.state == "held")
                ).scalar(),
                "usage": [
                    (r.status, r.charge_micros, r.output_images)
                    for r in conn.execute(select(UsageRecord).where(UsageRecord.account_id == account.id)).all()
                ],
                "charges": conn.execute(
                    select(func.count())
                    .select_from(LedgerEntry)
                    .where(LedgerEntry.account_id == account.id, LedgerEntry.kind == "charge")
                ).scalar(),
            }
    finally:
        database.dispose()


def test_credits_for_n_images_hit_by_4n_concurrent_requests_buy_exactly_n(any_db_server):
    server = any_db_server
    n = 3
    name = f"race-{uuid.uuid4().hex[:6]}"
    key = server.create_key(f"{n * PRICE / 1e6:.6f}", name=name)
    payload = body(24)
    with ThreadPoolExecutor(max_workers=4 * n) as pool:
        responses = list(pool.map(lambda _: server.generate(key, payload), range(4 * n)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == n, codes
    assert set(codes) == {200, 429}, codes
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    state = account_state(server, name)
    assert state["balance"] == 0 and state["held"] == 0 and state["open_holds"] == 0
    assert state["ledger_sum"] == state["balance"]
    assert state["charges"] == n
    assert sum(charge for _, charge, _ in state["usage"]) == n * PRICE  # = the balance drop
    assert [u for u in state["usage"] if u[0] == "ok"] == [("ok", PRICE, 1)] * n


def test_usage_cli_shows_the_charge_while_the_server_runs(any_db_server):
    server = any_db_server
    name = f"cli-{uuid.uuid4().hex[:6]}"
    key = server.create_key("1", name=name)
    assert server.generate(key, body(16)).status_code == 200
    report = json.loads(server.cli("usage", "--json").stdout)
    mine = [r for r in report["records"] if r["account"] == name]
    assert [(r["status"], r["charge_micros"], r["output_images"]) for r in mine] == [("ok", PRICE, 1)]
    assert {"account": name, "model": "flashbulb-photo", "calls": 1, "images": 1, "charge_micros": PRICE} in report["totals"]
    assert server.cli("credits", "add", name, "2.5").stdout.strip() == f"{name}: balance 3.498000 USD"
    listing = json.loads(server.cli("keys", "list", "--json").stdout)
    assert any(k["account"] == name and k["balance_micros"] == 3_498_000 for k in listing)
    assert key not in json.dumps(listing)  # keys are never shown again


def test_client_disconnect_releases_the_hold_and_charges_nothing(server):
    name = f"gone-{uuid.uuid4().hex[:6]}"
    key = server.create_key("1", name=name)
    with pytest.raises(httpx.ReadTimeout):
        server.generate(key, body(192, "restore"), timeout=1.5)  # ~6 s of work; we hang up after 1.5 s
    wait_for(lambda: account_state(server, name)["open_holds"] == 0, what="the hold to be released")
    state = account_state(server, name)
    assert state["balance"] == 1_000_000 and state["held"] == 0
    assert state["usage"] == [("cancelled", 0, 0)]


def test_a_caller_gone_while_its_hold_is_written_leaves_no_hold(tmp_path):
    """The hold is written in a thread, which a cancelled request can't stop: the gateway waits for
    it and releases the credit at once instead of leaving it held until the hold expires."""
    import asyncio
    import sqlite3

    from flashbulb.api.app import build_gateway
    from flashbulb.billing import ledger
    from flashbulb.config import Settings
    from flashbulb.engine.types import Caller, ImageRequest
    from flashbulb.gateway import accounts

    settings = Settings.load(tmp_path)
    gateway = build_gateway(settings)
    new = accounts.create_key(gateway.db, "gone", credits_micros=1_000_000)
    caller = Caller(account_id=new.account_id, account_name="gone", key_id=new.key_id, is_admin=False)
    request = ImageRequest(request_id="gone-1", model="flashbulb-photo", prompt="x", images=[astronaut(8)], caller=caller)
    writer = sqlite3.connect(tmp_path / "flashbulb.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the database is busy: the hold waits for it

    async def leave_while_holding() -> None:
        reserving = asyncio.create_task(gateway.reserve(request))
        await asyncio.sleep(0.5)
        reserving.cancel()  # what a client hanging up does to its request
        await asyncio.sleep(0.2)
        writer.execute("ROLLBACK")  # the hold can now be written, after its caller is gone
        with pytest.raises(asyncio.CancelledError):
            await reserving

    try:
        asyncio.run(leave_while_holding())
        with gateway.db.connect() as conn:
            holds = conn.execute(select(Hold.state)).scalars().all()
            usage = conn.execute(select(UsageRecord.status, UsageRecord.charge_micros)).all()
        assert holds == ["released"] and [tuple(u) for u in usage] == [("cancelled", 0)]
        assert ledger.balance(gateway.db, new.account_id) == (1_000_000, 0)
    finally:
        writer.close()
        gateway.engine.close()
        gateway.db.dispose()


def test_an_idempotency_key_runs_a_call_once_and_replays_its_answer(any_db_server):
    server = any_db_server
    name = f"retry-{uuid.uuid4().hex[:6]}"
    key = server.create_key("1", name=name)
    order = {"idempotency-key": f"order-{uuid.uuid4().hex[:6]}"}
    payload = body(64, "restore")  # about a second of work: the copies arrive while it runs
    barrier = threading.Barrier(4)

    def send(_: int) -> httpx.Response:
        barrier.wait()
        return server.generate(key, payload, headers=order)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, range(4)))
    ran = [a for a in answers if a.status_code == 200 and "idempotent-replayed" not in a.headers]
    assert len(ran) == 1 and all(a.status_code in (200, 409) for a in answers), [a.status_code for a in answers]
    running = next((a for a in answers if a.status_code == 409), None)
    if running is not None:
        assert "still running" in running.json()["error"]["message"] and running.headers["retry-after"] == "5"
    # A retry gets the very same answer (same request id, same image), marked as replayed.
    again = server.generate(key, payload, headers=order)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.content == ran[0].content
    state = account_state(server, name)
    assert state["charges"] == 1 and state["balance"] == 1_000_000 - PRICE and len(state["usage"]) == 1
    # The same key for a different request is a mistake worth a clear 400.
    other = server.generate(key, body(16), headers=order)
    assert other.status_code == 400 and "different request" in other.json()["error"]["message"]
    # Keys belong to one API key: another key's call with the same Idempotency-Key runs on its own.
    assert "idempotent-replayed" not in server.generate(server.create_key("1"), payload, headers=order).headers


def test_a_minted_secret_is_never_stored_in_the_clear_and_a_revoked_key_gets_no_replay(any_db_server):
    server = any_db_server
    admin = {"x-goog-api-key": server.admin_key, "idempotency-key": f"mint-{uuid.uuid4().hex[:6]}"}
    order = {"account": f"secret-{uuid.uuid4().hex[:6]}", "credits_usd": "1"}
    minted = http.post(f"{server.base_url}/admin/keys", headers=admin, json=order)
    assert minted.status_code == 200, minted.text
    new_key = minted.json()["key"]
    again = http.post(f"{server.base_url}/admin/keys", headers=admin, json=order)  # a retry gets the same key
    assert again.headers["idempotent-replayed"] == "true" and again.json()["key"] == new_key
    database = store.connect(server.database_url)
    try:
        with database.connect() as conn:
            kept = b"".join(body or b"" for body in conn.execute(select(IdempotentCall.body)).scalars())
    finally:
        database.dispose()
    assert kept and new_key.encode() not in kept
    # The new key makes a call with an Idempotency-Key, is revoked, and retries: refused, not replayed.
    call = {"idempotency-key": f"call-{uuid.uuid4().hex[:6]}"}
    assert server.generate(new_key, body(16), headers=call).status_code == 200
    key_id = next(
        k["key_id"]
        for k in http.get(f"{server.base_url}/admin/keys", headers=admin).json()["keys"]
        if k["account"] == order["account"]
    )
    assert (
        http.post(f"{server.base_url}/admin/keys/{key_id}/revoke", headers={"x-goog-api-key": server.admin_key}).status_code
        == 200
    )
    retried = server.generate(new_key, body(16), headers=call)
    assert retried.status_code in (400, 401, 403) and "idempotent-replayed" not in retried.headers, retried.text
    # A key sent as ?key= never reaches the access log.
    http.get(f"{server.base_url}/v1beta/models", params={"key": new_key})
    assert new_key not in server.log_path.read_text()


def test_a_call_that_failed_runs_again_when_retried_with_its_idempotency_key(server):
    name = f"broke-{uuid.uuid4().hex[:6]}"
    key = server.create_key("0", name=name)
    order = {"idempotency-key": "order-7"}
    refused = server.generate(key, body(16), headers=order)
    assert refused.status_code == 429  # out of credits: nothing charged, so the key is free again
    server.cli("credits", "add", name, "1")
    retried = server.generate(key, body(16), headers=order)
    assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers
    assert account_state(server, name)["charges"] == 1


def test_an_idempotency_claim_left_by_a_crash_is_taken_over_once_its_lease_ends(tmp_path):
    from flashbulb.api.idempotency import Idempotency, _open, _sealer, sweep_expired

    database = store.connect(f"sqlite:///{tmp_path / 'i.db'}")
    store.migrate(database)
    crashed = Idempotency(None, database, ttl_s=60, run_lease_s=0.2)  # its run never finishes
    assert crashed._claim("k", "same call", "run-1") is None
    assert crashed._claim("k", "same call", "run-2").state == "running"  # still leased: a retry gets 409
    time.sleep(0.3)
    assert crashed._claim("k", "same call", "run-3") is None  # the lease is over: this run takes it
    sealer = _sealer("fb-key", "order-1")
    crashed._finish("k", "run-1", {"status": 200, "headers": [], "chunks": [b"late"]}, sealer)  # the lost run can't store
    crashed._finish("k", "run-3", {"status": 200, "headers": [(b"content-type", b"application/json")], "chunks": [b"{}"]}, sealer)
    assert _open(sealer, crashed._claim("k", "same call", "run-4").body) == b"{}"
    assert sweep_expired(database) == 0
    Idempotency(None, database, ttl_s=0, run_lease_s=60)._finish(
        "k", "run-3", {"status": 200, "headers": [], "chunks": []}, sealer
    )
    assert sweep_expired(database) == 1
    database.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_crash_leaves_no_stuck_hold_and_a_timeout_charges_nothing(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'flashbulb.db'}" if backend == "sqlite" else request.getfixturevalue("new_postgres_database")()
    config = "[limits]\nhold_ttl_s = 3\nhold_sweep_interval_s = 0.5\nrequest_timeout_s = 2\n"
    server = start_server(tmp_path, url, config)
    name = f"crash-{uuid.uuid4().hex[:6]}"
    try:
        key = server.create_key("1", name=name)
        # A request that outlives request_timeout_s: 504, hold released, no charge.
        timed_out = server.generate(key, body(256, "restore"))
        assert timed_out.status_code == 504 and timed_out.json()["error"]["status"] == "DEADLINE_EXCEEDED"
        assert account_state(server, name)["held"] == 0
        # Kill the server while a request holds credit.
        threading.Thread(target=lambda: _swallow(lambda: server.generate(key, body(256, "restore"))), daemon=True).start()
        wait_for(lambda: account_state(server, name)["open_holds"] == 1, what="a hold")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        assert account_state(server, name)["held"] > 0  # the crash left the hold behind
    finally:
        server.stop()
    restarted = start_server(tmp_path, url, config, admin_key=server.admin_key)
    try:
        wait_for(lambda: account_state(restarted, name)["open_holds"] == 0, what="the expired hold to be released")
        state = account_state(restarted, name)
        assert state["balance"] == 1_000_000 and state["held"] == 0 and state["charges"] == 0
        assert sorted(u[0] for u in state["usage"]) == ["error", "expired"]
        assert restarted.generate(key, body(16)).status_code == 200  # and it keeps serving
    finally:
        restarted.stop()


def _swallow(call) -> None:
    try:
        call()
    except httpx.HTTPError:
        pass


def test_a_pooled_connection_the_database_dropped_while_idle_is_replaced_before_it_is_used(new_postgres_database):
    """store.db pings a pooled connection idle for over PING_IDLE_S before handing it out (not every
    one: that was a round trip per transaction): one the database dropped meanwhile (a restart, a
    failover, an idle timeout) is replaced, and the statement never sees it."""
    import sqlalchemy as sa

    url = new_postgres_database()
    db = store.connect(url)
    admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    try:
        with db.connect() as conn:  # back in the pool afterwards
            dropped = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped}).scalar()
        time.sleep(store.PING_IDLE_S + 0.2)
        with db.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != dropped
    finally:
        db.dispose()
        admin.dispose()


def test_a_database_outage_is_a_503_that_costs_nothing_and_its_holds_are_released_when_it_is_back(
    new_postgres_database, tmp_path
):
    import sqlalchemy as sa

    url = new_postgres_database()
    name = url.rsplit("/", 1)[1]
    unlimited = "[rate_limits]\nkey_rpm = 0\nkey_concurrent = 0\naccount_rpm = 0\naccount_concurrent = 0\n"
    server = start_server(tmp_path, url, config=unlimited)
    admin = sa.create_engine(
        url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/postgres", isolation_level="AUTOCOMMIT"
    )
    try:
        key = server.create_key("10")
        answers: list[httpx.Response] = []
        until = time.monotonic() + 10

        def call_repeatedly() -> None:
            while time.monotonic() < until:
                answers.append(server.generate(key, body(32, "make it brighter"), timeout=60))

        callers = [threading.Thread(target=call_repeatedly) for _ in range(4)]
        for caller in callers:
            caller.start()
        time.sleep(3)
        # The database goes away for 3 s, as in a restart: every connection dropped, none accepted.
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
            time.sleep(3)
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        for caller in callers:
            caller.join()
        codes = [a.status_code for a in answers]
        assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
        assert all(a.headers.get("retry-after") for a in answers if a.status_code == 503)
        paid = codes.count(200)

        def books() -> dict:
            return http.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()

        wait_for(lambda: books()["held_micros"] == 0, timeout=20, what="the outage's holds to be released")
        assert books()["balance_micros"] == 10_000_000 - PRICE * paid  # exactly the answers given
        assert server.generate(key, body(16)).status_code == 200
    finally:
        server.stop()
        admin.dispose()

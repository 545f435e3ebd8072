"""Rate limits against live servers: requests per minute and requests in flight, per key and per
account; 429 with Retry-After in the caller's wire format, never charged; slots given back however a
call ends; shared through Redis by two servers on one database; batch items exempt."""

from __future__ import annotations

import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from conftest import SLOW_MODEL, astronaut, gemini_body, http, png_bytes, start_server, wait_for
from sqlalchemy import func, select

from flashbulb.store import db as store
from flashbulb.store.tables import Hold, UsageRecord

REDIS_URL = os.environ.get("FLASHBULB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PRICE = 2_000  # flashbulb-photo, micro-USD per image
CHEAP = "make it brighter"  # the quickest flashbulb-photo edit


def cheap() -> dict:
    return gemini_body(png_bytes(astronaut(16)), CHEAP)


# A model whose calls stay in flight for as long as its prompt says (tests/fault_backends.py),
# priced as flashbulb-photo: what is limited is calls in flight, whatever model runs them.


def slow() -> dict:
    return gemini_body(png_bytes(astronaut(16)), "sleep 2")  # call with model="slow"


def account(server, key: str) -> dict:
    return http.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}, timeout=30).json()


def records(server, name: str) -> list[str]:
    database = store.connect(server.database_url)
    try:
        with database.connect() as conn:
            from flashbulb.store.tables import Account

            account_id = conn.execute(select(Account.id).where(Account.name == name)).scalar_one()
            return list(conn.execute(select(UsageRecord.status).where(UsageRecord.account_id == account_id)).scalars())
    finally:
        database.dispose()


def open_holds(server) -> int:
    database = store.connect(server.database_url)
    try:
        with database.connect() as conn:
            return conn.execute(select(func.count()).select_from(Hold).where(Hold.state == "held")).scalar()
    finally:
        database.dispose()


def assert_gemini_rate_limited(response: httpx.Response, words: str) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == 429 and error["status"] == "RESOURCE_EXHAUSTED", error
    assert error["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    assert words in error["message"], error["message"]
    assert 1 <= int(response.headers["retry-after"]) <= 60


@pytest.fixture(scope="module")
def rpm_server(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("rpm")
    config = "[rate_limits]\nkey_rpm = 2\naccount_rpm = 3\nkey_concurrent = 0\naccount_concurrent = 0\n"
    server = start_server(data_dir, f"sqlite:///{data_dir / 'f.db'}", config)
    yield server
    server.stop()


def test_requests_per_minute_per_key_then_per_account_are_429_in_gemini_shape_and_not_charged(rpm_server):
    server = rpm_server
    name = f"rpm-{uuid.uuid4().hex[:6]}"
    first = server.create_key("1", name=name)
    assert [server.generate(first, cheap()).status_code for _ in range(2)] == [200, 200]
    refused = server.generate(first, cheap())
    assert_gemini_rate_limited(refused, "this API key: 2 requests per minute")
    # A second key of the same account has its own per-key allowance, but the account's (3) is shared.
    second = server.create_key("0", name=name)
    assert server.generate(second, cheap()).status_code == 200
    assert_gemini_rate_limited(server.generate(second, cheap()), "this account: 3 requests per minute")
    mine = account(server, first)
    assert mine["balance_micros"] == 1_000_000 - 3 * PRICE and mine["held_micros"] == 0
    assert records(server, name) == ["ok"] * 3  # refused calls leave no hold and no usage record
    # Another account is not affected.
    assert server.generate(server.create_key("1"), cheap()).status_code == 200


def test_the_openai_sdk_gets_a_rate_limit_error_with_retry_after(rpm_server):
    server = rpm_server
    key = server.create_key("1")
    client = openai.OpenAI(api_key=key, base_url=f"{server.base_url}/v1", max_retries=0, timeout=60)
    image = ("photo.png", png_bytes(astronaut(16)), "image/png")
    for _ in range(2):
        client.images.edit(image=image, prompt="upscale 2x", model="flashbulb-photo")
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.edit(image=image, prompt="upscale 2x", model="flashbulb-photo")
    error = caught.value
    assert error.status_code == 429 and 1 <= int(error.response.headers["retry-after"]) <= 60
    assert error.body["type"] == "requests" and error.body["code"] == "rate_limit_exceeded"
    assert "requests per minute" in error.body["message"]
    assert account(server, key)["balance_micros"] == 1_000_000 - 2 * PRICE


def test_batch_items_are_not_rate_limited_as_live_calls(rpm_server):
    server = rpm_server
    key = server.create_key("1")
    client = server.genai(key)
    image = png_bytes(astronaut(16))
    src = [{"contents": gemini_body(image, CHEAP)["contents"]} for _ in range(5)]  # more than key_rpm and account_rpm
    job = client.batches.create(model="flashbulb-photo", src=src)
    deadline = time.time() + 60
    while not job.done:
        assert time.time() < deadline, job.state
        time.sleep(0.25)
        job = client.batches.get(name=job.name)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    assert all(r.error is None for r in job.dest.inlined_responses)
    # ... and they did not use up the key's live allowance either.
    assert [server.generate(key, cheap()).status_code for _ in range(2)] == [200, 200]


@pytest.fixture(scope="module")
def concurrency_server(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("concurrent")
    config = "[rate_limits]\nkey_rpm = 0\naccount_rpm = 0\nkey_concurrent = 1\naccount_concurrent = 2\n" + SLOW_MODEL
    server = start_server(data_dir, f"sqlite:///{data_dir / 'f.db'}", config)
    yield server
    server.stop()


def test_requests_in_flight_over_the_limit_are_refused_and_not_charged(concurrency_server):
    server = concurrency_server
    key = server.create_key("10")
    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: server.generate(key, slow(), model="slow"), range(3)))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 429 in codes, codes
    for refused in (r for r in responses if r.status_code == 429):
        assert_gemini_rate_limited(refused, "in flight for this API key")
    assert account(server, key)["balance_micros"] == 10_000_000 - PRICE * codes.count(200)
    # The slots came back: the next calls run.
    assert server.generate(key, cheap()).status_code == 200


def test_the_account_limit_counts_every_key_of_the_account(concurrency_server):
    server = concurrency_server
    name = f"acct-{uuid.uuid4().hex[:6]}"
    keys = [server.create_key("10", name=name) for _ in range(3)]  # each key may have 1; the account 2
    started = threading.Barrier(3)

    def call(key: str) -> httpx.Response:
        started.wait()
        return server.generate(key, slow(), model="slow")

    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(call, keys))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(429) >= 1 and 200 in codes, codes
    assert any("in flight for this account" in r.json()["error"]["message"] for r in responses if r.status_code == 429)


def test_slots_are_given_back_after_errors_and_disconnects(concurrency_server):
    server = concurrency_server
    name = f"broke-{uuid.uuid4().hex[:6]}"
    key = server.create_key("0", name=name)
    for _ in range(3):  # refused after the slot was taken (no credit for the hold): the slot must come back
        broke = server.generate(key, cheap())
        assert broke.status_code == 429 and "credits" in broke.json()["error"]["message"]
    server.cli("credits", "add", name, "1")
    assert server.generate(key, cheap()).status_code == 200
    # The client hangs up in the middle of a slow call: the call is cancelled and its slot freed.
    for _ in range(2):
        with pytest.raises(httpx.ReadTimeout):
            server.generate(key, slow(), model="slow", timeout=1.0)
        wait_for(lambda: open_holds(server) == 0, what="the hold of the abandoned call to be released")
    assert server.generate(key, cheap()).status_code == 200
    assert sorted(records(server, name)) == ["cancelled", "cancelled", "ok", "ok"]


# ---- shared through Redis ----


def redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError as exc:
        if os.environ.get("FLASHBULB_REQUIRE_REDIS"):
            pytest.fail(f"Redis is required (FLASHBULB_REQUIRE_REDIS) but {REDIS_URL} does not answer: {exc}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL} ({exc}); .ci/run starts one")


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory):
    """Two servers on one database and one Redis, under a key prefix of this module's own (each
    test uses its own key, so the per-key limits of one don't reach the other)."""
    tmp_path = tmp_path_factory.mktemp("two-servers")
    redis_or_skip()
    prefix = f"fbtest-{uuid.uuid4().hex[:8]}"
    config = (
        f"[rate_limits]\nkey_rpm = 3\naccount_rpm = 0\nkey_concurrent = 1\naccount_concurrent = 0\n"
        f'redis_url = "{REDIS_URL}"\nredis_prefix = "{prefix}"\n' + SLOW_MODEL
    )
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = start_server(tmp_path / "a", url, config)
    second = start_server(tmp_path / "b", url, config, admin_key=first.admin_key)
    yield first, second
    first.stop()
    second.stop()
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for stale in client.scan_iter(f"{prefix}:*"):
        client.delete(stale)


def test_redis_shares_requests_per_minute_between_two_servers(two_servers):
    a, b = two_servers
    key = a.create_key("1")
    assert a.generate(key, cheap()).status_code == 200
    assert a.generate(key, cheap()).status_code == 200
    assert b.generate(key, cheap()).status_code == 200
    assert_gemini_rate_limited(b.generate(key, cheap()), "3 requests per minute")
    assert_gemini_rate_limited(a.generate(key, cheap()), "3 requests per minute")
    assert account(a, key)["balance_micros"] == 1_000_000 - 3 * PRICE


def test_redis_shares_requests_in_flight_between_two_servers(two_servers):
    a, b = two_servers
    key = a.create_key("1")
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(a.generate, key, slow(), model="slow")
        wait_for(lambda: open_holds(a) == 1, what="the slow call to start on the first server")
        assert_gemini_rate_limited(b.generate(key, cheap()), "in flight for this API key")
        assert busy.result().status_code == 200
    assert b.generate(key, cheap()).status_code == 200  # the first server gave its slot back

"""Models out of the API process: a worker that dies (SIGKILL, a native abort) costs only the calls it
was running (503 with Retry-After, nothing charged, the hold released at once), the API server keeps
answering, the worker comes back, and a request that killed two workers is refused from then on."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import astronaut, gemini_body, http, png_bytes, start_server, wait_for

CONFIG = """
[diffusion]
warm_models = ["flashbulb-photo", "faulty"]

[models.faulty]
backend = "fault_backends:FaultBackend"
price_usd = "0.01"

[models.broken]
backend = "fault_backends:BrokenBackend"
price_usd = "0.01"

[rate_limits]
key_rpm = 0
key_concurrent = 0
account_rpm = 0
account_concurrent = 0
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("scale-out")
    srv = start_server(data_dir, f"sqlite:///{data_dir / 'flashbulb.db'}", config=CONFIG)
    yield srv
    srv.stop()


def ask(server, key: str, prompt: str, timeout: float = 60) -> httpx.Response:
    return server.generate(key, {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}, model="faulty", timeout=timeout)


def account(server, key: str) -> dict:
    return http.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()


def assert_unavailable_and_free(response: httpx.Response, server, key: str) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["status"] == "UNAVAILABLE" and "not charged" in error["message"], error
    assert int(response.headers["retry-after"]) > 0
    money = account(server, key)
    assert money["balance_micros"] == 1_000_000 and money["held_micros"] == 0, money  # released at once, not at expiry


def test_each_answer_names_its_replica_and_the_usage_record_keeps_it(server):
    key = server.create_key("1")
    body = ask(server, key, "hello").json()
    replica = body["flashbulb"]["replica"]
    assert replica["id"] == "faulty/0" and replica["host"] and replica["pid"] != server.process.pid
    usage = http.get(f"{server.base_url}/flashbulb/account/usage", headers={"x-goog-api-key": key}).json()
    assert usage["records"][0]["replica"] == replica
    photo = server.generate(key, gemini_body(png_bytes(astronaut(32)), "make it brighter")).json()
    assert photo["flashbulb"]["replica"]["pid"] not in (server.process.pid, replica["pid"])


def test_a_worker_killed_mid_call_fails_only_that_call_for_free_and_comes_back(server):
    key = server.create_key("1")
    old_pid = ask(server, key, "hello").json()["flashbulb"]["replica"]["pid"]
    key = server.create_key("1")  # a fresh balance to check: nothing charged, nothing left held
    slow: dict[str, httpx.Response] = {}
    caller = threading.Thread(target=lambda: slow.setdefault("r", ask(server, key, "sleep 20")))
    caller.start()
    time.sleep(1.5)  # the slow call is running in the worker now
    os.kill(old_pid, signal.SIGKILL)
    # Meanwhile the API answers: another model's call and the health check.
    assert http.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
    caller.join(30)
    assert_unavailable_and_free(slow["r"], server, key)
    assert "SIGKILL" in slow["r"].json()["error"]["message"]
    assert server.process.poll() is None
    again = ask(server, key, "hello")
    assert again.status_code == 200, again.text
    assert again.json()["flashbulb"]["replica"]["pid"] != old_pid


def test_a_photo_worker_killed_while_idle_is_replaced_before_the_next_call(server):
    key = server.create_key("1")
    first = server.generate(key, gemini_body(png_bytes(astronaut(32)), "make it brighter"))
    pid = first.json()["flashbulb"]["replica"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: not os.path.exists(f"/proc/{pid}") or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z",
        10,
        "the worker to die",
    )
    second = server.generate(key, gemini_body(png_bytes(astronaut(32)), "make it brighter"))
    assert second.status_code == 200, second.text  # nobody pays for a death nobody was running on
    assert second.json()["flashbulb"]["replica"]["pid"] != pid


def test_a_native_crash_is_contained_and_the_third_identical_request_is_refused_at_once(server):
    key = server.create_key("1")
    for _ in range(2):
        assert_unavailable_and_free(ask(server, key, "abort now"), server, key)
        assert server.process.poll() is None
    started = time.monotonic()
    third = ask(server, key, "abort now")
    assert third.status_code == 400, third.text
    assert "stopped the faulty worker 2 times" in third.json()["error"]["message"]
    assert time.monotonic() - started < 2  # refused before it reaches a worker
    assert account(server, key)["balance_micros"] == 1_000_000
    # OpenAI callers get their shape for the same refusal.
    openai_shape = http.post(
        f"{server.base_url}/v1/images/generations",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "faulty", "prompt": "abort now"},
        timeout=30,
    )
    assert openai_shape.status_code == 400 and openai_shape.json()["error"]["code"] == "poison_request", openai_shape.text
    # Other requests are still served.
    assert ask(server, key, "hello").status_code == 200


def test_a_request_that_killed_workers_behind_one_server_is_refused_by_every_server_on_the_database(
    tmp_path, new_postgres_database
):
    """Each server kept its own count, so with N servers a poison request could kill 2N workers."""
    from sqlalchemy import select

    from flashbulb.store import db as store
    from flashbulb.store.tables import PoisonRequest

    url = new_postgres_database()
    config = CONFIG + "\n[limits]\nhold_sweep_interval_s = 1\n"
    a = start_server(tmp_path / "a", url, config=config)
    b = start_server(tmp_path / "b", url, config=config, admin_key=a.admin_key)
    database = store.connect(url)
    try:
        key, other = a.create_key("1"), a.create_key("1")
        b_worker = ask(b, other, "hello").json()["flashbulb"]["replica"]["pid"]
        for _ in range(2):
            assert_unavailable_and_free(ask(a, key, "abort behind a"), a, key)
        with database.connect() as conn:
            assert conn.execute(select(PoisonRequest.crashes, PoisonRequest.model)).one() == (2, "faulty")
        time.sleep(3)  # B's sweep (every second here) has taken the shared count
        refused = ask(b, key, "abort behind a")
        assert refused.status_code == 400 and "stopped the faulty worker 2 times" in refused.text, refused.text
        assert ask(b, other, "hello").json()["flashbulb"]["replica"]["pid"] == b_worker  # no worker of B's died for it
        assert account(b, key)["balance_micros"] == 1_000_000  # none of the three was charged
    finally:
        database.dispose()
        a.stop()
        b.stop()


def test_an_answer_that_cannot_be_built_is_not_charged(server):
    key = server.create_key("1")
    for call in (
        lambda: ask(server, key, "unanswerable"),
        lambda: http.post(
            f"{server.base_url}/v1/images/generations",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "faulty", "prompt": "unanswerable"},
            timeout=30,
        ),
    ):
        response = call()
        assert response.status_code == 500, response.text
        assert "error" in response.json()
        money = account(server, key)
        assert money["balance_micros"] == 1_000_000 and money["held_micros"] == 0, money
    usage = http.get(f"{server.base_url}/flashbulb/account/usage", headers={"x-goog-api-key": key}).json()
    assert [r["status"] for r in usage["records"]] == ["error", "error"]


def test_a_measurement_that_is_not_a_number_is_written_as_null(server):
    key = server.create_key("1")
    answer = ask(server, key, "nan")
    assert answer.status_code == 200, answer.text
    quality = answer.json()["flashbulb"]["quality"]
    assert quality["noise"] is None and quality["scores"] == [None, 1.0]
    usage = http.get(f"{server.base_url}/flashbulb/account/usage", headers={"x-goog-api-key": key})
    assert usage.status_code == 200 and usage.json()["records"][0]["quality"]["noise"] is None


def test_one_accounts_flood_does_not_starve_another_account(server):
    # Account A queues 12 calls of 0.3 s on the one `faulty` replica; B's single call, sent after
    # them, takes the next turn (first come, first served would put it behind all 12).
    flooder, other = server.create_key("1"), server.create_key("1")
    with ThreadPoolExecutor(12) as pool:
        flood = [pool.submit(ask, server, flooder, f"sleep 0.3 #{i}") for i in range(12)]
        wait_for(lambda: queued(server, "faulty") >= 8, what="A's backlog to queue up")
        assert ask(server, other, "hello").status_code == 200
        still_waiting = sum(not f.done() for f in flood)
        assert all(f.result().status_code == 200 for f in flood)
    assert still_waiting >= 6, f"B was answered after {12 - still_waiting} of A's 12 calls"


def queued(server, model: str) -> int:
    metrics = http.get(f"{server.base_url}/metrics").text
    line = next(
        (row for row in metrics.splitlines() if row.startswith("flashbulb_queue_depth") and f'model="{model}"' in row), None
    )
    return int(float(line.rsplit(" ", 1)[1])) if line else 0


def test_a_prompt_past_the_limit_is_a_400_before_any_work_or_charge(server):
    key = server.create_key("1")
    answer = ask(server, key, "brighter, " * 3_201)
    assert answer.status_code == 400 and "32,000" in answer.json()["error"]["message"]
    assert account(server, key)["balance_micros"] == 1_000_000


def test_a_model_that_cannot_start_answers_503_free_and_is_tried_again(server):
    key = server.create_key("1")
    for _ in range(2):  # each call tries the start again
        broken = server.generate(key, {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}, model="broken")
        assert_unavailable_and_free(broken, server, key)
        assert "could not start" in broken.json()["error"]["message"]
    assert ask(server, key, "hello").status_code == 200  # the other models serve meanwhile


def test_cpus_per_replica_sizes_each_local_workers_thread_pools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from flashbulb.config import Settings
    from flashbulb.engine.executors.local import LocalExecutor
    from flashbulb.engine.registry import Registry
    from flashbulb.engine.types import ImageRequest, JobContext

    settings = Settings(data_dir=tmp_path)
    settings.custom_backends["faulty"] = {"backend": "fault_backends:FaultBackend"}
    entry = Registry.default(settings).resolve("faulty")

    def worker_threads(deployment: dict) -> list[str]:
        """What each worker's OMP_NUM_THREADS is, as its backend sees it."""
        settings.deployments["faulty"] = deployment
        found = []
        for replica in LocalExecutor(settings).replicas(entry):
            replica.start()
            try:
                request = ImageRequest(request_id="threads", model="faulty", prompt="threads")
                found.append(replica.run([request], [JobContext()])[0].text.rsplit("OMP_NUM_THREADS=", 1)[1])
            finally:
                replica.close()
        return found

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # what the engine sets, not an operator (conftest sets one)
    assert worker_threads({"replicas": 2, "cpus_per_replica": 1}) == ["1", "1"]
    assert worker_threads({"replicas": 1, "cpus_per_replica": 1.5}) == ["2"]  # a fraction of a core is a whole thread
    shared = str(max(1, (os.cpu_count() or 1) // 2))
    assert worker_threads({"replicas": 2}) == [shared, shared]  # by default the replicas share the cores

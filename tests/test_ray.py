"""`[cluster] engine = "ray"`: models as Ray Serve deployments on a local Ray instance started by the
server. Calls spread over a model's replicas, a killed replica costs only its own call (503, free),
and Serve brings it back; the offline photo model and a (tiny) diffusion model both deploy; progress,
partial images and cancellation cross to the replica; an autoscaled model grows when calls wait."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import threading
import time

import httpx
import pytest
import ray.serve  # noqa: F401 - the test extra installs it: missing, this module fails rather than skips
import tiny_pipelines
from conftest import astronaut, gemini_body, http, png_bytes, start_server

from flashbulb.engine.backends.diffusion import catalog


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ray")
    weights = tiny_pipelines.build(catalog.by_name()["sd-turbo"].pipeline, root / "tiny-sd")
    config = f"""
[cluster]
engine = "ray"

[diffusion]
warm_models = ["flashbulb-photo", "tiny-sd", "faulty", "elastic"]

[models.flashbulb-photo]
replicas = 2
cpus_per_replica = 0.4

[models.tiny-sd]
like = "sd-turbo"
path = {json.dumps(str(weights))}
steps = 2
pixels = 4096
replicas = 1
cpus_per_replica = 0.4

[models.faulty]
backend = "fault_backends:FaultBackend"
replicas = 1
cpus_per_replica = 0.4

[models.elastic]
backend = "fault_backends:FaultBackend"
min_replicas = 1
max_replicas = 2
cpus_per_replica = 0.2

[rate_limits]
key_rpm = 0
key_concurrent = 0
account_rpm = 0
account_concurrent = 0
"""
    srv = start_server(root / "data", f"sqlite:///{root / 'flashbulb.db'}", config=config, ready_timeout=240)
    yield srv
    srv.stop()


def photo(server, key: str) -> httpx.Response:
    return server.generate(key, gemini_body(png_bytes(astronaut(48)), "make it brighter"))


def test_concurrent_calls_spread_over_both_photo_replicas_and_diffusion_deploys_too(server):
    key = server.create_key("5")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: photo(server, key), range(12)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    replicas = {a.json()["flashbulb"]["replica"]["id"] for a in answers}
    pids = {a.json()["flashbulb"]["replica"]["pid"] for a in answers}
    assert len(replicas) == 2 and len(pids) == 2 and server.process.pid not in pids, replicas
    # Each model's application deploys whole: serve.run from several threads at once once failed
    # replicas with "not registered for pickle by value".
    assert "failed to start" not in server.log_path.read_text()
    drawn = server.generate(key, {"contents": [{"role": "user", "parts": [{"text": "a red boat"}]}]}, model="tiny-sd")
    assert drawn.status_code == 200, drawn.text
    assert drawn.json()["flashbulb"]["replica"]["id"].startswith("tiny-sd/")


def test_a_killed_replica_costs_only_its_own_call_and_serve_brings_it_back(server):
    key = server.create_key("1")
    ask = lambda prompt: server.generate(key, {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}, model="faulty")  # noqa: E731
    old = ask("hello").json()["flashbulb"]["replica"]
    key = server.create_key("1")
    slow: dict[str, httpx.Response] = {}
    caller = threading.Thread(target=lambda: slow.setdefault("r", ask("sleep 30")))
    caller.start()
    time.sleep(2)
    os.kill(old["pid"], signal.SIGKILL)
    assert photo(server, key).status_code == 200  # the other models answer meanwhile
    caller.join(60)
    assert slow["r"].status_code == 503, slow["r"].text
    assert slow["r"].json()["error"]["status"] == "UNAVAILABLE"
    account = http.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()
    assert account["held_micros"] == 0 and account["balance_micros"] == 1_000_000 - 2_000  # only the photo call paid
    deadline = time.time() + 60
    while True:  # Serve replaces the dead replica (health checks every 2 s)
        again = ask("hello")
        if again.status_code == 200:
            break
        assert again.status_code == 503 and time.time() < deadline, again.text
        time.sleep(1)
    assert again.json()["flashbulb"]["replica"]["pid"] != old["pid"]
    assert server.process.poll() is None


def sse_chunks(server, key: str, model: str, body: dict, *, first_only: bool = False) -> list[dict]:
    url = f"{server.base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse"
    chunks = []
    with http.stream("POST", url, json=body, headers={"x-goog-api-key": key, "x-flashbulb-progress": "1"}, timeout=90) as got:
        assert got.status_code == 200, got.read()
        for line in got.iter_lines():
            if line.startswith("data:"):
                chunks.append(json.loads(line[5:]))
                if first_only:
                    break  # the caller goes away: the connection closes here
    return chunks


def test_progress_and_partial_images_cross_from_the_replica_and_a_cancel_stops_it_at_its_next_step(server):
    key = server.create_key("1")
    say = lambda prompt: {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}  # noqa: E731
    *progress, answer = sse_chunks(server, key, "faulty", say("sleep 1.5"))
    fractions = [c["flashbulb"]["progress"] for c in progress]
    assert len(fractions) >= 5 and fractions == sorted(fractions) and fractions[0] < 0.5 < fractions[-1], fractions
    assert answer["candidates"][0]["finishReason"] == "STOP"

    # Partial images: the photo engine's first stage, from a replica (2 replicas, either one).
    import openai

    client = openai.OpenAI(api_key=key, base_url=f"{server.base_url}/v1", max_retries=0, timeout=90)
    events = list(
        client.images.edit(
            model="flashbulb-photo",
            image=("photo.png", png_bytes(astronaut(128)), "image/png"),
            prompt="make it brighter, then make it black and white",
            stream=True,
            partial_images=1,
        )
    )
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]

    # The caller of a 30 s call leaves at its first progress chunk. The one replica of `faulty` is
    # free again at once, not in 30 s (its backend stopped at its next step), and nothing was charged.
    assert "progress" in sse_chunks(server, key, "faulty", say("sleep 30"), first_only=True)[0]["flashbulb"]
    started = time.monotonic()
    again = server.generate(key, say("hello"), model="faulty")
    waited = time.monotonic() - started
    records = http.get(f"{server.base_url}/flashbulb/account/usage", headers={"x-goog-api-key": key}).json()["records"]
    assert again.status_code == 200 and waited < 10, (again.text, waited)  # 28 s when the cancel stayed in the API process
    cancelled = [r for r in records if r["status"] == "cancelled"]
    assert len(cancelled) == 1 and cancelled[0]["charge_micros"] == 0


def test_an_autoscaled_model_adds_a_replica_when_calls_wait(server):
    """min_replicas = 1, max_replicas = 2: Serve starts with one and adds the second once calls have
    waited (2 s); slow calls keep coming until they end up on two replicas. (It failed 3 runs in 9
    when Serve's metrics missed the waiting calls: no upscale at all. With the upscale fixed, the new
    replica once took 9.5 s to start beside another test worker, longer than four 3 s calls.)"""
    key = server.create_key("5")
    say = {"contents": [{"role": "user", "parts": [{"text": "sleep 3"}]}]}
    replicas: set[str] = set()
    deadline = time.monotonic() + 90  # an upper bound for a busy box, not a timing
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        while len(replicas) < 2 and time.monotonic() < deadline:
            answers = list(pool.map(lambda _: server.generate(key, say, model="elastic", timeout=120), range(4)))
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
            replicas |= {a.json()["flashbulb"]["replica"]["id"] for a in answers}
    assert len(replicas) == 2, replicas

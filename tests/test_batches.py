"""Batch jobs and the Files API through the unchanged google-genai SDK (and raw HTTP, and the CLI)
against live servers: inline and file batches, per-item errors in input order, cancel, other
accounts' 404s, the batch discount, and a batch that survives two SIGKILLs with every item run
and charged exactly once (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import collections
import datetime as dt
import hashlib
import io
import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import FLASHBULB, actions_of, astronaut, gemini_body, http, png_bytes, read_manifest, start_server, wait_for
from PIL import Image
from sqlalchemy import func, select, update
from test_money import account_state

from flashbulb.config import Settings
from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.gateway import accounts
from flashbulb.jobs import queue
from flashbulb.jobs.files import FileStore
from flashbulb.store import blobs
from flashbulb.store import db as store
from flashbulb.store.tables import Account, BatchItem, BatchJob, Hold, LedgerEntry, UsageRecord

PRICE = 2_000  # flashbulb-photo, micro-USD per image
BATCH_PRICE = PRICE // 2  # the default 50% batch discount
CHEAP = "make it brighter"  # the quickest flashbulb-photo edit (~40 ms on a 16x16 image): most of it is the checks
KILL_TEST_ITEMS = (
    120  # 4 run at once (`[batch] max_in_flight`), so each SIGKILL lands mid-item; 300 added ~40 s a run and no case
)


@pytest.fixture(scope="module")
def image() -> bytes:
    return png_bytes(astronaut(16))


def contents(image: bytes, text: str = CHEAP) -> list[dict]:
    return gemini_body(image, text)["contents"]


def bad_base64_request() -> dict:
    return {
        "contents": [
            {"role": "user", "parts": [{"text": CHEAP}, {"inlineData": {"mimeType": "image/png", "data": "not base64!"}}]}
        ]
    }


def write_jsonl(path: Path, requests: list[tuple[str, dict]]) -> Path:
    path.write_text("".join(json.dumps({"key": key, "request": body}) + "\n" for key, body in requests))
    return path


def wait_done(client, name: str, timeout: float = 60):
    deadline = time.time() + timeout
    job = client.batches.get(name=name)
    while not job.done:
        assert time.time() < deadline, f"{name} did not finish: {job.state}"
        time.sleep(0.25)
        job = client.batches.get(name=name)
    return job


def raw_get(server, key: str, path: str) -> httpx.Response:
    return http.get(f"{server.base_url}/v1beta/{path}", headers={"x-goog-api-key": key}, timeout=30)


def balance(server, key: str) -> int:
    return http.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}, timeout=30).json()["balance_micros"]


# ---- the SDK end to end ----


def test_inline_batch_through_the_sdk_keeps_order_and_costs_half(server, image):
    key = server.create_key("1")
    client = server.genai(key)
    src = [
        {"contents": contents(image), "metadata": {"key": "first"}},
        {"contents": contents(image, "upscale 2x"), "metadata": {"key": "second"}},
        {"contents": contents(image), "metadata": {"key": "third"}},
    ]
    job = client.batches.create(model="flashbulb-photo", src=src, config={"display_name": "three photos"})
    assert job.name.startswith("batches/") and job.display_name == "three photos"
    assert job.state.name in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")
    job = wait_done(client, job.name)
    assert job.state.name == "JOB_STATE_SUCCEEDED" and job.model == "models/flashbulb-photo"
    responses = job.dest.inlined_responses
    assert [r.metadata["key"] for r in responses] == ["first", "second", "third"]
    assert all(r.error is None for r in responses)
    sizes = []
    for r in responses:
        part = next(p for p in r.response.candidates[0].content.parts if p.inline_data)
        sizes.append(png_size(part.inline_data.data))
    assert sizes == [(16, 16), (32, 32), (16, 16)]  # "upscale 2x" is the second one: input order is kept
    # Each batch result carries its content credentials, as a live answer does.
    found = read_manifest(part.inline_data.data, "image/png")
    assert found["state"] == "Valid" and actions_of(found["manifest"])[1]["parameters"]["model"] == "flashbulb-photo"
    stats = raw_get(server, key, job.name).json()["metadata"]["batchStats"]
    assert stats == {"requestCount": "3", "successfulRequestCount": "3", "failedRequestCount": "0", "pendingRequestCount": "0"}
    assert balance(server, key) == 1_000_000 - 3 * BATCH_PRICE  # the 50% batch discount


def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_file_batch_uploads_in_chunks_and_returns_a_results_file_with_per_item_errors(server, image, tmp_path, monkeypatch):
    from google.genai import _api_client

    key = server.create_key("1")
    client = server.genai(key)
    requests = [(f"k{i}", {"contents": contents(image)}) for i in range(5)]
    requests[2] = ("broken", bad_base64_request())
    path = write_jsonl(tmp_path / "in.jsonl", requests)
    monkeypatch.setattr(_api_client, "CHUNK_SIZE", 1024)  # several resumable chunks, each at its offset
    uploaded = client.files.upload(file=path, config={"mime_type": "application/jsonl", "display_name": "five"})
    assert uploaded.name.startswith("files/") and uploaded.state.name == "ACTIVE" and uploaded.source.name == "UPLOADED"
    assert uploaded.size_bytes == path.stat().st_size and uploaded.mime_type == "application/jsonl"
    assert uploaded.sha256_hash == base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()
    assert uploaded.expiration_time - uploaded.create_time == dt.timedelta(hours=48)
    assert client.files.get(name=uploaded.name).display_name == "five"

    job = wait_done(client, client.batches.create(model="flashbulb-photo", src=uploaded.name).name)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    lines = [json.loads(line) for line in client.files.download(file=job.dest.file_name).decode().splitlines()]
    assert [line["key"] for line in lines] == ["k0", "k1", "broken", "k3", "k4"]
    assert [("response" in line, "error" in line) for line in lines] == [(True, False)] * 2 + [(False, True)] + [
        (True, False)
    ] * 2
    assert lines[2]["error"]["status"] == "INVALID_ARGUMENT" and "base64" in lines[2]["error"]["message"]
    assert lines[0]["response"]["candidates"][0]["finishReason"] == "STOP"
    results_file = client.files.get(name=job.dest.file_name)
    assert results_file.source.name == "GENERATED" and results_file.download_uri
    assert raw_get(server, key, job.name).json()["metadata"]["batchStats"]["failedRequestCount"] == "1"
    assert balance(server, key) == 1_000_000 - 4 * BATCH_PRICE  # the failed item is free
    client.files.delete(name=uploaded.name)
    assert uploaded.name not in [f.name for f in client.files.list()]


def test_the_resumable_protocol_checks_offsets_sizes_and_limits(server):
    key = server.create_key("0")
    base = server.base_url
    payload = b'{"key": "a", "request": {"contents": []}}\n' * 3

    def start(size: int) -> httpx.Response:
        return http.post(
            f"{base}/upload/v1beta/files",
            json={"file": {"displayName": "raw"}},
            headers={
                "x-goog-api-key": key,
                "x-goog-upload-protocol": "resumable",
                "x-goog-upload-command": "start",
                "x-goog-upload-header-content-length": str(size),
                "x-goog-upload-header-content-type": "application/jsonl",
            },
        )

    def send(url: str, command: str, offset: int, chunk: bytes = b"") -> httpx.Response:
        # No API key: the upload URL is the credential, as with Google's.
        return http.post(url, content=chunk, headers={"x-goog-upload-command": command, "x-goog-upload-offset": str(offset)})

    too_big = start(Settings().max_file_bytes + 1)
    assert too_big.status_code == 400 and "limit" in too_big.json()["error"]["message"]
    started = start(len(payload))
    assert started.status_code == 200 and started.headers["x-goog-upload-status"] == "active"
    url = started.headers["x-goog-upload-url"]
    wrong = send(url, "upload", 5, payload[:10])
    assert wrong.status_code == 400 and wrong.headers["x-goog-upload-status"] == "active"
    assert wrong.headers["x-goog-upload-size-received"] == "0"
    assert send(url, "upload", 0, payload[:10]).headers["x-goog-upload-size-received"] == "10"
    again = send(url, "upload", 0, payload[:10])  # a retried chunk is acknowledged, not written twice
    assert again.status_code == 200 and again.headers["x-goog-upload-size-received"] == "10"
    assert send(url, "query", 0).headers["x-goog-upload-size-received"] == "10"
    short = send(url, "finalize", 10)
    assert short.status_code == 400 and short.headers["x-goog-upload-status"] == "final"
    final = send(url, "upload, finalize", 10, payload[10:])
    assert final.status_code == 200 and final.headers["x-goog-upload-status"] == "final"
    resource = final.json()["file"]
    assert resource["sizeBytes"] == str(len(payload)) and resource["state"] == "ACTIVE"
    assert send(url, "upload", len(payload), b"x").status_code == 404  # finished: the upload URL is spent
    got = http.get(f"{base}/v1beta/{resource['name']}:download", params={"alt": "media"}, headers={"x-goog-api-key": key})
    assert got.content == payload
    assert http.post(f"{base}/upload/v1beta/files", headers={"x-goog-api-key": key}).status_code == 400  # no protocol


@pytest.mark.parametrize("blob_store", ["folder", "database"])
def test_the_file_store_enforces_its_limit_while_bytes_arrive_and_forgets_expired_files(tmp_path, blob_store):
    database = store.connect(f"sqlite:///{tmp_path / 'f.db'}")
    store.migrate(database)
    owner = accounts.create_key(database, "owner").account_id
    blob_store = blobs.open_store(blob_store, tmp_path, database)
    files = FileStore(database, blob_store, max_bytes=10, ttl_s=3600)
    _id, token = files.start_upload(owner, mime_type="application/jsonl", size_bytes=None)  # size not announced
    assert files.append(token, 0, b"123456", finalize=False).received == 6
    with pytest.raises(FlashbulbError) as too_big:
        files.append(token, 6, b"789012", finalize=True)
    assert too_big.value.kind == ErrorKind.TOO_LARGE
    with pytest.raises(FlashbulbError):  # the upload was cancelled with it
        files.received(token)
    file_id, token = files.start_upload(owner, mime_type="text/plain", size_bytes=3, name="files/mine")
    info = files.append(token, 0, b"abc", finalize=True).file
    assert (info.name, info.size_bytes, info.sha256) == ("mine", 3, hashlib.sha256(b"abc").hexdigest())
    _info, handle = files.open(owner, "mine")
    with handle:
        assert handle.read() == b"abc"
    with pytest.raises(FlashbulbError) as taken:
        files.start_upload(owner, mime_type="text/plain", size_bytes=1, name="mine")
    assert taken.value.kind == ErrorKind.ALREADY_EXISTS
    with pytest.raises(FlashbulbError) as other:
        files.get(owner + 1, file_id)
    assert other.value.kind == ErrorKind.NOT_FOUND
    # Names are per account: a stranger naming its file the same learns nothing and takes nothing.
    stranger = accounts.create_key(database, "stranger").account_id
    _name, token = files.start_upload(stranger, mime_type="text/plain", size_bytes=3, name="files/mine")
    files.append(token, 0, b"xyz", finalize=True)
    for account, data in ((owner, b"abc"), (stranger, b"xyz")):
        with files.open(account, "mine")[1] as handle:
            assert handle.read() == data
    files.delete(stranger, "mine")
    assert files.get(owner, "mine").sha256 == hashlib.sha256(b"abc").hexdigest()
    expired = FileStore(database, blob_store, max_bytes=10, ttl_s=-1)
    _old, token = expired.start_upload(owner, mime_type="text/plain", size_bytes=None)
    assert expired.sweep_expired() == 1 and files.get(owner, "mine").name == "mine"
    database.dispose()


def test_other_accounts_get_404_for_your_batches_and_files(server, image, tmp_path):
    from google.genai import errors

    alice = server.genai(server.create_key("1"))
    bob = server.genai(server.create_key("1"))
    uploaded = alice.files.upload(
        file=write_jsonl(tmp_path / "a.jsonl", [("a", {"contents": contents(image)})]), config={"mime_type": "application/jsonl"}
    )
    job = wait_done(alice, alice.batches.create(model="flashbulb-photo", src=uploaded.name).name)
    for call in (
        lambda: bob.batches.get(name=job.name),
        lambda: bob.batches.cancel(name=job.name),
        lambda: bob.batches.delete(name=job.name),
        lambda: bob.files.get(name=uploaded.name),
        lambda: bob.files.download(file=job.dest.file_name),
        lambda: bob.files.delete(name=uploaded.name),
        lambda: bob.batches.create(model="flashbulb-photo", src=uploaded.name),  # can't run someone else's input
    ):
        with pytest.raises(errors.ClientError) as refused:
            call()
        assert refused.value.code == 404
    assert list(bob.batches.list()) == [] and list(bob.files.list()) == []
    assert [b.name for b in alice.batches.list()] == [job.name]
    alice.batches.delete(name=job.name)
    with pytest.raises(errors.ClientError) as gone:
        alice.batches.get(name=job.name)
    assert gone.value.code == 404


def test_cancel_stops_pending_items_and_charges_only_what_ran(server, image):
    key = server.create_key("1")
    client = server.genai(key)
    job = client.batches.create(model="flashbulb-photo", src=[{"contents": contents(image)} for _ in range(60)])
    client.batches.cancel(name=job.name)
    job = wait_done(client, job.name)
    assert job.state.name == "JOB_STATE_CANCELLED"
    responses = job.dest.inlined_responses
    assert len(responses) == 60
    ran = [r for r in responses if r.response is not None]
    cancelled = [r for r in responses if r.error is not None]
    assert len(ran) + len(cancelled) == 60 and cancelled
    assert all(r.error.code == 499 for r in cancelled)
    assert balance(server, key) == 1_000_000 - len(ran) * BATCH_PRICE


def test_live_requests_are_not_stuck_behind_a_running_batch(server, image):
    key = server.create_key("1")
    client = server.genai(key)
    job = client.batches.create(model="flashbulb-photo", src=[{"contents": contents(image)} for _ in range(50)])
    live = [server.generate(key, gemini_body(image, CHEAP)) for _ in range(3)]
    pending = int(raw_get(server, key, job.name).json()["metadata"]["batchStats"]["pendingRequestCount"])
    client.batches.cancel(name=job.name)
    assert pending > 10, "the batch should still have been running"
    # Ahead of a live request in the model's queue: at most the few batch items in flight (live ones
    # go first among those waiting), never the batch's backlog (~50 x 40 ms).
    assert all(r.status_code == 200 for r in live)
    assert max(r.json()["flashbulb"]["timings_ms"]["queue"] for r in live) < 600
    wait_done(client, job.name)


def test_revoking_the_key_stops_its_running_batch_from_spending(server, image):
    name = f"revoke-{uuid.uuid4().hex[:6]}"
    key = server.create_key("1", name=name)
    client = server.genai(key)
    job = client.batches.create(model="flashbulb-photo", src=[{"contents": contents(image)} for _ in range(60)])
    admin = {"x-goog-api-key": server.admin_key}
    listing = http.get(f"{server.base_url}/admin/keys", headers=admin).json()["keys"]
    key_id = next(k["key_id"] for k in listing if k["account"] == name)
    assert http.post(f"{server.base_url}/admin/keys/{key_id}/revoke", headers=admin).status_code == 200
    # The revoked key can't read the batch any more; its remaining items fail without a charge.
    batch_id = job.name.removeprefix("batches/")
    database = store.connect(server.database_url)
    try:
        # 60 s ran out in a run beside another test worker on 2 cores: an upper bound, not a timing.
        wait_for(lambda: batch_state(database, batch_id) in queue.ENDED, 240, "the batch to end", every=0.25)
        ended = batch_state(database, batch_id)
        with database.connect() as conn:
            results = [
                json.loads(r) for r in conn.execute(select(BatchItem.result).where(BatchItem.batch_id == batch_id)).scalars()
            ]
    finally:
        database.dispose()
    refused = [r["error"]["message"] for r in results if "error" in r]
    assert refused and all("revoked" in m for m in refused), refused[:3]
    # Revoked before its first item ran (it happens on a busy machine), no item succeeds: failed.
    assert ended == ("succeeded" if len(refused) < 60 else "failed")
    state = account_state(server, name)
    assert state["balance"] == 1_000_000 - (60 - len(refused)) * BATCH_PRICE == state["ledger_sum"]
    assert state["held"] == 0 and state["open_holds"] == 0


def batch_state(database, batch_id: str) -> str:
    with database.connect() as conn:
        return conn.execute(select(BatchJob.state).where(BatchJob.id == batch_id)).scalar()


def test_running_out_of_credits_is_an_error_of_the_items_not_of_the_batch(server, image):
    key = server.create_key(f"{2 * BATCH_PRICE / 1e6:.6f}")  # enough for two discounted images
    client = server.genai(key)
    job = wait_done(
        client, client.batches.create(model="flashbulb-photo", src=[{"contents": contents(image)} for _ in range(4)]).name
    )
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    statuses = [r.response is not None for r in job.dest.inlined_responses]
    assert statuses.count(True) == 2
    errors = [r.error for r in job.dest.inlined_responses if r.error]
    assert [e.code for e in errors] == [429, 429]
    assert balance(server, key) == 0


def test_bad_batches_are_refused_before_anything_is_stored(server, image, tmp_path):
    key = server.create_key("1")
    url = f"{server.base_url}/v1beta/models/flashbulb-photo:batchGenerateContent"
    headers = {"x-goog-api-key": key}
    assert http.post(url, json={"batch": {"inputConfig": {}}}, headers=headers).status_code == 400
    assert http.post(url, json={"batch": {"inputConfig": {"requests": {"requests": []}}}}, headers=headers).status_code == 400
    assert http.post(url, json={"batch": {"inputConfig": {"fileName": "files/nope"}}}, headers=headers).status_code == 404
    missing = http.post(f"{server.base_url}/v1beta/models/no-such-model:batchGenerateContent", json={}, headers=headers)
    assert missing.status_code == 404
    client = server.genai(key)
    not_jsonl = tmp_path / "bad.jsonl"
    not_jsonl.write_text('{"key": "a", "request": {"contents": []}}\nthis is not json\n')
    uploaded = client.files.upload(file=not_jsonl, config={"mime_type": "application/jsonl"})
    refused = http.post(url, json={"batch": {"inputConfig": {"fileName": uploaded.name}}}, headers=headers)
    assert refused.status_code == 400 and "line 2" in refused.json()["error"]["message"]
    assert list(client.batches.list()) == []


def test_the_batch_discount_comes_from_flashbulb_toml():
    from flashbulb.billing import quotes

    settings = Settings()
    assert settings.batch_discount_percent == 50
    settings.apply_toml({"batch": {"discount_percent": 20, "max_in_flight": 2}})
    assert (settings.batch_discount_percent, settings.batch_max_in_flight) == (20, 2)
    with pytest.raises(ValueError):
        settings.apply_toml({"batch": {"discount_percent": 120}})
    with pytest.raises(ValueError):
        settings.apply_toml({"batch": {"speed": 1}})
    assert [quotes.discounted(2_001, d) for d in (0, 20, 50, 100)] == [2_001, 1_600, 1_000, 0]  # rounded down


# ---- the CLI ----


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FLASHBULB, "batch", *args], capture_output=True, text=True, timeout=120)


def test_cli_submits_waits_and_fetches_results_with_meaningful_exit_codes(server, image, tmp_path):
    key = server.create_key("1")
    remote = ("--server", server.base_url, "--key", key)
    path = write_jsonl(tmp_path / "in.jsonl", [("a", {"contents": contents(image)}), ("b", bad_base64_request())])
    submitted = cli("submit", str(path), "--model", "flashbulb-photo", *remote)
    assert submitted.returncode == 0, submitted.stderr
    name = submitted.stdout.strip()
    assert name.startswith("batches/")
    status = cli("status", name, "--wait", "--interval", "0.2", "--json", *remote)
    assert status.returncode == 0, status.stderr
    summary = json.loads(status.stdout)
    assert (summary["state"], summary["succeeded"], summary["failed"]) == ("BATCH_STATE_SUCCEEDED", 1, 1)
    out = tmp_path / "out.jsonl"
    results = cli("results", name.removeprefix("batches/"), "-o", str(out), *remote)
    assert results.returncode == 0, results.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["key"], "response" in line) for line in lines] == [("a", True), ("b", False)]
    pictures = tmp_path / "pictures"
    assert cli("results", name, "--images", str(pictures), *remote).returncode == 0
    assert [p.name for p in sorted(pictures.iterdir())] == ["a-0.png"]  # the failed item has none
    assert Image.open(pictures / "a-0.png").width > 0
    listed = json.loads(cli("list", "--json", *remote).stdout)
    assert [b["name"] for b in listed] == [name]

    # 2: bad input (a broken file, an unknown model, a missing key); 3: no server; 4: the batch failed.
    broken = tmp_path / "broken.jsonl"
    broken.write_text("not json\n")
    assert cli("submit", str(broken), "--model", "flashbulb-photo", *remote).returncode == 2
    assert cli("submit", str(path), "--model", "no-such-model", *remote).returncode == 2
    assert cli("list", "--server", server.base_url).returncode == 2
    assert cli("list", "--server", server.base_url, "--key", "fb-not-a-key").returncode == 5  # as `flashbulb edit` exits
    assert cli("list", "--server", "http://127.0.0.1:9", "--key", key).returncode == 3
    all_bad = write_jsonl(tmp_path / "bad.jsonl", [("x", bad_base64_request())])
    failing = cli("submit", str(all_bad), "--model", "flashbulb-photo", *remote).stdout.strip()
    assert cli("status", failing, "--wait", "--interval", "0.2", *remote).returncode == 4


# ---- durability: kill the server twice in the middle of a batch ----


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_batch_survives_two_sigkills_running_and_charging_every_item_exactly_once(backend, tmp_path, request, image):
    url = f"sqlite:///{tmp_path / 'flashbulb.db'}" if backend == "sqlite" else request.getfixturevalue("new_postgres_database")()
    server = start_server(tmp_path, url)
    name = f"kill-{uuid.uuid4().hex[:6]}"
    key = server.create_key(f"{GRANTED / 1e6:.6f}", name=name)
    batch_id = submit_kill_test_batch(server, key, image, tmp_path)
    database = store.connect(url)
    try:
        for fraction in (1 / 3, 2 / 3):  # SIGKILL mid-batch, then start again on the same database (and port)
            wait_for(lambda: items_done(database, batch_id) >= fraction * KILL_TEST_ITEMS, 60, "items to finish", every=0.25)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(10)
            server = start_server(tmp_path, url, admin_key=server.admin_key, port=int(server.base_url.rsplit(":", 1)[1]))
        assert_every_item_ran_and_was_charged_exactly_once(server, key, database, batch_id, name)
    finally:
        database.dispose()
        server.stop()


def test_two_servers_share_one_postgres_database_and_one_finishes_what_the_killed_one_started(
    tmp_path, image, new_postgres_database
):
    url = new_postgres_database()
    # Each server its own data dir, as on two hosts; a 6 s lease (not 30) so B takes over sooner.
    config = '[storage]\nblobs = "database"\n[batch]\nlease_s = 6\n'
    a = start_server(tmp_path / "a", url, config=config)
    b = start_server(tmp_path / "b", url, config=config, admin_key=a.admin_key)
    name = f"two-{uuid.uuid4().hex[:6]}"
    key = a.create_key(f"{GRANTED / 1e6:.6f}", name=name)
    database = store.connect(url)
    try:
        # An image URL made on A is served by B.
        made = http.post(
            f"{a.base_url}/v1/images/edits",
            headers={"authorization": f"Bearer {a.create_key('1')}"},
            data={"model": "flashbulb-photo", "prompt": CHEAP, "response_format": "url"},
            files={"image": ("a.png", image, "image/png")},
            timeout=60,
        )
        assert made.status_code == 200, made.text
        image_url = made.json()["data"][0]["url"]
        assert image_url.startswith(a.base_url)
        fetched = http.get(b.base_url + image_url.removeprefix(a.base_url))
        assert fetched.status_code == 200 and fetched.content.startswith(b"\x89PNG")

        # A batch submitted on A; A is killed twice while it runs (restarted once); B finishes it.
        batch_id = submit_kill_test_batch(a, key, image, tmp_path)
        port = int(a.base_url.rsplit(":", 1)[1])
        for fraction, restart in ((1 / 4, True), (1 / 2, False)):
            wait_for(lambda: items_done(database, batch_id) >= fraction * KILL_TEST_ITEMS, 90, "items to finish", every=0.25)
            a.process.send_signal(signal.SIGKILL)
            a.process.wait(10)
            if restart:
                a = start_server(tmp_path / "a", url, config=config, admin_key=a.admin_key, port=port)
        assert b.healthy()
        assert_every_item_ran_and_was_charged_exactly_once(b, key, database, batch_id, name, timeout=120)
    finally:
        database.dispose()
        a.stop()
        b.stop()


GRANTED = 5_000_000


def submit_kill_test_batch(server, key: str, image: bytes, tmp_path: Path) -> str:
    client = server.genai(key)
    path = write_jsonl(tmp_path / "in.jsonl", [(f"k{i}", {"contents": contents(image)}) for i in range(KILL_TEST_ITEMS)])
    uploaded = client.files.upload(file=path, config={"mime_type": "application/jsonl"})
    return client.batches.create(model="flashbulb-photo", src=uploaded.name).name.removeprefix("batches/")


def assert_every_item_ran_and_was_charged_exactly_once(server, key, database, batch_id, name, timeout: float = 60) -> None:
    client = server.genai(key)
    job = wait_done(client, f"batches/{batch_id}", timeout=timeout)
    assert job.state.name == "JOB_STATE_SUCCEEDED"

    # Every item has exactly one result, in input order.
    lines = [json.loads(line) for line in client.files.download(file=job.dest.file_name).decode().splitlines()]
    assert [line["key"] for line in lines] == [f"k{i}" for i in range(KILL_TEST_ITEMS)]
    assert all("response" in line and "error" not in line for line in lines)

    with database.connect() as conn:
        items = conn.execute(select(BatchItem.state, BatchItem.attempt).where(BatchItem.batch_id == batch_id)).all()
        holds = conn.execute(
            select(Hold.request_id, Hold.state, Hold.charged_micros).where(Hold.request_id.like(f"batch-{batch_id}-%"))
        ).all()
        usage = conn.execute(
            select(UsageRecord.request_id, UsageRecord.status, UsageRecord.charge_micros).where(
                UsageRecord.request_id.like(f"batch-{batch_id}-%")
            )
        ).all()
        account = conn.execute(select(Account).where(Account.name == name)).one()
        ledger_sum = conn.execute(
            select(func.sum(LedgerEntry.amount_micros)).where(LedgerEntry.account_id == account.id)
        ).scalar()
        charges = conn.execute(
            select(func.count(), func.sum(LedgerEntry.amount_micros)).where(
                LedgerEntry.account_id == account.id, LedgerEntry.kind == "charge"
            )
        ).one()
        state, succeeded_count, failed_count = conn.execute(
            select(BatchJob.state, BatchJob.succeeded_count, BatchJob.failed_count).where(BatchJob.id == batch_id)
        ).one()

    def position(request_id: str) -> int:
        return int(request_id.removeprefix(f"batch-{batch_id}-").split("-")[0])

    everyone = collections.Counter({i: 1 for i in range(KILL_TEST_ITEMS)})
    assert state == "succeeded" and len(items) == KILL_TEST_ITEMS and {s for s, _ in items} == {"succeeded"}
    assert (succeeded_count, failed_count) == (KILL_TEST_ITEMS, 0)  # the batch's counters agree with its items
    assert max(attempt for _, attempt in items) >= 2, "the kills should have interrupted running items"
    # Exactly one settled hold and one charged usage record per item; no hold left open.
    assert collections.Counter(position(h.request_id) for h in holds if h.state == "settled") == everyone
    assert [h for h in holds if h.state == "held"] == []
    assert {h.state for h in holds} <= {"settled", "released"}
    assert collections.Counter(position(u.request_id) for u in usage if u.charge_micros > 0) == everyone
    assert sorted(u.request_id for u in usage) == sorted(h.request_id for h in holds)  # one usage record per hold
    assert {u.status for u in usage if u.charge_micros == 0} <= {"interrupted"}  # a released run is one the kill cut short
    # The books: charges = items x discounted price, balance = grants - charges.
    assert charges.count == KILL_TEST_ITEMS and -charges[1] == KILL_TEST_ITEMS * BATCH_PRICE
    assert account.balance_micros == GRANTED - KILL_TEST_ITEMS * BATCH_PRICE == ledger_sum
    assert account.held_micros == 0


def items_done(database, batch_id: str) -> int:
    with database.connect() as conn:
        return conn.execute(select(BatchJob.succeeded_count).where(BatchJob.id == batch_id)).scalar()


def test_a_batch_whose_server_died_as_it_ended_it_is_ended_by_a_live_server(tmp_path):
    """Every item has its result but the batch is not final: its last item's server was killed as it
    wrote the responses file (seen in the two-server test above, which then waited forever). A live
    server ends it at a heartbeat once the last result is a lease old, not only at its next start."""
    config = (
        '[batch]\nlease_s = 1\n[diffusion]\nwarm_models = ["quick"]\n'
        '[models.quick]\nbackend = "fault_backends:FaultBackend"\nprice_usd = "0.001"\n'
    )
    server = start_server(tmp_path, f"sqlite:///{tmp_path / 'f.db'}", config=config)
    database = store.connect(server.database_url)
    try:
        client = server.genai(server.create_key("1"))
        batch_id = client.batches.create(model="quick", src=[{"contents": [{"parts": [{"text": "a red square"}]}]}] * 2).name
        wait_done(client, batch_id)
        batch_id = batch_id.removeprefix("batches/")
        with database.begin() as conn:  # as the killed server left it: results written, the batch still running
            conn.execute(update(BatchJob).where(BatchJob.id == batch_id).values(state="running", ended_at=None))
        assert batch_state(database, batch_id) == "running"
        wait_for(lambda: batch_state(database, batch_id) == "succeeded", 30, "a live server to end the batch")
    finally:
        database.dispose()
        server.stop()


def test_one_account_is_held_to_its_storage_and_batch_quotas(tmp_path):
    from google.genai import errors, types

    config = (
        "[limits]\nmax_account_file_bytes = 100000\nmax_batch_items = 3\nmax_open_batches = 1\n\n"
        '[models.slow]\nbackend = "fault_backends:FaultBackend"\nprice_usd = "0.001"\n'
    )
    server = start_server(tmp_path, f"sqlite:///{tmp_path / 'q.db'}", config=config)
    try:
        client = server.genai(server.create_key("0"))  # quotas hold for a $0 account too
        blob = tmp_path / "blob.bin"
        blob.write_bytes(b"x" * 60_000)
        kept = client.files.upload(file=blob, config=types.UploadFileConfig(mime_type="application/octet-stream"))
        with pytest.raises(errors.ClientError) as refused:
            client.files.upload(file=blob, config=types.UploadFileConfig(mime_type="application/octet-stream"))
        assert refused.value.code == 400 and "quota of 100,000 bytes" in refused.value.message
        client.files.delete(name=kept.name)  # room again once a file is gone
        client.files.upload(file=blob, config=types.UploadFileConfig(mime_type="application/octet-stream"))

        payer_key = server.create_key("1")
        payer = server.genai(payer_key)
        request = {
            "contents": [
                {
                    "parts": [
                        {"text": "make it brighter"},
                        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png_bytes(astronaut(16))).decode()}},
                    ]
                }
            ]
        }
        with pytest.raises(errors.ClientError) as too_many:
            payer.batches.create(model="flashbulb-photo", src=[request] * 4)
        assert too_many.value.code == 400 and "at most 3 requests" in too_many.value.message
        slow = {"contents": [{"parts": [{"text": "sleep 10"}]}]}  # each item takes 10 s: the batch is surely unfinished
        running = payer.batches.create(model="slow", src=[slow])
        # Progress names what is running now, not only what has finished (a watcher saw 0/6 for 11 s).
        resource = lambda: http.get(f"{server.base_url}/v1beta/{running.name}", headers={"x-goog-api-key": payer_key}).json()  # noqa: E731
        wait_for(lambda: resource()["metadata"].get("flashbulb", {}).get("runningRequestCount") == "1", what="the item to run")
        assert resource()["metadata"]["batchStats"]["successfulRequestCount"] == "0"
        with pytest.raises(errors.ClientError) as busy:
            payer.batches.create(model="flashbulb-photo", src=[request])
        assert busy.value.code == 429 and "still running" in busy.value.message
    finally:
        server.stop()

"""Fixtures: a live `flashbulb serve` on loopback (SQLite or PostgreSQL), real photos, real SDK clients."""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from PIL import Image

if TYPE_CHECKING:
    from flashbulb.clock import Clock

ROOT = Path(__file__).resolve().parent.parent
FLASHBULB = [sys.executable, "-m", "flashbulb.cli"]
# A model whose prompt "sleep N" takes N seconds in its worker (tests/fault_backends.py), at $0.002 a call.
SLOW_MODEL = '[models.slow]\nbackend = "fault_backends:FaultBackend"\nprice_usd = "0.002"\n'
POSTGRES_URL = os.environ.get("FLASHBULB_TEST_POSTGRES_URL", "")
# One client for the tests' raw HTTP calls: httpx.get() and friends build a client (and its TLS
# context) per call, 19 ms each against 0.9 ms here (measured), thousands of times a suite. No
# keep-alive, so each call has its own connection as with httpx.get (servers here get killed).
http = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=5.0)
# Server.genai's SDK clients use `http` too (the SDK passes each call's timeout and headers), and
# this for their async half, which no test calls but the SDK makes.
sdk_async_http = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0))
sdk_tls = ssl.create_default_context()


def pytest_configure(config: pytest.Config) -> None:
    # Every server the tests start shares 2 cores with the others and with the tests: each model
    # worker gets one thread (what the engine gives replicas that share cores, and what an operator
    # sets for several services on one box), not thread pools per worker spinning for the same
    # cores. The suite took 9:20-9:40 with the pools and 7:33 with one thread, same box, -n 2.
    # (A hook, not at import: the benches that import this file measure the machine's defaults.)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Compiled modules are kept (in __pycache__, ignored by git) where the environment said not to
    # (PYTHONDONTWRITEBYTECODE=1 on the CI machines): every server, model worker's forkserver and
    # CLI a run starts compiled flashbulb from source again (~0.3 CPU-s each, ~150 a run), and each
    # test worker rewrote and compiled every test module (~3.5 CPU-s).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False


def astronaut(size: int = 64) -> Image.Image:
    """scikit-image's astronaut portrait, downscaled so the CPU model runs in about a second (a copy:
    callers may change it)."""
    return _astronaut(size).copy()


@functools.cache
def _astronaut(size: int) -> Image.Image:
    """Made once per size and process: reading and resizing the 512 px file took 9 ms a call (measured)."""
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.LANCZOS)


def png_bytes(image: Image.Image, fmt: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def gemini_body(image: bytes, text: str = "upscale 2x", **extra) -> dict:
    """A raw generateContent body: one user turn with text and an inline PNG/JPEG/WebP."""
    data = base64.b64encode(image).decode()
    return {
        "contents": [{"role": "user", "parts": [{"text": text}, {"inlineData": {"mimeType": "image/png", "data": data}}]}],
        **extra,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(data_dir: Path, database_url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {"FLASHBULB_DATA_DIR": str(data_dir), "FLASHBULB_DATABASE_URL": database_url}
    if args[0] in ("edit", "generate", "restore"):
        result = subprocess.run([*FLASHBULB, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    else:
        from click.testing import CliRunner

        from flashbulb.cli import main

        ran = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        result = subprocess.CompletedProcess([*FLASHBULB, *args], ran.exit_code, ran.stdout, ran.stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"flashbulb {' '.join(args)} failed: {result.stderr}")
    return result


def create_key_over(client: httpx.Client, base_url: str, admin_key: str, credits_usd: str, name: str | None) -> str:
    """POST /admin/keys: a key, and its account the first time `name` is used."""
    body = {"account": name or f"acct-{uuid.uuid4().hex[:8]}", "credits_usd": credits_usd}
    made = client.post(f"{base_url}/admin/keys", headers={"x-goog-api-key": admin_key}, json=body, timeout=30)
    assert made.status_code == 200, made.text
    return made.json()["key"]


@dataclasses.dataclass
class Server:
    base_url: str
    admin_key: str
    data_dir: Path
    database_url: str
    process: subprocess.Popen
    log_path: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`flashbulb ARGS` on this server's data dir and database. Commands that only read and write the
        database run in this process through click's runner (a subprocess cost ~1 s of CPU, ~40 times a
        suite); those that run a model (edit, generate, restore) in their own, as a user runs them.
        `flashbulb` as a program is tested in test_cli.py."""
        return run_cli(self.data_dir, self.database_url, *args, check=check)

    def create_key(self, credits_usd: str = "10", name: str | None = None) -> str:
        """A key (and its account, the first time `name` is used) through the admin API: the same
        `accounts.create_key` as `flashbulb keys create`, whose CLI is tested in test_cli/test_billing
        (a CLI subprocess per key cost ~1 s, ~100 times a suite)."""
        return create_key_over(http, self.base_url, self.admin_key, credits_usd, name)

    def generate(
        self,
        key: str | None,
        body: dict | None = None,
        *,
        content=None,
        headers: dict | None = None,
        model: str = "flashbulb-photo",
        timeout: float = 120,
    ) -> httpx.Response:
        """POST generateContent as raw HTTP: a JSON `body`, or raw `content` bytes (or an iterator of them)."""
        headers = {**({"x-goog-api-key": key} if key else {}), **(headers or {})}
        url = f"{self.base_url}/v1beta/models/{model}:generateContent"
        if content is not None:
            return http.post(url, headers={**headers, "content-type": "application/json"}, content=content, timeout=timeout)
        return http.post(url, headers=headers, json=body, timeout=timeout)

    def genai(self, key: str):
        """A google-genai client for this server, on the tests' shared httpx clients and TLS context
        (its http_options): made on its own it built three TLS contexts, 82 ms a client here
        (measured), for servers spoken to over plain HTTP."""
        from google import genai
        from google.genai import types

        options = types.HttpOptions(
            base_url=self.base_url,
            timeout=120_000,
            httpx_client=http,
            httpx_async_client=sdk_async_http,
            async_client_args={"ssl": sdk_tls},  # for its live API's websockets, which no test opens
        )
        return genai.Client(api_key=key, http_options=options)

    def healthy(self) -> bool:
        """Running, and its default model loaded (so timings in tests don't include start-up)."""
        return self.process.poll() is None and http.get(f"{self.base_url}/readyz", timeout=5).status_code == 200

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_server(
    data_dir: Path,
    database_url: str,
    config: str = "",
    admin_key: str | None = None,
    port: int | None = None,
    ready_timeout: float = 180,  # every warm model loaded: several torch workers on 2 busy cores take a while
    env: dict | None = None,  # more environment for the server (a PYTHONPATH is put first)
) -> Server:
    """Start `flashbulb serve`; on a fresh database it prints the admin key, else pass the one you have.
    A server restarted on its old `port` is the same batch owner: it takes its items back at once."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if config:
        (data_dir / "flashbulb.toml").write_text(config)
    port = port or free_port()
    log_path = data_dir / "server.log"
    extra = dict(env or {})
    environment = {**os.environ, **extra, "FLASHBULB_DATA_DIR": str(data_dir), "FLASHBULB_DATABASE_URL": database_url}
    # Backends a config names by module (tests/fault_backends.py) are importable in the server's workers.
    paths = [extra.get("PYTHONPATH"), str(ROOT / "tests"), os.environ.get("PYTHONPATH")]
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    with open(log_path, "w") as log:
        # stdout and stderr both go to the log file: a pipe nobody reads would block the server.
        process = subprocess.Popen([*FLASHBULB, "serve", "--port", str(port)], stdout=log, stderr=log, env=environment)
    server = Server(f"http://127.0.0.1:{port}", admin_key or "", data_dir, database_url, process, log_path)
    deadline = time.time() + ready_timeout
    while time.time() < deadline:
        if match := re.search(r"^FLASHBULB_ADMIN_KEY=(\S+)$", log_path.read_text(), re.M):
            server.admin_key = match.group(1)
        try:
            if server.admin_key and server.healthy():
                return server
        except httpx.TransportError:
            pass
        assert process.poll() is None, f"server exited: {log_path.read_text()}"
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"server did not start: {log_path.read_text()}")


@pytest.fixture(scope="session")
def new_postgres_database():
    """A factory of fresh, empty PostgreSQL databases (all dropped at the end of the session)."""
    if not POSTGRES_URL:
        if os.environ.get("FLASHBULB_REQUIRE_POSTGRES"):
            pytest.fail("FLASHBULB_TEST_POSTGRES_URL is not set but PostgreSQL tests are required")
        pytest.skip("set FLASHBULB_TEST_POSTGRES_URL to run the PostgreSQL tests (.ci/run does)")
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def create() -> str:
        name = f"flashbulb_test_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name

    yield create
    with admin.connect() as conn:
        for name in created:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def any_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A migrated, empty database per backend (no server), for the ledger-level tests."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'flashbulb.db'}"
    else:
        url = request.getfixturevalue("new_postgres_database")()
    from flashbulb.store import db as store

    engine = store.connect(url)
    store.migrate(engine)
    yield engine
    engine.dispose()


@dataclasses.dataclass
class InProcess:
    """The app in the test's own process: Starlette's TestClient over `create_app` (the routes,
    middleware and lifespan of `flashbulb serve`, without a socket or a server process), on a fresh
    database, with `clock` to move its time forward instead of sleeping until something expires.
    No model is warmed: one loads on its first call. What needs a real process (SIGKILL, the SDKs
    against a live server, the browser) uses `start_server`."""

    client: httpx.Client  # a starlette TestClient
    data_dir: Path
    database_url: str
    admin_key: str
    clock: Clock

    def create_key(self, credits_usd: str = "10", name: str | None = None) -> str:
        return create_key_over(self.client, "", self.admin_key, credits_usd, name)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run_cli(self.data_dir, self.database_url, *args, check=check)


@pytest.fixture(params=["sqlite", "postgres"])
def in_process(request: pytest.FixtureRequest, tmp_path: Path):
    """The app in this process on SQLite and on PostgreSQL (see `InProcess`)."""
    from fastapi.testclient import TestClient

    from flashbulb.api.app import create_app
    from flashbulb.clock import clock
    from flashbulb.config import Settings
    from flashbulb.gateway import accounts

    url = (
        f"sqlite:///{tmp_path / 'flashbulb.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("new_postgres_database")()
    )
    app = create_app(Settings.load(tmp_path, url), warm_up=False)
    admin = accounts.create_key(app.state.gateway.db, "admin", key_name="admin", admin=True)
    try:
        with TestClient(app) as client:
            yield InProcess(client, tmp_path, url, admin.key, clock)
    finally:
        clock.offset_s = 0.0  # the next test starts at the real time
        app.state.gateway.db.dispose()


def wait_for(condition, timeout: float = 30.0, what: str = "condition", every: float = 0.1) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    """The shared server on SQLite (the embedded default)."""
    data_dir = tmp_path_factory.mktemp("data")
    srv = start_server(data_dir, f"sqlite:///{data_dir / 'flashbulb.db'}")
    yield srv
    srv.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def any_db_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Server:
    """A server per database backend, for the tests that must pass on both."""
    data_dir = tmp_path_factory.mktemp(f"data-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'flashbulb.db'}"
    else:
        url = request.getfixturevalue("new_postgres_database")()
    srv = start_server(data_dir, url)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def key(server: Server) -> str:
    return server.create_key("100")


# ---- provenance: content credentials and watermarks (tests/test_provenance.py, test_diffusion.py) ----


def read_manifest(data_: bytes, mime: str) -> dict:
    """The C2PA project's reader on an image: its validation state and active manifest."""
    import c2pa

    with c2pa.Reader(mime, io.BytesIO(data_)) as reader:
        store = json.loads(reader.json())
    return {
        "state": store["validation_state"],
        "status": [s["code"] for s in store.get("validation_status", [])],
        "manifest": store["manifests"][store["active_manifest"]],
    }


def actions_of(manifest: dict) -> list[dict]:
    return [
        a
        for assertion in manifest["assertions"]
        if assertion["label"].startswith("c2pa.actions")
        for a in assertion["data"]["actions"]
    ]


def verify(server, key: str, image: bytes) -> dict:
    body = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(image).decode()}}
    response = http.post(f"{server.base_url}/flashbulb/verify", json=body, headers={"x-goog-api-key": key}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def jpeg(image: Image.Image, quality: int = 80) -> bytes:
    return png_bytes(image.convert("RGB"), "JPEG", quality=quality)


def attacks(image: Image.Image) -> dict[str, bytes]:
    """What images go through on the way to a viewer, each on its own."""
    w, h = image.size
    dx, dy = w // 20, h // 20  # 10% off the width and the height, around the centre
    return {
        "jpeg q80": jpeg(image),
        "resize 50%": png_bytes(image.resize((w // 2, h // 2), Image.Resampling.BICUBIC)),
        "crop 10%": png_bytes(image.crop((dx, dy, w - dx, h - dy))),
        "png re-encode": png_bytes(Image.open(io.BytesIO(png_bytes(image.convert("RGB"))))),
    }

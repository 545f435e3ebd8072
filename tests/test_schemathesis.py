"""schemathesis against the server's own /openapi.json, as a customer and as an admin, on SQLite and
PostgreSQL: generated requests for every operation (coverage, fuzzing and stateful phases), bounded
to a few examples each so it runs in about a minute; not one may be answered with a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import http, start_server

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzzed_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    url = f"sqlite:///{data_dir / 'f.db'}" if request.param == "sqlite" else request.getfixturevalue("new_postgres_database")()
    server = start_server(data_dir, url)  # its own server: the admin run creates accounts and codes
    yield server
    server.stop()


@pytest.mark.parametrize("who", ["customer", "admin"])
def test_no_generated_request_gets_a_server_error(fuzzed_server, who):
    server = fuzzed_server
    key = server.admin_key if who == "admin" else server.create_key("5")
    ran = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{server.base_url}/openapi.json",
            "-H",
            f"x-goog-api-key: {key}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "5",
            "--request-timeout",
            "60",
            "--seed",
            "7",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout[-4000:]
    assert " passed" in ran.stdout and "failed" not in ran.stdout.split("Test cases:")[-1], ran.stdout[-2000:]
    assert http.get(f"{server.base_url}/healthz").status_code == 200

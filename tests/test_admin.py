"""Admin endpoints behind the admin key, the customer's own account view, and 503 when overloaded."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from conftest import astronaut, gemini_body, http, png_bytes, start_server


def admin(server, method: str, path: str, **kwargs) -> httpx.Response:
    return http.request(
        method, f"{server.base_url}/admin{path}", headers={"x-goog-api-key": server.admin_key}, timeout=30, **kwargs
    )


def test_admin_creates_keys_grants_credits_and_reads_usage(server):
    name = f"api-{uuid.uuid4().hex[:6]}"
    created = admin(server, "POST", "/keys", json={"account": name, "credits_usd": "0.5"})
    assert created.status_code == 200, created.text
    key = created.json()["key"]
    granted = admin(server, "POST", "/credits", json={"account": name, "usd": "1.25"})
    assert granted.json()["balance_micros"] == 1_750_000
    listed = admin(server, "GET", "/keys").json()["keys"]
    assert any(k["account"] == name and k["balance_micros"] == 1_750_000 for k in listed)
    assert key not in str(listed)

    own = http.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()
    assert own == {
        "account": name,
        "balance_micros": 1_750_000,
        "held_micros": 0,
        "available_micros": 1_750_000,
        "balance_usd": "1.750000",
        "admin": False,
    }
    client = server.genai(key)
    client.models.generate_content(model="flashbulb-photo", contents=[astronaut(16), "upscale 2x"])
    records = admin(server, "GET", "/usage").json()["records"]
    assert any(r["account"] == name and r["charge_micros"] == 2_000 for r in records)


def test_admin_endpoints_refuse_customer_keys_and_bad_amounts(server, key):
    refused = http.get(f"{server.base_url}/admin/keys", headers={"x-goog-api-key": key})
    assert refused.status_code == 403 and refused.json()["error"]["status"] == "PERMISSION_DENIED"
    bad = admin(server, "POST", "/credits", json={"account": "nobody-here", "usd": "1"})
    assert bad.status_code == 404 and bad.json()["error"]["status"] == "NOT_FOUND"
    fraction = admin(server, "POST", "/credits", json={"account": "admin", "usd": "0.0000001"})
    assert fraction.status_code == 400 and "decimal places" in fraction.json()["error"]["message"]
    missing = admin(server, "POST", "/keys", json={"credits_usd": "1"})
    assert missing.status_code == 400 and "account" in missing.json()["error"]["message"]


def test_a_full_queue_answers_503_unavailable_with_retry_after(tmp_path):
    server = start_server(tmp_path, f"sqlite:///{tmp_path / 'f.db'}", "[limits]\nmax_queue_per_model = 1\n")
    try:
        key = server.create_key("10")
        body = gemini_body(png_bytes(astronaut(96)), "restore")
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda _: server.generate(key, body), range(4)))
        codes = sorted(r.status_code for r in responses)
        assert 200 in codes and 503 in codes, codes
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.json()["error"]["status"] == "UNAVAILABLE" and busy.headers["retry-after"] == "5"
        account = http.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()
        assert account["balance_micros"] == 10_000_000 - 2_000 * codes.count(200) and account["held_micros"] == 0
    finally:
        server.stop()

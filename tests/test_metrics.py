"""GET /metrics as Prometheus scrapes it: HTTP traffic by route, and calls, images, charges and
open holds read from the ledger (exact, and the same from every server on one database)."""

from __future__ import annotations

import pytest
from conftest import astronaut, gemini_body, http, png_bytes, start_server
from prometheus_client.parser import text_string_to_metric_families


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

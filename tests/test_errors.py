"""Every error in Google's shape, raised by the SDK with the right code; bad input never hurts the server."""

from __future__ import annotations

import base64
import json
import io
import struct
import zlib

import httpx
import pytest
from google.genai import errors
from PIL import Image

from conftest import astronaut, gemini_body, png_bytes


def assert_google_error(response: httpx.Response, code: int, status: str, says: str) -> dict:
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["status"] == status
    assert says.lower() in error["message"].lower(), error["message"]
    return error


def test_missing_key_is_403_permission_denied(server):
    # The SDK refuses to send a request without a key, so a keyless caller arrives as raw HTTP.
    assert_google_error(server.generate(None, gemini_body(png_bytes(astronaut(16)))), 403, "PERMISSION_DENIED", "API key")
    response = httpx.get(f"{server.base_url}/v1beta/models")
    assert_google_error(response, 403, "PERMISSION_DENIED", "API key")


def test_invalid_key_is_400_api_key_invalid(server):
    client = server.genai("fb-not-a-real-key")
    with pytest.raises(errors.ClientError) as raised:
        client.models.generate_content(model="flashbulb-photo", contents=[astronaut(16), "restore"])
    assert raised.value.code == 400 and raised.value.status == "INVALID_ARGUMENT"
    details = raised.value.details["error"]["details"]
    assert details[0]["reason"] == "API_KEY_INVALID"


def test_key_in_query_string_works(server, key):
    response = httpx.get(f"{server.base_url}/v1beta/models", params={"key": key})
    assert response.status_code == 200 and response.json()["models"]


def test_unknown_model_is_404(server, key):
    client = server.genai(key)
    with pytest.raises(errors.ClientError) as raised:
        client.models.generate_content(model="no-such-model", contents=[astronaut(16), "restore"])
    assert raised.value.code == 404 and raised.value.status == "NOT_FOUND"
    with pytest.raises(errors.ClientError) as raised:
        client.models.get(model="no-such-model")
    assert raised.value.code == 404


def test_out_of_credits_is_429_resource_exhausted(server):
    client = server.genai(server.create_key("0"))
    with pytest.raises(errors.ClientError) as raised:
        client.models.generate_content(model="flashbulb-photo", contents=[astronaut(16), "restore"])
    assert raised.value.code == 429 and raised.value.status == "RESOURCE_EXHAUSTED"


def test_all_api_versions_serve_the_same_routes(server, key):
    for version in ("v1", "v1beta", "v1alpha"):
        response = httpx.get(f"{server.base_url}/{version}/models/flashbulb-photo", headers={"x-goog-api-key": key})
        assert response.status_code == 200 and response.json()["name"] == "models/flashbulb-photo"


def test_snake_case_and_url_safe_base64_without_padding(server, key):
    data = base64.urlsafe_b64encode(png_bytes(astronaut(24))).decode().rstrip("=")
    body = {
        "contents": [{"role": "user", "parts": [{"text": "upscale 2x"}, {"inline_data": {"mime_type": "image/png", "data": data}}]}],
        "generation_config": {"response_modalities": ["IMAGE"], "image_config": {"aspect_ratio": "1:1"}},
    }
    response = server.generate(key, body)
    assert response.status_code == 200, response.text
    parts = response.json()["candidates"][0]["content"]["parts"]
    assert [list(p) for p in parts] == [["inlineData"]]
    assert Image.open(io.BytesIO(base64.b64decode(parts[0]["inlineData"]["data"]))).size == (48, 48)
    assert int(response.headers["x-flashbulb-charge-micros"]) > 0


def bomb_png(side: int = 30_000) -> bytes:
    """A tiny PNG whose header claims side x side pixels of zeros: decoding it would need gigabytes."""
    raw = zlib.compress(b"\x00" * (side + 1) * 64, 9)  # only a few rows are really there

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


BAD_INPUTS = {
    "corrupt base64": ({"contents": [{"parts": [{"text": "restore"}, {"inlineData": {"mimeType": "image/png", "data": "!!!not base64@@"}}]}]}, "base64"),
    "bytes that are not an image": (gemini_body(b"%PDF-1.4 this is not an image at all"), "not a readable"),
    "truncated png": (gemini_body(png_bytes(astronaut(64))[:400]), "corrupt"),
    "decompression bomb": (gemini_body(bomb_png()), "limit"),
    "empty contents": ({"contents": []}, "contents is empty"),
    "no contents at all": ({}, "contents is empty"),
    "unknown aspect ratio": (gemini_body(png_bytes(astronaut(16)), generationConfig={"imageConfig": {"aspectRatio": "7:5"}}), "7:5"),
    "wrong type for parts": ({"contents": [{"parts": "restore"}]}, "contents.0.parts"),
    "wrong type for seed": (gemini_body(png_bytes(astronaut(16)), generationConfig={"seed": "abc"}), "seed"),
    "empty text and no image": ({"contents": [{"role": "user", "parts": [{"text": "   "}]}]}, "neither text nor an image"),
    "last turn from the model": ({"contents": [{"role": "model", "parts": [{"text": "hi"}]}]}, "role 'user'"),
    "non-image mime type": ({"contents": [{"parts": [{"inlineData": {"mimeType": "application/pdf", "data": "AAAA"}}]}]}, "not an image type"),
    "text-only modality": (gemini_body(png_bytes(astronaut(16)), generationConfig={"responseModalities": ["TEXT"]}), "IMAGE"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_400_invalid_argument_and_costs_nothing(server, case):
    key = server.create_key("1", name=f"bad-{case.replace(' ', '-')}")
    body, says = BAD_INPUTS[case]
    assert_google_error(server.generate(key, body), 400, "INVALID_ARGUMENT", says)
    assert server.healthy()
    account = httpx.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()
    assert account["balanceMicros"] == 1_000_000 and account["heldMicros"] == 0


def test_invalid_json_is_400(server, key):
    response = server.generate(key, content=b"{not json")
    assert_google_error(response, 400, "INVALID_ARGUMENT", "Invalid JSON")


def test_a_60_mb_body_is_400_and_the_server_stays_healthy(server, key):
    body = b'{"contents": [{"parts": [{"text": "' + b"a" * (60 * 1024 * 1024) + b'"}]}]}'
    response = server.generate(key, content=body)
    assert_google_error(response, 400, "INVALID_ARGUMENT", "the limit is")
    assert server.healthy()


def test_a_chunked_oversized_body_is_400_too(server, key):
    def chunks():  # no content-length: the limit must be enforced while reading
        yield b'{"contents": [{"parts": [{"text": "'
        for _ in range(40):
            yield b"a" * (1024 * 1024)
        yield b'"}]}]}'

    response = server.generate(key, content=chunks())
    assert_google_error(response, 400, "INVALID_ARGUMENT", "the limit is")
    assert server.healthy()


def test_unknown_route_is_a_google_shaped_404(server, key):
    response = httpx.get(f"{server.base_url}/v1beta/nothing-here", headers={"x-goog-api-key": key})
    assert_google_error(response, 404, "NOT_FOUND", "not found")


# Each of these once tripped OpenCV's remap assertion (a side of 32767 or more) and aborted the server.
OVERSIZED = [
    (astronaut(64), "resize to 99999x10"),
    (astronaut(64), "resize to 10x99999"),
    (Image.new("RGB", (33000, 10), (120, 90, 80)), "make it brighter"),
    (Image.new("RGB", (10, 33000), (120, 90, 80)), "restore"),
]


@pytest.mark.parametrize("image,prompt", OVERSIZED, ids=["resize-wide", "resize-tall", "wide-png", "tall-png"])
def test_sizes_past_every_library_limit_are_refused_free(server, image, prompt):
    key = server.create_key("1")
    response = server.generate(key, gemini_body(png_bytes(image), prompt))
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:  # the instruction was understood but can't be done: no image, no charge
        assert response.json()["candidates"][0]["finishReason"] == "NO_IMAGE"
    assert "16,384" in response.text
    assert server.process.poll() is None and server.healthy()
    account = httpx.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()
    assert account["balanceMicros"] == 1_000_000 and account["heldMicros"] == 0


def test_degenerate_measurements_and_unpaired_surrogates_never_make_a_charged_500(server):
    key = server.create_key("1")
    tiny = server.generate(key, gemini_body(png_bytes(Image.new("RGB", (2, 2), (9, 9, 9))), "restore it"))
    assert tiny.status_code == 200, tiny.text  # its noise level is NaN: written as null
    body = json.dumps(gemini_body(png_bytes(astronaut(32)), "make it brighter 'X'")).replace("'X'", "'\\udc00x'")
    lone = server.generate(key, content=body.encode())
    assert lone.status_code == 400 and "surrogate" in lone.json()["error"]["message"], lone.text
    account = httpx.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()
    assert account["balanceMicros"] == 1_000_000 - 2_000 and account["heldMicros"] == 0  # only the answer received
    usage = httpx.get(f"{server.base_url}/flashbulb/account/usage", headers={"x-goog-api-key": key})
    assert usage.status_code == 200 and len(usage.json()["records"]) == 1

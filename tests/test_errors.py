"""Every error in Google's shape, raised by the SDK with the right code; bad input never hurts the server."""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import uuid
import zlib
from pathlib import Path

import hostile_corpus
import httpx
import pytest
from conftest import SLOW_MODEL, astronaut, gemini_body, http, png_bytes, start_server
from google.genai import errors
from PIL import Image


def assert_google_error(response: httpx.Response, code: int, status: str, says: str) -> dict:
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["status"] == status
    assert says.lower() in error["message"].lower(), error["message"]
    return error


def test_missing_key_is_403_permission_denied(server):
    # The SDK refuses to send a request without a key, so a keyless caller arrives as raw HTTP.
    assert_google_error(server.generate(None, gemini_body(png_bytes(astronaut(16)))), 403, "PERMISSION_DENIED", "API key")
    response = http.get(f"{server.base_url}/v1beta/models")
    assert_google_error(response, 403, "PERMISSION_DENIED", "API key")


def test_invalid_key_is_400_api_key_invalid(server):
    client = server.genai("fb-not-a-real-key")
    with pytest.raises(errors.ClientError) as raised:
        client.models.generate_content(model="flashbulb-photo", contents=[astronaut(16), "restore"])
    assert raised.value.code == 400 and raised.value.status == "INVALID_ARGUMENT"
    details = raised.value.details["error"]["details"]
    assert details[0]["reason"] == "API_KEY_INVALID"


def test_key_in_query_string_works(server, key):
    response = http.get(f"{server.base_url}/v1beta/models", params={"key": key})
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
        response = http.get(f"{server.base_url}/{version}/models/flashbulb-photo", headers={"x-goog-api-key": key})
        assert response.status_code == 200 and response.json()["name"] == "models/flashbulb-photo"


def test_snake_case_and_url_safe_base64_without_padding(server, key):
    data = base64.urlsafe_b64encode(png_bytes(astronaut(24))).decode().rstrip("=")
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "upscale 2x"}, {"inline_data": {"mime_type": "image/png", "data": data}}]}
        ],
        "generation_config": {"response_modalities": ["IMAGE"], "image_config": {"aspect_ratio": "1:1"}},
    }
    response = server.generate(key, body)
    assert response.status_code == 200, response.text
    parts = response.json()["candidates"][0]["content"]["parts"]
    assert [sorted(p) for p in parts] == [["inlineData", "thoughtSignature"]]  # one image part (signed, as Gemini 3 signs)
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
    "corrupt base64": (
        {"contents": [{"parts": [{"text": "restore"}, {"inlineData": {"mimeType": "image/png", "data": "!!!not base64@@"}}]}]},
        "base64",
    ),
    "bytes that are not an image": (gemini_body(b"%PDF-1.4 this is not an image at all"), "not a readable"),
    "truncated png": (gemini_body(png_bytes(astronaut(64))[:400]), "corrupt"),
    "decompression bomb": (gemini_body(bomb_png()), "limit"),
    "empty contents": ({"contents": []}, "contents is empty"),
    "no contents at all": ({}, "contents is empty"),
    "unknown aspect ratio": (
        gemini_body(png_bytes(astronaut(16)), generationConfig={"imageConfig": {"aspectRatio": "7:5"}}),
        "7:5",
    ),
    "wrong type for parts": ({"contents": [{"parts": "restore"}]}, "contents.0.parts"),
    "wrong type for seed": (gemini_body(png_bytes(astronaut(16)), generationConfig={"seed": "abc"}), "seed"),
    "empty text and no image": ({"contents": [{"role": "user", "parts": [{"text": "   "}]}]}, "neither text nor an image"),
    "last turn from the model": ({"contents": [{"role": "model", "parts": [{"text": "hi"}]}]}, "role 'user'"),
    "non-image mime type": (
        {"contents": [{"parts": [{"inlineData": {"mimeType": "application/pdf", "data": "AAAA"}}]}]},
        "not an image type",
    ),
    "text-only modality": (gemini_body(png_bytes(astronaut(16)), generationConfig={"responseModalities": ["TEXT"]}), "IMAGE"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_400_invalid_argument_and_costs_nothing(server, case):
    key = server.create_key("1", name=f"bad-{case.replace(' ', '-')}")
    body, says = BAD_INPUTS[case]
    assert_google_error(server.generate(key, body), 400, "INVALID_ARGUMENT", says)
    assert server.healthy()
    account = http.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()
    assert account["balance_micros"] == 1_000_000 and account["held_micros"] == 0


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
    response = http.get(f"{server.base_url}/v1beta/nothing-here", headers={"x-goog-api-key": key})
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
    account = http.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()
    assert account["balance_micros"] == 1_000_000 and account["held_micros"] == 0


START_UPLOAD = {"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start"}
DEEP = ("[" * 100_000 + "]" * 100_000).encode()
TINY = png_bytes(Image.new("RGB", (1, 1)))
BIG_B64 = base64.b64encode(png_bytes(Image.new("RGB", (2500, 2500), (90, 120, 150)))).decode()  # 6.25 MP in 20 KB
LONE_SURROGATE = json.dumps(gemini_body(png_bytes(astronaut(32)), "make it brighter 'X'")).replace("'X'", "'\\udc00x'").encode()
# (name, method, path, how the request is sent, wire format of the answer): each once gave a 500.
HOSTILE = [
    ("deep-json-gemini", "POST", "/v1beta/models/flashbulb-photo:generateContent", {"content": DEEP}, "google"),
    ("deep-json-openai", "POST", "/v1/images/generations", {"content": DEEP}, "openai"),
    ("deep-json-batch", "POST", "/v1beta/models/flashbulb-photo:batchGenerateContent", {"content": DEEP}, "google"),
    ("deep-json-upload", "POST", "/upload/v1beta/files", {"content": DEEP, "headers": START_UPLOAD}, "google"),
    (
        "5000-digit-seed",
        "POST",
        "/v1beta/models/flashbulb-photo:generateContent",
        {"content": b'{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"seed":' + b"9" * 5000 + b"}}"},
        "google",
    ),
    (
        "4000-digit-seed",
        "POST",
        "/v1beta/models/flashbulb-photo:generateContent",
        {"json": {**gemini_body(png_bytes(astronaut(16)), "make it brighter"), "generationConfig": {"seed": int("9" * 4000)}}},
        "google",
    ),
    ("5000-digit-n", "POST", "/v1/images/generations", {"content": b'{"prompt":"x","n":' + b"9" * 5000 + b"}"}, "openai"),
    ("superscript-page-token-files", "GET", "/v1beta/files?pageToken=%C2%B2", {}, "google"),
    ("31-digit-page-token-batches", "GET", "/v1beta/batches?pageToken=" + "9" * 31, {}, "google"),
    ("31-digit-page-token-models", "GET", "/v1beta/models?pageToken=" + "9" * 31, {}, "google"),
    ("superscript-page-token-usage", "GET", "/flashbulb/account/usage?page_token=%C2%B3", {}, "google"),
    ("upload-file-is-a-string", "POST", "/upload/v1beta/files", {"json": {"file": "x"}, "headers": START_UPLOAD}, "google"),
    ("upload-file-is-a-number", "POST", "/upload/v1beta/files", {"json": {"file": 5}, "headers": START_UPLOAD}, "google"),
    (
        "upload-name-is-a-number",
        "POST",
        "/upload/v1beta/files",
        {"json": {"file": {"name": 5}}, "headers": START_UPLOAD},
        "google",
    ),
    (
        "upload-size-superscript",
        "POST",
        "/upload/v1beta/files",
        {"json": {"file": {"sizeBytes": "²"}}, "headers": START_UPLOAD},
        "google",
    ),
    (
        "99999-stops",
        "POST",
        "/v1beta/models/flashbulb-photo:generateContent",
        {"json": gemini_body(png_bytes(astronaut(16)), "make it brighter by 99999 stops")},
        "google",
    ),
    (
        "1x1-rembrandt",
        "POST",
        "/v1beta/models/flashbulb-photo:generateContent",
        {"json": gemini_body(TINY, "rembrandt lighting")},
        "google",
    ),
    (
        "1x1-restore",
        "POST",
        "/v1beta/models/flashbulb-photo:generateContent",
        {"json": gemini_body(TINY, "restore it")},
        "google",
    ),
    ("lone-surrogate-prompt", "POST", "/v1beta/models/flashbulb-photo:generateContent", {"content": LONE_SURROGATE}, "google"),
    # PostgreSQL can't store U+0000 and checks column lengths (each of these was a 500 there).
    ("nul-file-name", "GET", "/v1beta/files/%00", {}, "google"),
    (
        "nul-upload-display-name",
        "POST",
        "/upload/v1beta/files",
        {"json": {"file": {"displayName": "a\u0000b"}}, "headers": START_UPLOAD},
        "google",
    ),
    (
        "nul-upload-mime-type",
        "POST",
        "/upload/v1beta/files",
        {"json": {"file": {"mimeType": "image/\u0000"}}, "headers": START_UPLOAD},
        "google",
    ),
    (
        "300-char-upload-mime-type",
        "POST",
        "/upload/v1beta/files",
        {"json": {"file": {"mimeType": "x" * 300}}, "headers": START_UPLOAD},
        "google",
    ),
    (
        "nul-batch-display-name",
        "POST",
        "/v1beta/models/flashbulb-photo:batchGenerateContent",
        {
            "json": {
                "batch": {
                    "displayName": "a\u0000",
                    "inputConfig": {
                        "requests": {
                            "requests": [
                                {"request": gemini_body(png_bytes(astronaut(16)), "make it brighter"), "metadata": {"key": "k"}}
                            ]
                        }
                    },
                }
            }
        },
        "google",
    ),
    ("nul-redeem-code", "POST", "/flashbulb/account/redeem", {"json": {"code": "FB-\u0000"}}, "google"),
    # One request may not ask for too much, nor for what no model can give.
    (
        "40k-char-prompt-gemini",
        "POST",
        "/v1beta/models/flashbulb-photo:generateContent",
        {"json": gemini_body(png_bytes(astronaut(16)), "brighter, " * 4_000)},
        "google",
    ),
    ("40k-char-prompt-openai", "POST", "/v1/images/generations", {"json": {"prompt": "x" * 40_000}}, "openai"),
    (
        "three-images-for-the-photo-model",
        "POST",
        "/v1beta/models/flashbulb-photo:generateContent",
        {
            "json": {
                "contents": [
                    {
                        "parts": [
                            {"text": "restore"},
                            *[
                                {
                                    "inlineData": {
                                        "mimeType": "image/png",
                                        "data": base64.b64encode(png_bytes(astronaut(16))).decode(),
                                    }
                                }
                            ]
                            * 3,
                        ]
                    }
                ]
            }
        },
        "google",
    ),
    # Memory: counted before decoding, and all of a request's images within one pixel budget.
    (
        "16-images-of-2500x2500",
        "POST",
        "/v1beta/models/flashbulb-photo:generateContent",
        {
            "json": {
                "contents": [{"parts": [{"text": "restore"}, *[{"inlineData": {"mimeType": "image/png", "data": BIG_B64}}] * 16]}]
            }
        },
        "google",
    ),
    (
        "17-images",
        "POST",
        "/v1beta/models/flashbulb-photo:generateContent",
        {
            "json": {
                "contents": [{"parts": [{"text": "restore"}, *[{"inlineData": {"mimeType": "image/png", "data": BIG_B64}}] * 17]}]
            }
        },
        "google",
    ),
    (
        "responses-16-images-of-2500x2500",
        "POST",
        "/v1/responses",
        {
            "json": {
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64," + BIG_B64}] * 16}
                ],
                "tools": [{"type": "image_generation"}],
            }
        },
        "openai",
    ),
    (
        "image-size-3K",
        "POST",
        "/v1beta/models/flashbulb-photo:generateContent",
        {"json": {**gemini_body(png_bytes(astronaut(16)), "restore"), "generationConfig": {"imageConfig": {"imageSize": "3K"}}}},
        "google",
    ),
    (
        "aspect-ratio-2:1",
        "POST",
        "/v1beta/models/flashbulb-photo:generateContent",
        {
            "json": {
                **gemini_body(png_bytes(astronaut(16)), "restore"),
                "generationConfig": {"imageConfig": {"aspectRatio": "2:1"}},
            }
        },
        "google",
    ),
    (
        "file-data-unknown-file",
        "POST",
        "/v1beta/models/flashbulb-photo:generateContent",
        {
            "json": {
                "contents": [{"parts": [{"text": "restore"}, {"fileData": {"fileUri": "files/nope", "mimeType": "image/png"}}]}]
            }
        },
        "google",
    ),
    (
        "file-data-foreign-uri",
        "POST",
        "/v1beta/models/flashbulb-photo:generateContent",
        {"json": {"contents": [{"parts": [{"text": "restore"}, {"fileData": {"fileUri": "gs://bucket/cat.png"}}]}]}},
        "google",
    ),
    ("count-tokens-deep-json", "POST", "/v1beta/models/flashbulb-photo:countTokens", {"content": DEEP}, "google"),
    ("count-tokens-no-contents", "POST", "/v1beta/models/flashbulb-photo:countTokens", {"json": {}}, "google"),
    ("openai-size-not-16", "POST", "/v1/images/generations", {"json": {"prompt": "x", "size": "1000x1000"}}, "openai"),
    ("openai-size-4-to-1", "POST", "/v1/images/generations", {"json": {"prompt": "x", "size": "4096x1024"}}, "openai"),
    (
        "openai-partial-images-9",
        "POST",
        "/v1/images/generations",
        {"json": {"prompt": "x", "stream": True, "partial_images": 9}},
        "openai",
    ),
    (
        "openai-stream-refused-free",
        "POST",
        "/v1/images/generations",
        {"json": {"prompt": "a cat", "model": "flashbulb-photo", "stream": True}},
        "openai",
    ),
    ("responses-no-image-tool", "POST", "/v1/responses", {"json": {"model": "gpt-5", "input": "hi"}}, "openai"),
    ("responses-deep-json", "POST", "/v1/responses", {"content": DEEP}, "openai"),
    (
        "responses-input-is-a-number",
        "POST",
        "/v1/responses",
        {"json": {"input": 5, "tools": [{"type": "image_generation"}]}},
        "openai",
    ),
    (
        "responses-http-image-url",
        "POST",
        "/v1/responses",
        {
            "json": {
                "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://169.254.169.254/latest"}]}],
                "tools": [{"type": "image_generation"}],
            }
        },
        "openai",
    ),
    (
        "responses-bad-base64",
        "POST",
        "/v1/responses",
        {
            "json": {
                "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,!!!"}]}],
                "tools": [{"type": "image_generation"}],
            }
        },
        "openai",
    ),
    (
        "responses-unknown-previous",
        "POST",
        "/v1/responses",
        {"json": {"input": "sharper", "previous_response_id": "resp_nope", "tools": [{"type": "image_generation"}]}},
        "openai",
    ),
    (
        "responses-edit-without-image",
        "POST",
        "/v1/responses",
        {"json": {"input": "sharper", "tools": [{"type": "image_generation", "action": "edit"}]}},
        "openai",
    ),
    (
        "responses-tool-size-huge",
        "POST",
        "/v1/responses",
        {"json": {"input": "a cat", "tools": [{"type": "image_generation", "size": "99999x99999"}]}},
        "openai",
    ),
]


HOSTILE += hostile_corpus.cases()


def fresh_key(server) -> str:
    """A new account with $1."""
    return server.create_key("1", name=f"hostile-{uuid.uuid4().hex[:10]}")


@pytest.mark.parametrize("name,method,path,send,shape", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_input_gets_a_4xx_in_the_callers_shape_costs_nothing_and_leaves_the_server_up(
    any_db_server, name, method, path, send, shape
):
    server = any_db_server
    key = fresh_key(server)
    auth = {"authorization": f"Bearer {key}"} if shape == "openai" else {"x-goog-api-key": key}
    json_body = {"content-type": "application/json"} if "files" not in send and "data" not in send else {}
    headers = {**auth, **json_body, **send.get("headers", {})}
    body = {k: v for k, v in send.items() if k != "headers"}
    response = http.request(method, server.base_url + path, headers=headers, timeout=60, **body)
    if response.headers.get("content-type", "").startswith("text/event-stream"):  # a stream's refusal is its error event
        refused = "event: error" in response.text or "event: response.failed" in response.text
        assert response.status_code == 200 and refused and "completed" not in response.text, response.text
    elif response.status_code == 200:  # understood, but refused as an answer without an image
        assert response.json()["candidates"][0]["finishReason"] == "NO_IMAGE", response.text
    else:
        assert 400 <= response.status_code < 500, response.text
        error = response.json()["error"]
        assert ("type" in error) if shape == "openai" else (error["code"] == response.status_code), error
    account = http.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()
    assert account["balance_micros"] == 1_000_000 and account["held_micros"] == 0
    assert http.get(f"{server.base_url}/flashbulb/account/usage", headers={"x-goog-api-key": key}).status_code == 200
    assert server.healthy()
    if zlib.crc32(name.encode()) % 8 == 0:  # a real call still works (every case would add minutes)
        assert server.generate(key, gemini_body(png_bytes(astronaut(16)), "make it brighter")).status_code == 200


def test_slow_clients_are_closed_within_their_timeouts_while_others_are_served(tmp_path):
    import socket

    server = start_server(
        tmp_path, f"sqlite:///{tmp_path / 'slow.db'}", config="[limits]\nhead_timeout_s = 2\nbody_timeout_s = 2\n"
    )
    port = int(server.base_url.rsplit(":", 1)[1])
    try:
        key = server.create_key("1")

        def connect() -> socket.socket:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.settimeout(0.2)
            return sock

        # 30 connections that never finish their head (a header line a second), 10 whose body trickles.
        heads = [connect() for _ in range(30)]
        bodies = [connect() for _ in range(10)]
        for sock in heads:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        for sock in bodies:
            sock.sendall(
                b"POST /v1beta/models/flashbulb-photo:generateContent HTTP/1.1\r\nhost: x\r\n"
                b"x-goog-api-key: " + key.encode() + b"\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"
            )
        started = time.monotonic()
        open_ones = {*heads, *bodies}
        answers: dict[socket.socket, bytes] = {}
        while open_ones and time.monotonic() - started < 8:
            assert server.generate(key, gemini_body(png_bytes(astronaut(16)), "make it brighter")).status_code == 200
            for sock in list(open_ones):
                try:
                    sock.sendall(b"x-slow: 1\r\n" if sock in heads else b" ")
                    while chunk := sock.recv(65536):
                        answers[sock] = answers.get(sock, b"") + chunk
                    open_ones.discard(sock)  # the server closed it
                except TimeoutError:
                    pass
                except OSError:  # reset or broken pipe: closed too
                    open_ones.discard(sock)
            time.sleep(0.5)
        closed_after = time.monotonic() - started
        assert not open_ones, f"{len(open_ones)} slow connections still open after {closed_after:.1f} s"
        assert all(b"too slowly" in answers.get(sock, b"") for sock in bodies), [answers.get(s, b"")[:80] for s in bodies]
        assert server.healthy()
    finally:
        server.stop()


def peak_rss_mb(pid: int, *, reset: bool = False) -> float:
    """The process's peak resident memory since the last reset (Linux: VmHWM; writing 5 to clear_refs resets it)."""
    if reset:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def test_queued_calls_hold_at_most_the_servers_pixels_in_flight(tmp_path):
    """The memory attack: many concurrent calls, each within its own pixel limit, each with an image
    of 9 MP (a 30 KB PNG), at a model that takes 3 s a call. Past max_pixels_in_flight (25 MP: two of
    them) a call is a free 503 before its image is decoded, so the API process holds two images,
    not 24 (measured: 184 MB; with the bound off, 1,187 MB and all 24 queued)."""
    from concurrent.futures import ThreadPoolExecutor

    # No per-key concurrency limit: an attacker has as many keys as it likes.
    config = "[limits]\nmax_input_pixels = 10000000\nmax_pixels_in_flight = 25000000\n" + SLOW_MODEL
    config += "[rate_limits]\nkey_concurrent = 0\naccount_concurrent = 0\n"
    config += '[diffusion]\nwarm_models = ["slow"]\n'  # only the slow model is called: no photo worker to start
    server = start_server(tmp_path, f"sqlite:///{tmp_path / 'pixels.db'}", config=config)
    try:
        key = server.create_key("1")
        body = gemini_body(png_bytes(Image.new("RGB", (3000, 3000), (90, 120, 150))), "sleep 3")

        def attack() -> list[httpx.Response]:
            with ThreadPoolExecutor(24) as pool:
                return list(pool.map(lambda _: server.generate(key, body, model="slow"), range(24)))

        before = peak_rss_mb(server.process.pid, reset=True)
        answers = attack()
        grew = peak_rss_mb(server.process.pid) - before
        served = [a for a in answers if a.status_code == 200]
        refused = [a for a in answers if a.status_code != 200]
        assert 1 <= len(served) <= 12 and len(served) + len(refused) == 24, [a.status_code for a in answers]
        for answer in refused:
            assert_google_error(answer, 503, "UNAVAILABLE", "pixels")
            assert answer.headers["retry-after"] == "2"
        assert grew < 300, f"the API process grew by {grew:.0f} MB under the attack"
        account = http.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()
        assert account["balance_micros"] == 1_000_000 - 2000 * len(served) and account["held_micros"] == 0
        # Every image given back: a second wave is served as the first was, and a lone call at once.
        assert any(a.status_code == 200 for a in attack())
        assert server.generate(key, body, model="slow").status_code == 200
        assert "flashbulb_pixels_in_flight 0.0" in http.get(f"{server.base_url}/metrics").text
    finally:
        server.stop()

"""Property tests: hypothesis generates JSON bodies shaped like each endpoint's request (every field
present or not, each holding a value of the right kind or of any other JSON kind) and sends them to
a live server; none may be answered with a 5xx, and none that is refused may cost anything."""

from __future__ import annotations

import base64

import httpx
import pytest
from conftest import astronaut, png_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PHOTO_B64 = base64.b64encode(png_bytes(astronaut(16))).decode()
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def field(right: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a value of the right kind, sometimes any JSON at all."""
    return st.one_of(right, right, ANY_JSON)


def optional(**fields: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={name: field(value) for name, value in fields.items()})


PART = optional(
    text=st.text(max_size=40),
    inlineData=optional(
        mimeType=st.sampled_from(["image/png", "text/plain", ""]), data=st.sampled_from([PHOTO_B64, "", "!!", "aGVsbG8="])
    ),
    fileData=optional(fileUri=st.text(max_size=30)),
    thought=st.booleans(),
    thoughtSignature=st.text(max_size=10),
)
GEMINI = optional(
    contents=st.lists(optional(role=st.sampled_from(["user", "model", "x"]), parts=st.lists(PART, max_size=3)), max_size=3),
    generationConfig=optional(
        responseModalities=st.lists(st.sampled_from(["TEXT", "IMAGE", "AUDIO"]), max_size=3),
        candidateCount=st.integers(-2, 6),
        seed=st.integers(-5, 2**64),
        imageConfig=optional(
            aspectRatio=st.sampled_from(["1:1", "4:1", "2:1", "x"]), imageSize=st.sampled_from(["512", "1K", "8K", ""])
        ),
    ),
    systemInstruction=optional(parts=st.lists(PART, max_size=2)),
    safetySettings=st.lists(ANY_JSON, max_size=2),
)
OPENAI = optional(
    prompt=st.text(max_size=40),
    model=st.sampled_from(["gpt-image-1", "flashbulb-photo", "nope"]),
    n=st.integers(-1, 12),
    size=st.sampled_from(["auto", "1024x1024", "1000x1000", "16x4096", "x"]),
    quality=st.sampled_from(["low", "high", "max", "x"]),
    output_format=st.sampled_from(["png", "jpeg", "gif"]),
    output_compression=st.integers(-5, 120),
    background=st.sampled_from(["auto", "transparent", "x"]),
    stream=st.booleans(),
    partial_images=st.integers(-1, 5),
    response_format=st.sampled_from(["url", "b64_json", "x"]),
)
RESPONSES = optional(
    model=st.text(max_size=10),
    input=st.one_of(
        st.text(max_size=30),
        st.lists(
            optional(
                role=st.sampled_from(["user", "assistant"]),
                content=st.one_of(
                    st.text(max_size=20),
                    st.lists(
                        optional(
                            type=st.sampled_from(["input_text", "input_image", "x"]),
                            text=st.text(max_size=20),
                            image_url=st.sampled_from(["data:image/png;base64," + PHOTO_B64, "http://x", "data:,"]),
                        ),
                        max_size=3,
                    ),
                ),
            ),
            max_size=3,
        ),
    ),
    tools=st.lists(
        optional(
            type=st.sampled_from(["image_generation", "web_search"]),
            model=st.sampled_from(["flashbulb-photo", "nope"]),
            size=st.sampled_from(["auto", "64x64", "x"]),
            action=st.sampled_from(["auto", "edit", "x"]),
        ),
        max_size=2,
    ),
    previous_response_id=st.text(max_size=20),
    stream=st.booleans(),
)
ENDPOINTS = {
    "generateContent": ("/v1beta/models/flashbulb-photo:generateContent", GEMINI, "x-goog-api-key"),
    "countTokens": ("/v1beta/models/flashbulb-photo:countTokens", GEMINI, "x-goog-api-key"),
    "images.generations": ("/v1/images/generations", OPENAI, "authorization"),
    "images.edits (JSON)": (
        "/v1/images/edits",
        OPENAI.map(lambda b: {**b, "images": [{"image_url": "data:image/png;base64," + PHOTO_B64}]}),
        "authorization",
    ),
    "responses": ("/v1/responses", RESPONSES, "authorization"),
}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_generated_bodies_never_get_a_server_error(server, endpoint):
    path, bodies, header = ENDPOINTS[endpoint]
    key = server.create_key("100")
    auth = {header: f"Bearer {key}" if header == "authorization" else key}

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies)
    def sent(body: dict) -> None:
        with httpx.Client(timeout=120) as client:
            response = client.post(server.base_url + path, json=body, headers=auth)
            assert response.status_code < 500, (body, response.status_code, response.text[:500])
            if response.status_code >= 400:  # refused: nothing held or charged
                assert (
                    client.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()["held_micros"] == 0
                )

    sent()

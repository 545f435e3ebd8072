"""The unchanged `openai` SDK against a live flashbulb server: images.generate / images.edit / models,
with tiny random-weight diffusers pipelines (built here) for real generation and flashbulb-photo for
photo edits, and every error class the SDK raises."""

from __future__ import annotations

import base64
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import openai
import pytest
import tiny_pipelines
from conftest import actions_of, astronaut, http, png_bytes, read_manifest, start_server
from PIL import Image, ImageFilter
from skimage import data

from flashbulb.engine.backends.diffusion import catalog
from flashbulb.vision.safety import EXPLICIT

TINY_PIXELS = 64 * 64
URL_TTL_S = 20
MAX_BODY_BYTES = 2 * 1024 * 1024
TINY_MODELS = {"tiny-sd": "sd-turbo", "tiny-klein": "flux2-klein-4b"}  # a generator, and an edit model


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("openai-weights")
    tables = []
    for name, like in TINY_MODELS.items():
        path = tiny_pipelines.build(catalog.by_name()[like].pipeline, root / name)
        tables.append(f'[models.{name}]\nlike = "{like}"\npath = "{path}"\nsteps = 3\npixels = {TINY_PIXELS}\n')
    config = (
        f"[limits]\nmax_body_bytes = {MAX_BODY_BYTES}\noutput_url_ttl_s = {URL_TTL_S}\n\n"
        f"[diffusion]\nbatch_window_ms = 0\nwarm_models = {json.dumps(['flashbulb-photo', *TINY_MODELS])}\n\n"
        # A face counts as unsafe here: a harmless way to see moderation_blocked (the astronaut has one).
        f"[safety]\nblock = {json.dumps([*EXPLICIT, 'FACE_FEMALE'])}\n\n" + "\n".join(tables)
    )
    srv = start_server(tmp_path_factory.mktemp("openai-server"), "", config=config)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def key(server) -> str:
    return server.create_key("100")


def client_for(server, key: str, **options) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"{server.base_url}/v1", **{"max_retries": 0, "timeout": 120, **options})


@pytest.fixture(scope="module")
def client(server, key) -> openai.OpenAI:
    return client_for(server, key)


def balance(server, key: str) -> int:
    return http.get(f"{server.base_url}/flashbulb/account", headers={"authorization": f"Bearer {key}"}).json()["balance_micros"]


def tiny_size(name: str, ratio: str) -> tuple[int, int]:
    return catalog.local_model(name, {"like": TINY_MODELS[name], "pixels": TINY_PIXELS}).size(ratio)


def decoded(item) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item.b64_json)))


def photo(name: str = "coffee", size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Reference photos without faces (a face is 'unsafe' on this server)."""
    return Image.fromarray(getattr(data, name)()).convert("RGB").resize(size, Image.Resampling.LANCZOS)


def upload(image: Image.Image, name: str = "photo.png") -> tuple[str, bytes, str]:
    return (name, png_bytes(image), "image/png")


# ---- models ----


def test_models_list_and_retrieve_in_openai_shape_while_gemini_callers_get_theirs(server, key, client):
    listed = {m.id: m for m in client.models.list()}
    assert {"flashbulb-photo", "tiny-sd", "tiny-klein", "gpt-image-1", "dall-e-3"} <= set(listed)
    assert listed["tiny-sd"].object == "model" and listed["tiny-sd"].owned_by == "flashbulb"
    gpt = client.models.retrieve("gpt-image-1")
    assert gpt.id == "gpt-image-1" and gpt.flashbulb["model"] == "flashbulb-photo"  # no FLUX.2 klein installed
    # The same paths in Gemini's shape for a Gemini key, even next to a bearer token.
    for headers in ({"x-goog-api-key": key}, {"x-goog-api-key": key, "authorization": f"Bearer {key}"}):
        body = http.get(f"{server.base_url}/v1/models", headers=headers).json()
        assert "models/tiny-sd" in {m["name"] for m in body["models"]}
    gemini = http.get(f"{server.base_url}/v1/models/tiny-sd", params={"key": key}).json()
    assert gemini["name"] == "models/tiny-sd"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found" and caught.value.param == "model"


# ---- generations ----


def test_generate_b64_png_maps_the_size_and_charges_what_it_reports(server, key, client):
    before = balance(server, key)
    raw = client.images.with_raw_response.generate(model="tiny-sd", prompt="a lighthouse at dusk", size="1536x1024")
    result = raw.parse()
    [item] = result.data
    image = decoded(item)
    assert image.format == "PNG" and image.size == (1536, 1024)  # exactly the size asked
    assert result.size == f"{image.width}x{image.height}" and result.output_format == "png"
    assert result.quality == "high" and result.background == "opaque" and result.created > 0
    assert result.usage.output_tokens == 1290 and result.usage.input_tokens_details.text_tokens > 0
    charged = int(raw.headers["x-flashbulb-charge-micros"])
    assert charged == result.flashbulb["charge_micros"] > 0 and balance(server, key) == before - charged
    assert result.flashbulb["model"] == "tiny-sd" and result.flashbulb["aspect_ratio"] == "3:2"
    assert raw.headers["x-request-id"] == result.flashbulb["request_id"]


@pytest.mark.parametrize(
    ("size", "method"),
    [("1024x1536", "Real-ESRGAN x4plus upscale"), ("1792x1024", "Real-ESRGAN x4plus upscale"), ("64x128", "native")],
)
def test_every_size_is_delivered_exactly_and_says_how(client, size, method):
    # The tiny model draws up to 4x its 64x64 area itself; larger sizes are drawn at its own size and
    # enlarged by the super-resolution network, and the answer says which.
    result = client.images.generate(model="tiny-sd", prompt="a red fox", size=size)
    width, height = (int(side) for side in size.split("x"))
    assert decoded(result.data[0]).size == (width, height) and result.size == size
    assert result.flashbulb["quality"]["output_size"]["method"] == method


def test_auto_size_is_the_models_own(client):
    result = client.images.generate(model="tiny-sd", prompt="a red fox", size="auto")
    assert decoded(result.data[0]).size == tiny_size("tiny-sd", "1:1") and "output_size" not in result.flashbulb["quality"]


@pytest.mark.parametrize(
    ("size", "says"), [("1000x1000", "multiples of 16"), ("4096x1024", "3 times"), ("3840x3840", "3840x2160")]
)
def test_sizes_gpt_image_2_refuses_are_a_400_naming_the_rule(client, size, says):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="tiny-sd", prompt="a red fox", size=size)
    assert caught.value.param == "size" and says in caught.value.message


def test_n_2_with_a_seed_gives_two_images_repeatably(client):
    def generate() -> list[bytes]:
        result = client.images.generate(model="tiny-sd", prompt="a red fox in snow", n=2, extra_body={"seed": 7})
        return [png_bytes(decoded(item)) for item in result.data]

    first = generate()
    assert len(first) == 2 and first[0] != first[1]
    assert generate() == first


@pytest.mark.parametrize(
    ("fmt", "magic", "pil_format"), [("png", b"\x89PNG", "PNG"), ("jpeg", b"\xff\xd8\xff", "JPEG"), ("webp", b"RIFF", "WEBP")]
)
def test_url_results_are_served_without_a_key_in_the_format_asked(client, fmt, magic, pil_format):
    result = client.images.generate(model="tiny-sd", prompt="a city at night", response_format="url", output_format=fmt)
    [item] = result.data
    assert item.b64_json is None and item.url.startswith("http://127.0.0.1:")
    response = http.get(item.url)  # no key: the URL is the permission
    assert response.status_code == 200 and response.content.startswith(magic)
    assert response.headers["content-type"] == f"image/{fmt}"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == pil_format and f"{image.width}x{image.height}" == result.size
    assert result.output_format == fmt


def test_jpeg_compression_makes_smaller_files(client):
    def jpeg(compression: int) -> bytes:
        result = client.images.generate(
            model="tiny-sd", prompt="a forest", output_format="jpeg", output_compression=compression, extra_body={"seed": 3}
        )
        return base64.b64decode(result.data[0].b64_json)

    small, large = jpeg(10), jpeg(100)
    assert small[:3] == large[:3] == b"\xff\xd8\xff" and len(small) < len(large)


def test_a_text_only_prompt_on_the_photo_model_is_image_generation_failed_and_free(server):
    key = server.create_key("1")
    client = client_for(server, key)
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="a cat on a skateboard")  # the default model: gpt-image-1 -> flashbulb-photo
    assert caught.value.code == "image_generation_failed" and "attach an image" in caught.value.message
    assert caught.value.response.headers["x-flashbulb-charge-micros"] == "0"
    assert balance(server, key) == 1_000_000


# ---- edits ----


def test_edit_one_image_with_the_photo_model(server, key, client):
    result = client.images.edit(image=upload(photo("rocket", (48, 64))), prompt="upscale 2x", model="flashbulb-photo")
    assert decoded(result.data[0]).size == (96, 128)
    assert result.usage.input_tokens_details.image_tokens == 258


def test_edit_with_several_images(client):
    refs = [upload(photo("coffee"), "a.png"), upload(photo("rocket"), "b.png"), upload(photo("chelsea"), "c.png")]
    result = client.images.edit(image=refs, prompt="the cat on the coffee table next to the rocket", model="tiny-klein")
    assert decoded(result.data[0]).size == tiny_size("tiny-klein", "4:3")  # the first reference's shape
    assert result.usage.input_tokens_details.image_tokens == 3 * 258


def test_edit_with_a_mask_repaints_only_the_transparent_area(client):
    original = photo("coffee")
    mask = Image.new("RGBA", original.size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 48))  # transparent left half: repaint it
    result = client.images.edit(
        image=upload(original), mask=("mask.png", png_bytes(mask), "image/png"), prompt="a latte instead", model="tiny-klein"
    )
    out = np.asarray(decoded(result.data[0]).convert("RGB"), dtype=np.int16)
    before = np.asarray(original, dtype=np.int16)
    assert out.shape == before.shape  # the photo at its own size
    assert np.array_equal(out[:, 34:], before[:, 34:])  # opaque in the mask: the exact pixels sent
    assert np.abs(out[:, :30] - before[:, :30]).mean() > 5


def test_masks_need_alpha_and_the_images_size(client):
    original = photo("coffee")
    for mask, says in ((Image.new("RGB", original.size), "alpha channel"), (Image.new("RGBA", (10, 10)), "same size")):
        with pytest.raises(openai.BadRequestError) as caught:
            client.images.edit(
                image=upload(original), mask=("m.png", png_bytes(mask), "image/png"), prompt="x", model="tiny-klein"
            )
        assert caught.value.param == "mask" and says in caught.value.message


def test_an_unsafe_input_is_moderation_blocked_and_free(server):
    key = server.create_key("1")
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(server, key).images.edit(image=upload(astronaut(128)), prompt="restore", model="flashbulb-photo")
    assert caught.value.code == "moderation_blocked" and caught.value.type == "invalid_request_error"
    assert "safety" in caught.value.message and balance(server, key) == 1_000_000


# ---- errors ----


BAD_OPTIONS = {
    "n above 10": ({"n": 11}, "n", "integer_above_max_value"),
    "n of the wrong type": ({"n": "two"}, "n", "invalid_type"),
    "unknown size": ({"size": "huge"}, "size", "invalid_value"),
    "unknown quality": ({"quality": "ultra"}, "quality", "invalid_value"),
    "unknown format": ({"output_format": "gif"}, "output_format", "invalid_value"),
    "compression out of range": ({"output_compression": 101}, "output_compression", "integer_above_max_value"),
    "transparent jpeg": ({"background": "transparent", "output_format": "jpeg"}, "background", "invalid_value"),
    "unknown response format": ({"response_format": "base64"}, "response_format", "invalid_value"),
    "empty prompt": ({"prompt": "  "}, "prompt", "empty_string"),
    "prompt of the wrong type": ({"prompt": 42}, "prompt", "invalid_type"),
    "a model that is not installed": ({"model": "flux2-klein-4b"}, "model", "model_not_installed"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_options_are_400s_naming_the_param_and_cost_nothing(server, key, client, case):
    options, param, code = BAD_OPTIONS[case]
    before = balance(server, key)
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(**{"model": "tiny-sd", "prompt": "a fox", **options})
    assert (caught.value.param, caught.value.code, caught.value.type) == (param, code, "invalid_request_error")
    assert balance(server, key) == before


def test_missing_prompt_and_malformed_json_are_400s(server, key):
    url, auth = f"{server.base_url}/v1/images/generations", {"authorization": f"Bearer {key}"}
    missing = http.post(url, headers=auth, json={"model": "tiny-sd"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_required_parameter"
    assert missing.json()["error"]["param"] == "prompt"
    broken = http.post(url, headers={**auth, "content-type": "application/json"}, content=b"{not json")
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"%PDF-1.4 not an image", "not a readable"), (png_bytes(photo("coffee"))[:300], "corrupt")],
)
def test_a_corrupt_upload_is_a_400_naming_image(client, content, says):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(image=("bad.png", content, "image/png"), prompt="restore", model="flashbulb-photo")
    assert caught.value.param == "image" and says in caught.value.message


def test_an_upload_over_the_body_limit_is_a_413_and_the_server_stays_up(server, client):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1100, 1100, 3), dtype=np.uint8))
    big = png_bytes(noise)
    assert len(big) > MAX_BODY_BYTES
    with pytest.raises(openai.APIStatusError) as caught:
        client.images.edit(image=("big.png", big, "image/png"), prompt="restore", model="flashbulb-photo")
    assert caught.value.status_code == 413 and caught.value.code == "request_too_large"

    def chunks():  # no content-length: the limit is enforced while reading
        yield b'{"prompt": "'
        for _ in range(3):
            yield b"a" * (1024 * 1024)
        yield b'"}'

    response = http.post(
        f"{server.base_url}/v1/images/generations",
        content=chunks(),
        headers={"authorization": f"Bearer {client.api_key}", "content-type": "application/json"},
    )
    assert response.status_code == 413 and response.json()["error"]["type"] == "invalid_request_error"
    assert server.healthy()


def test_edits_take_multipart_or_json_with_data_urls(server, key):
    url, auth = f"{server.base_url}/v1/images/edits", {"authorization": f"Bearer {key}"}
    image = "data:image/png;base64," + base64.b64encode(png_bytes(photo())).decode()
    answer = http.post(
        url, headers=auth, json={"model": "flashbulb-photo", "prompt": "make it brighter", "images": [{"image_url": image}]}
    )
    assert answer.status_code == 200, answer.text
    assert Image.open(io.BytesIO(base64.b64decode(answer.json()["data"][0]["b64_json"]))).size == (64, 48)
    missing = http.post(url, headers=auth, json={"prompt": "x"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "images"
    fetched = http.post(url, headers=auth, json={"prompt": "x", "images": [{"image_url": "https://example.com/a.png"}]})
    assert fetched.status_code == 400 and "not fetched" in fetched.json()["error"]["message"]
    plain = http.post(url, headers={**auth, "content-type": "text/plain"}, content=b"x")
    assert plain.status_code == 400 and "multipart/form-data" in plain.json()["error"]["message"]


def test_keys_missing_or_wrong_are_401s(server):
    with pytest.raises(openai.AuthenticationError) as caught:
        client_for(server, "fb-not-a-real-key").images.generate(prompt="a fox", model="tiny-sd")
    assert caught.value.code == "invalid_api_key" and caught.value.type == "authentication_error"
    for path in ("/v1/images/generations", "/v1/images/edits"):
        response = http.post(f"{server.base_url}{path}", json={"prompt": "a fox"})
        assert response.status_code == 401 and "Authorization: Bearer" in response.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError):
        client_for(server, "fb-not-a-real-key").models.list()


def test_unknown_model_and_unknown_path_are_404s(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.images.generate(prompt="a fox", model="no-such-model")
    assert caught.value.param == "model" and caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as caught:
        client.post("/images/variations", body={"prompt": "a fox"}, cast_to=object)  # dall-e-2's; not offered
    assert "Invalid URL" in caught.value.message


def test_out_of_credits_is_a_rate_limit_error_the_sdk_does_not_retry(server):
    client = client_for(server, server.create_key("0"), max_retries=2)  # x-should-retry: false stops the SDK's retries
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(prompt="a fox", model="tiny-sd")
    assert caught.value.code == "insufficient_quota" and time.monotonic() - started < 5
    assert caught.value.response.headers["x-should-retry"] == "false"


def test_a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_pays_once(server):
    key = server.create_key("1")
    client = client_for(server, key)
    headers = {"Idempotency-Key": f"retry-{time.time_ns()}"}
    first = client.images.edit(image=upload(photo("rocket")), prompt="upscale 2x", model="flashbulb-photo", extra_headers=headers)
    paid = balance(server, key)
    again = client.images.with_raw_response.edit(
        image=upload(photo("rocket")), prompt="upscale 2x", model="flashbulb-photo", extra_headers=headers
    )
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parse().data[0].b64_json == first.data[0].b64_json  # (a new multipart boundary: still the same call)
    assert balance(server, key) == paid < 1_000_000
    with pytest.raises(openai.BadRequestError, match="different request"):
        client.images.edit(
            image=upload(photo("rocket")), prompt="make it brighter", model="flashbulb-photo", extra_headers=headers
        )


def test_an_expired_url_is_a_404_and_its_file_is_swept(server, client):
    result = client.images.generate(model="tiny-sd", prompt="a desert", response_format="url")
    url = result.data[0].url
    path = Path(server.data_dir) / "outputs" / url.rsplit("/", 1)[1]
    assert http.get(url).status_code == 200
    past = time.time() - URL_TTL_S - 1
    os.utime(path, (past, past))  # as if issued longer ago than the URL lives
    response = http.get(url)
    assert response.status_code == 404 and response.json()["error"]["type"] == "invalid_request_error"
    deadline = time.time() + 10  # the sweeper runs every URL_TTL_S / 10 seconds
    while path.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not path.exists()
    assert http.get(url.rsplit("/", 1)[0] + "/" + "A" * 32 + ".png").status_code == 404


# ---- streaming, the Responses API and the newest model names ----


@pytest.mark.parametrize("name", ["gpt-image-1.5", "gpt-image-2", "gpt-image-1-mini"])
def test_the_newest_gpt_image_names_are_listed_and_answer(client, name):
    assert name in {m.id for m in client.models.list()}
    result = client.images.edit(model=name, image=upload(photo()), prompt="make it brighter")
    assert decoded(result.data[0]).size == (64, 48) and result.flashbulb["model"] == "flashbulb-photo"


def test_generate_streams_partial_images_decoded_from_the_latents_then_the_image_and_charges_once(server, key, client):
    before = balance(server, key)
    events = list(client.images.generate(model="tiny-sd", prompt="a red fox", size="128x128", stream=True, partial_images=2))
    # 3 steps: a partial image after each of the first two, decoded from that step's latents.
    assert [e.type for e in events] == [*["image_generation.partial_image"] * 2, "image_generation.completed"]
    completed = events[-1]
    image = decoded(completed)
    partials = [np.asarray(decoded(e).convert("RGB"), dtype=float) for e in events[:2]]
    assert [e.partial_image_index for e in events[:2]] == [0, 1] and all(p.shape == (128, 128, 3) for p in partials)
    final = np.asarray(image.convert("RGB"), dtype=float)
    # The same picture coming into focus: each partial nearer the result than the one before, none it.
    distances = [np.abs(p - final).mean() for p in partials]
    assert distances[0] > distances[1] > 0, distances
    assert all(np.corrcoef(p.ravel(), final.ravel())[0, 1] > 0.5 for p in partials)
    assert completed.flashbulb["timings_ms"]["previews"] > 0
    plain = list(client.images.generate(model="tiny-sd", prompt="a red fox", size="128x128", stream=True))
    assert [e.type for e in plain] == ["image_generation.completed"] and "previews" not in plain[0].flashbulb["timings_ms"]
    assert image.size == (128, 128) and completed.size == "128x128" and completed.output_format == "png"
    assert completed.usage.output_tokens == 1290
    charged = completed.flashbulb["charge_micros"] + plain[0].flashbulb["charge_micros"]
    assert balance(server, key) == before - charged < before


def test_a_diffusion_edit_streams_a_partial_image_at_the_results_size(client):
    events = list(
        client.images.edit(model="tiny-klein", image=upload(photo()), prompt="make it a painting", stream=True, partial_images=1)
    )
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    assert decoded(events[0]).size == decoded(events[1]).size


def test_edit_streams_its_stages_as_partial_images_and_a_refusal_is_an_error_event_that_costs_nothing(server, key, client):
    original = photo()
    events = list(
        client.images.edit(
            model="flashbulb-photo",
            image=upload(original),
            stream=True,
            partial_images=2,
            prompt="make it brighter, then make it black and white",
        )
    )
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    stage, final = decoded(events[0]).convert("RGB"), decoded(events[1]).convert("RGB")
    assert events[0].partial_image_index == 0 and stage.size == final.size == (64, 48)
    assert np.asarray(stage, dtype=float).mean() > np.asarray(original, dtype=float).mean() + 5  # brighter, still in colour
    assert np.ptp(np.asarray(stage, dtype=float), axis=2).mean() > 5 and np.ptp(np.asarray(final, dtype=float), axis=2).mean() < 1
    without = list(
        client.images.edit(
            model="flashbulb-photo", image=upload(original), stream=True, prompt="make it brighter, then make it black and white"
        )
    )
    assert [e.type for e in without] == ["image_edit.completed"]  # partial_images 0: the final image alone
    before = balance(server, key)
    with pytest.raises(openai.APIError) as caught:
        list(client.images.edit(model="flashbulb-photo", image=upload(photo()), prompt="put me on the moon", stream=True))
    assert "can't do" in caught.value.message and balance(server, key) == before


def data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


def test_responses_image_tool_generates_then_edits_by_previous_response_id(server, key, client):
    first = client.responses.create(
        model="gpt-5", input="a lighthouse at dusk", tools=[{"type": "image_generation", "model": "tiny-sd", "size": "128x128"}]
    )
    [call] = first.output
    assert first.status == "completed" and call.type == "image_generation_call" and call.status == "completed"
    assert Image.open(io.BytesIO(base64.b64decode(call.result))).size == (128, 128)
    assert call.revised_prompt == "a lighthouse at dusk" and first.usage.output_tokens == 1290
    # The next turn edits the image the first one made (the photo model sharpens it).
    second = client.responses.create(
        model="gpt-5",
        input="make it sharper",
        previous_response_id=first.id,
        tools=[{"type": "image_generation", "model": "flashbulb-photo"}],
    )
    [edit] = second.output
    assert edit.action == "edit" and Image.open(io.BytesIO(base64.b64decode(edit.result))).size == (128, 128)
    # Both carry content credentials: made by the model, then an edit with the first as its input.
    made, edited = (read_manifest(base64.b64decode(c.result), "image/png") for c in (call, edit))
    assert made["state"] == edited["state"] == "Valid"
    assert actions_of(made["manifest"])[0]["action"] == "c2pa.created"
    assert [a["action"] for a in actions_of(edited["manifest"])][:2] == ["c2pa.opened", "c2pa.edited"]
    # Another account can't reach this account's responses.
    with pytest.raises(openai.NotFoundError):
        client_for(server, server.create_key("1")).responses.create(
            model="gpt-5", input="sharper", previous_response_id=first.id, tools=[{"type": "image_generation"}]
        )


def test_responses_input_image_streams_the_lifecycle_events(client):
    stream = client.responses.create(
        model="gpt-5",
        stream=True,
        tools=[{"type": "image_generation", "model": "flashbulb-photo", "partial_images": 1}],
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "make it brighter, then sharper"},
                    {"type": "input_image", "image_url": data_url(photo())},
                ],
            }
        ],
    )
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    [partial] = [e for e in events if e.type == "response.image_generation_call.partial_image"]
    assert Image.open(io.BytesIO(base64.b64decode(partial.partial_image_b64))).size == (64, 48)
    assert "response.image_generation_call.completed" in kinds and "response.output_item.done" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    [call] = events[-1].response.output
    assert Image.open(io.BytesIO(base64.b64decode(call.result))).size == (64, 48)


def test_responses_without_the_image_tool_is_a_400_saying_so(server, key, client):
    before = balance(server, key)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-5", input="hello")
    assert caught.value.param == "tools" and "image_generation" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="gpt-5",
            input=[{"role": "user", "content": [{"type": "input_image", "image_url": "https://example.com/cat.png"}]}],
            tools=[{"type": "image_generation"}],
        )
    assert "data URL" in caught.value.message and balance(server, key) == before


# ---- how readily the safety check blocks: Gemini's safetySettings, OpenAI's moderation ----


def blurred_astronaut(blur: float) -> Image.Image:
    """The astronaut's face, which this server blocks, seen less surely the more it is blurred
    (NudeNet's FACE_FEMALE score at 256 px: 0.77 sharp, 0.66 at blur 2, 0.42 at blur 6)."""
    return astronaut(256).filter(ImageFilter.GaussianBlur(blur))


def test_gemini_safety_settings_set_how_readily_the_check_blocks_but_never_turn_it_off(server, key):
    from google.genai import errors, types

    genai = server.genai(key)

    def blocked(image: Image.Image, threshold: str | None) -> bool:
        settings = [types.SafetySetting(category="HARM_CATEGORY_SEXUALLY_EXPLICIT", threshold=threshold)] if threshold else None
        answer = genai.models.generate_content(
            model="flashbulb-photo",
            contents=[image, "make it brighter"],
            config=types.GenerateContentConfig(
                safety_settings=[
                    types.SafetySetting(category="HARM_CATEGORY_HARASSMENT", threshold="BLOCK_NONE"),
                    *(settings or []),
                ]
            ),
        )
        return answer.candidates is None and answer.prompt_feedback.block_reason.name == "IMAGE_SAFETY"

    unsure, doubtful = blurred_astronaut(2), blurred_astronaut(6)
    assert blocked(unsure, None) and not blocked(unsure, "BLOCK_ONLY_HIGH")
    assert (
        not blocked(doubtful, None)
        and not blocked(doubtful, "BLOCK_MEDIUM_AND_ABOVE")
        and blocked(doubtful, "BLOCK_LOW_AND_ABOVE")
    )
    assert blocked(astronaut(256), "BLOCK_NONE") and blocked(astronaut(256), "OFF")  # the loosest level, not off
    body = {
        "contents": [{"parts": [{"text": "hi"}]}],
        "safetySettings": [{"category": "HARM_CATEGORY_SEXUAL", "threshold": "OFF"}],
    }
    answer = http.post(f"{server.base_url}/v1beta/models/flashbulb-photo:generateContent", params={"key": key}, json=body)
    assert answer.status_code == 400 and "HARM_CATEGORY_SEXUALLY_EXPLICIT" in answer.json()["error"]["message"]
    with pytest.raises(errors.ClientError):
        genai.models.generate_content(
            model="flashbulb-photo",
            contents=[unsure, "make it brighter"],
            config=types.GenerateContentConfig(
                safety_settings=[{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "SOMETIMES"}]
            ),
        )


def test_openai_moderation_low_is_the_loosest_level(client):
    def edit(moderation: str | None) -> str:
        tool = {"type": "image_generation", "model": "flashbulb-photo", **({"moderation": moderation} if moderation else {})}
        content = [
            {"type": "input_text", "text": "make it brighter"},
            {"type": "input_image", "image_url": data_url(blurred_astronaut(2))},
        ]
        try:
            response = client.responses.create(model="gpt-5", tools=[tool], input=[{"role": "user", "content": content}])
        except openai.BadRequestError as error:
            return error.code or ""
        return response.output[0].status

    assert edit(None) == edit("auto") == "moderation_blocked"
    assert edit("low") == "completed"


def test_the_responses_image_tool_takes_an_input_image_mask(client):
    original = photo(size=(64, 64))
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))  # transparent: the left half may change
    response = client.responses.create(
        model="gpt-5",
        tools=[{"type": "image_generation", "model": "tiny-klein", "input_image_mask": {"image_url": data_url(mask)}}],
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "make it brighter"},
                    {"type": "input_image", "image_url": data_url(original)},
                ],
            }
        ],
    )
    result = np.asarray(Image.open(io.BytesIO(base64.b64decode(response.output[0].result))).convert("RGB"), dtype=float)
    before = np.asarray(original, dtype=float)
    assert result[:, :32].mean() > before[:, :32].mean() + 5  # brighter where the mask let it
    assert np.abs(result[:, 40:] - before[:, 40:]).mean() < 2  # the rest as it was sent
    with pytest.raises(openai.NotFoundError):  # a file_id must name one of this account's files
        client.responses.create(
            model="gpt-5",
            tools=[{"type": "image_generation", "model": "tiny-klein", "input_image_mask": {"file_id": "file-1"}}],
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "brighter"},
                        {"type": "input_image", "image_url": data_url(original)},
                    ],
                }
            ],
        )


# ---- the Files API: one store for both SDKs ----


def test_an_uploaded_file_is_a_file_id_for_the_responses_api_and_gemini_sees_it_too(server, key, client):
    original = png_bytes(photo())
    made = client.files.create(file=("coffee.png", original, "image/png"), purpose="vision")
    assert made.id.startswith("file-") and made.object == "file" and made.bytes == len(original)
    assert made.filename == "coffee.png" and made.purpose == "vision" and made.status == "processed"
    assert client.files.retrieve(made.id).bytes == len(original)
    assert made.id in [f.id for f in client.files.list()]
    assert client.files.content(made.id).read() == original

    edited = client.responses.create(
        model="gpt-5",
        input=[
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "make it brighter"}, {"type": "input_image", "file_id": made.id}],
            }
        ],
        tools=[{"type": "image_generation", "model": "flashbulb-photo"}],
    )
    [call] = edited.output
    result = Image.open(io.BytesIO(base64.b64decode(call.result))).convert("RGB")
    assert call.action == "edit" and result.size == (64, 48)
    assert np.asarray(result, dtype=float).mean() > np.asarray(photo(), dtype=float).mean() + 5

    # An images.edit sent as JSON names it the same way.
    as_json = http.post(
        f"{server.base_url}/v1/images/edits",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "flashbulb-photo", "prompt": "make it brighter", "images": [{"file_id": made.id}]},
        timeout=120,
    )
    assert as_json.status_code == 200, as_json.text
    assert Image.open(io.BytesIO(base64.b64decode(as_json.json()["data"][0]["b64_json"]))).size == (64, 48)

    # The same account's Gemini client sees the same file; another account sees nothing.
    gemini = server.genai(key)
    assert gemini.files.get(name=f"files/{made.id}").size_bytes == len(original)
    stranger = client_for(server, server.create_key("1"))
    with pytest.raises(openai.NotFoundError):
        stranger.files.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.create(
            model="gpt-5",
            input=[{"role": "user", "content": [{"type": "input_image", "file_id": made.id}]}],
            tools=[{"type": "image_generation", "model": "flashbulb-photo"}],
        )

    assert client.files.delete(made.id).deleted is True
    with pytest.raises(openai.NotFoundError) as gone:
        client.files.retrieve(made.id)
    assert gone.value.body["type"] == "invalid_request_error"  # OpenAI's error shape on the shared path


def test_files_for_what_flashbulb_does_not_have_are_refused_by_name(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("train.jsonl", b'{"x": 1}\n', "application/jsonl"), purpose="fine-tune")
    assert refused.value.body["param"] == "purpose" and "vision" in refused.value.message
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("empty.png", b"", "image/png"), purpose="vision")

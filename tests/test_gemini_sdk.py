"""The unchanged google-genai SDK against a live flashbulb server on loopback."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import astronaut, gemini_body, http, png_bytes
from google.genai import errors, types
from PIL import Image
from skimage import data


def image_parts(response) -> list[Image.Image]:
    return [
        Image.open(io.BytesIO(part.inline_data.data))
        for part in response.candidates[0].content.parts
        if part.inline_data is not None
    ]


def test_models_list_and_get(server, key):
    client = server.genai(key)
    names = [m.name for m in client.models.list()]
    assert "models/flashbulb-photo" in names
    model = client.models.get(model="flashbulb-photo")
    assert model.name == "models/flashbulb-photo"
    assert "restore" in model.description and "upscale" in model.description


def test_restore_a_real_photo_returns_a_4x_image_that_resembles_it(server, key):
    client = server.genai(key)
    photo = astronaut(64)
    response = client.models.generate_content(model="flashbulb-photo", contents=[photo, "Restore this old photo"])
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    [out] = image_parts(response)
    assert out.size == (256, 256)
    assert response.candidates[0].content.parts[1].inline_data.mime_type == "image/png"
    # The restored image is the same picture: compare at the input's size.
    small = np.asarray(out.convert("RGB").resize(photo.size, Image.Resampling.LANCZOS), dtype=float)
    assert np.abs(small - np.asarray(photo, dtype=float)).mean() < 12
    usage = response.usage_metadata
    assert usage.candidates_token_count >= 1290 and usage.prompt_token_count >= 258
    assert response.model_version == "flashbulb-photo" and response.response_id
    assert "Real-ESRGAN" in response.text


def edge_energy(image: Image.Image) -> float:
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


def test_upscale_2x_and_sharper(server, key):
    client = server.genai(key)
    photo = astronaut(48)
    [two] = image_parts(client.models.generate_content(model="flashbulb-photo", contents=[photo, "upscale 2x"]))
    assert two.size == (96, 96)
    [sharp] = image_parts(client.models.generate_content(model="flashbulb-photo", contents=[photo, "make it sharper"]))
    assert sharp.size == (48, 48)  # sharpening alone doesn't resize
    assert edge_energy(sharp) > edge_energy(photo) * 1.2


def test_hosted_model_name_is_an_alias_for_the_default_model(server, key):
    client = server.genai(key)
    response = client.models.generate_content(model="gemini-2.5-flash-image", contents=[astronaut(32), "upscale x2"])
    assert response.model_version == "flashbulb-photo"
    assert image_parts(response)[0].size == (64, 64)


def test_chat_multi_turn_edits_the_previous_result(server, key):
    client = server.genai(key)
    chat = client.chats.create(model="flashbulb-photo")
    first = chat.send_message([astronaut(32), "upscale 2x"])
    assert image_parts(first)[0].size == (64, 64)
    # Gemini 3 style: the image part is signed, and the chat sends the signature back with the next turn.
    assert first.candidates[0].content.parts[-1].thought_signature
    second = chat.send_message("now upscale it 2x again")
    assert image_parts(second)[0].size == (128, 128)


def test_streaming_sse(server, key):
    client = server.genai(key)
    chunks = list(client.models.generate_content_stream(model="flashbulb-photo", contents=[astronaut(32), "upscale 2x"]))
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert sum(len(image_parts(c)) for c in chunks) == 1


def test_a_stream_that_asks_for_progress_gets_it_before_the_answer_and_sdks_never_see_it(server, key):
    """The studio's progress bar: x-flashbulb-progress: 1 adds chunks holding only flashbulb.progress
    (the photo engine's stages, and super-resolution tiles within one) before the one answer chunk."""
    url = f"{server.base_url}/v1beta/models/flashbulb-photo:streamGenerateContent?alt=sse"
    body = gemini_body(
        png_bytes(astronaut(160)), "make it brighter, then more contrast, then make it warmer, then black and white"
    )
    events = []
    with http.stream("POST", url, json=body, headers={"x-goog-api-key": key, "x-flashbulb-progress": "1"}, timeout=120) as got:
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[5:]) for line in got.iter_lines() if line.startswith("data:")]
    *progress, answer = events
    fractions = [e["flashbulb"]["progress"] for e in progress]
    assert all(set(e) == {"flashbulb"} and set(e["flashbulb"]) == {"progress"} for e in progress)
    assert fractions == [0.25, 0.5, 0.75, 1.0]  # each of the four stages as it ends
    assert answer["candidates"][0]["finishReason"] == "STOP" and answer["flashbulb"]["charge_micros"] > 0
    # Without the header (every SDK): the one answer chunk, as before.
    cheap = gemini_body(png_bytes(astronaut(32)), "make it brighter")
    with http.stream("POST", url, json=cheap, headers={"x-goog-api-key": key}, timeout=120) as got:
        plain = [json.loads(line[5:]) for line in got.iter_lines() if line.startswith("data:")]
    assert len(plain) == 1 and "candidates" in plain[0]


def test_instruction_it_cannot_do_is_answered_with_no_image_and_no_charge(server):
    key = server.create_key("1")
    client = server.genai(key)
    response = client.models.generate_content(
        model="flashbulb-photo", contents=[astronaut(32), "restore it, then put me on a beach in Hawaii"]
    )
    assert response.candidates[0].finish_reason == types.FinishReason.NO_IMAGE
    assert "beach" in response.text and "upscale" in response.text
    assert not image_parts(response)
    assert response.usage_metadata.candidates_token_count < 1290


def test_text_only_prompt_on_the_photo_model_explains_what_it_needs(server, key):
    client = server.genai(key)
    response = client.models.generate_content(model="flashbulb-photo", contents="a cat on a skateboard")
    assert response.candidates[0].finish_reason == types.FinishReason.NO_IMAGE
    assert "attach an image" in response.text


def test_aspect_ratio_crops_before_upscaling(server, key):
    client = server.genai(key)
    photo = astronaut(64)
    response = client.models.generate_content(
        model="flashbulb-photo",
        contents=[photo, "upscale 2x"],
        config=types.GenerateContentConfig(response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio="16:9")),
    )
    [out] = image_parts(response)
    assert out.size == (128, 72)
    assert all(part.text is None for part in response.candidates[0].content.parts)  # IMAGE only was asked


def test_streaming_without_credits_is_an_http_429_before_any_event(server):
    client = server.genai(server.create_key("0"))
    with pytest.raises(errors.ClientError) as raised:
        list(client.models.generate_content_stream(model="flashbulb-photo", contents=[astronaut(16), "restore"]))
    assert raised.value.code == 429


# ---- what the hosted API added after gemini-2.5-flash-image ----


def test_count_tokens_counts_the_prompt_as_generate_content_does(server, key):
    client = server.genai(key)
    contents = [astronaut(64), "make it sharper please"]
    counted = client.models.count_tokens(model="gemini-3-pro-image-preview", contents=contents)
    assert counted.total_tokens == 258 + 6  # one image tile, 22 characters of text
    answered = client.models.generate_content(model="gemini-3-pro-image-preview", contents=contents)
    assert answered.usage_metadata.prompt_token_count == counted.total_tokens


@pytest.mark.parametrize(
    "name", ["gemini-3-pro-image-preview", "gemini-3-pro-image", "gemini-3.1-flash-image-preview", "gemini-3.1-flash-image"]
)
def test_gemini_3_image_names_are_listed_and_answer(server, key, name):
    client = server.genai(key)
    assert f"models/{name}" in [m.name for m in client.models.list()]
    assert client.models.get(model=name).name == f"models/{name}"
    response = client.models.generate_content(model=name, contents=[astronaut(32), "upscale 2x"])
    assert response.model_version == "flashbulb-photo" and image_parts(response)[0].size == (64, 64)


@pytest.mark.parametrize(
    ("image_size", "ratio", "size"),
    [("2K", None, (2048, 2048)), ("512", "4:1", (1024, 256)), ("1K", "1:4", (512, 2048))],
)
def test_image_size_delivers_those_pixels_and_says_how(server, key, image_size, ratio, size):
    client = server.genai(key)
    # A portrait cropped to 4:1 loses its face (and flashbulb-photo then refuses): coffee has none.
    photo = astronaut(64) if ratio is None else Image.fromarray(data.coffee()).resize((96, 64), Image.Resampling.LANCZOS)
    response = client.models.generate_content(
        model="gemini-3.1-flash-image-preview",
        contents=[photo, "make it sharper"],
        config=types.GenerateContentConfig(image_config=types.ImageConfig(image_size=image_size, aspect_ratio=ratio)),
    )
    [out] = image_parts(response)
    assert out.size == size
    assert "Real-ESRGAN" in response.text and f"delivered at {size[0]}x{size[1]}" in response.text
    if ratio is None:  # the same picture, only larger
        small = np.asarray(out.convert("RGB").resize(photo.size, Image.Resampling.LANCZOS), dtype=float)
        assert np.abs(small - np.asarray(photo, dtype=float)).mean() < 12


def test_an_unknown_image_size_or_ratio_is_a_400_listing_the_choices(server, key):
    client = server.genai(key)
    for config, says in ((types.ImageConfig(image_size="3K"), "512, 1K, 2K, 4K"), (types.ImageConfig(aspect_ratio="2:1"), "8:1")):
        with pytest.raises(errors.ClientError) as raised:
            client.models.generate_content(
                model="flashbulb-photo",
                contents=[astronaut(32), "restore"],
                config=types.GenerateContentConfig(image_config=config),
            )
        assert raised.value.code == 400 and says in raised.value.message


def test_an_uploaded_file_is_an_image_part_by_its_uri_and_only_for_its_owner(server, key, tmp_path):
    client = server.genai(key)
    path = tmp_path / "portrait.png"
    astronaut(32).save(path)
    uploaded = client.files.upload(file=path, config=types.UploadFileConfig(mime_type="image/png"))
    response = client.models.generate_content(model="gemini-3-pro-image-preview", contents=[uploaded, "upscale 2x"])
    assert image_parts(response)[0].size == (64, 64)
    other = server.genai(server.create_key("1"))
    with pytest.raises(errors.ClientError) as raised:  # another account's file is as unknown as no file
        other.models.generate_content(model="flashbulb-photo", contents=[uploaded, "upscale 2x"])
    assert raised.value.code == 404


def test_more_images_than_the_photo_model_takes_is_a_400_naming_its_limit(server, key):
    client = server.genai(key)
    with pytest.raises(errors.ClientError) as raised:
        client.models.generate_content(model="flashbulb-photo", contents=[astronaut(16)] * 3 + ["restore"])
    assert raised.value.code == 400 and "at most 2 images" in raised.value.message

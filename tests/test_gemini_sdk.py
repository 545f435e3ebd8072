"""The unchanged google-genai SDK against a live flashbulb server on loopback."""

from __future__ import annotations

import io

import numpy as np
import pytest
from google.genai import errors, types
from PIL import Image

from conftest import astronaut


def image_parts(response) -> list[Image.Image]:  # noqa: ANN001
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
    response = client.models.generate_content(
        model="gemini-2.5-flash-image", contents=[astronaut(32), "upscale x2"]
    )
    assert response.model_version == "flashbulb-photo"
    assert image_parts(response)[0].size == (64, 64)


def test_chat_multi_turn_edits_the_previous_result(server, key):
    client = server.genai(key)
    chat = client.chats.create(model="flashbulb-photo")
    first = chat.send_message([astronaut(32), "upscale 2x"])
    assert image_parts(first)[0].size == (64, 64)
    second = chat.send_message("now upscale it 2x again")
    assert image_parts(second)[0].size == (128, 128)


def test_streaming_sse(server, key):
    client = server.genai(key)
    chunks = list(
        client.models.generate_content_stream(model="flashbulb-photo", contents=[astronaut(32), "upscale 2x"])
    )
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert sum(len(image_parts(c)) for c in chunks) == 1


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
        config=types.GenerateContentConfig(
            response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio="16:9")
        ),
    )
    [out] = image_parts(response)
    assert out.size == (128, 72)
    assert all(part.text is None for part in response.candidates[0].content.parts)  # IMAGE only was asked


def test_streaming_without_credits_is_an_http_429_before_any_event(server):
    client = server.genai(server.create_key("0"))
    with pytest.raises(errors.ClientError) as raised:
        list(client.models.generate_content_stream(model="flashbulb-photo", contents=[astronaut(16), "restore"]))
    assert raised.value.code == 429

"""LiteLLM, a gateway many customers already route through, unchanged against a live server:
`image_generation` and `image_edit` through its `openai/` provider, `completion` with image output
through its `gemini/` provider, each asserted on the decoded image."""

from __future__ import annotations

import base64
import io
import os

import pytest
from conftest import astronaut, png_bytes, start_server
from PIL import Image

CONFIG = """
[diffusion]
warm_models = ["flashbulb-photo", "drawer"]

[models.drawer]
backend = "fault_backends:FaultBackend"   # draws an 8x8 red square for any prompt
price_usd = "0.01"
"""


@pytest.fixture(scope="module")
def litellm():
    """Imported by the test worker that runs these tests (~2.6 s of CPU), not by every one that collects them."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # its price list from the wheel, not from GitHub
    import litellm

    return litellm


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("litellm")
    srv = start_server(data_dir, f"sqlite:///{data_dir / 'flashbulb.db'}", config=CONFIG)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def key(server) -> str:
    return server.create_key("10")


def decoded(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_image_generation_through_the_openai_provider(litellm, server, key):
    result = litellm.image_generation(
        model="openai/drawer",
        prompt="a red square",
        size="256x256",
        api_base=f"{server.base_url}/v1",
        api_key=key,
    )
    image = decoded(result.data[0].b64_json)
    assert image.size == (256, 256)  # drawn at 8x8, enlarged to the size asked
    assert image.convert("RGB").getpixel((128, 128))[0] > 150


def test_image_edit_through_the_openai_provider(litellm, server, key, tmp_path):
    path = tmp_path / "portrait.png"
    path.write_bytes(png_bytes(astronaut(32)))
    with open(path, "rb") as image:
        result = litellm.image_edit(
            model="openai/gpt-image-1",
            image=image,
            prompt="upscale 2x",
            api_base=f"{server.base_url}/v1",
            api_key=key,
        )
    assert decoded(result.data[0].b64_json).size == (64, 64)


def test_completion_with_image_output_through_the_gemini_provider(litellm, server, key):
    photo = base64.b64encode(png_bytes(astronaut(32))).decode()
    response = litellm.completion(
        model="gemini/gemini-3-pro-image-preview",
        api_base=f"{server.base_url}/v1beta",
        api_key=key,
        modalities=["image", "text"],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "upscale 2x"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{photo}"}},
                ],
            }
        ],
    )
    [image] = response.choices[0].message.images
    data_url = image["image_url"]["url"]
    assert decoded(data_url.split(",", 1)[1]).size == (64, 64)

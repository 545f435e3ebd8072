"""The default install (`make run`): the offline photo engine without the generative stack.

torch, diffusers and transformers are the `diffusion` extra (`make install-diffusion`). Here a server
runs with them made unimportable (tests/no_generative_stack/sitecustomize.py), as on a machine that
ran only `make run`: it must serve photo edits, watermark them, and say how to get a generative model
wherever one is asked for. `.ci/first-start` times the real thing: `make run` on a fresh clone.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
import tiny_pipelines
from conftest import FLASHBULB, ROOT, Server, astronaut, gemini_body, http, png_bytes, start_server, verify

from flashbulb.engine.backends.diffusion import catalog

WITHOUT_STACK = {"PYTHONPATH": str(ROOT / "tests" / "no_generative_stack")}


@pytest.fixture(scope="module")
def photo_only(tmp_path_factory: pytest.TempPathFactory) -> Server:
    data_dir = tmp_path_factory.mktemp("photo-only")
    server = start_server(data_dir, f"sqlite:///{data_dir / 'flashbulb.db'}", env=WITHOUT_STACK)
    yield server
    server.stop()


def test_the_blocker_really_hides_torch():
    found = subprocess.run(
        [*FLASHBULB[:1], "-c", "import torch"], env={**os.environ, **WITHOUT_STACK}, capture_output=True, text=True
    )
    assert found.returncode != 0 and "No module named 'torch'" in found.stderr


def test_photo_edits_are_served_and_watermarked_without_the_generative_stack(photo_only: Server):
    key = photo_only.create_key("5")
    answer = photo_only.generate(key, gemini_body(png_bytes(astronaut(160)), "make it brighter"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    [part] = [p for p in body["candidates"][0]["content"]["parts"] if "inlineData" in p]
    assert body["flashbulb"]["quality"]["watermark"]["marked"] is True
    found = verify(photo_only, key, base64.b64decode(part["inlineData"]["data"]))
    assert found["watermark"]["request_id"] == body["responseId"] and found["c2pa"] is not None
    assert "Traceback" not in photo_only.log_path.read_text()


def test_generative_models_say_how_to_install_the_stack(photo_only: Server):
    import httpx

    listed = httpx.get(
        f"{photo_only.base_url}/v1beta/models/flux2-klein-4b", headers={"x-goog-api-key": photo_only.admin_key}, timeout=30
    ).json()["flashbulb"]
    assert listed["installed"] is False
    assert "make install-diffusion" in listed["install"] and "torch" in listed["install"]

    key = photo_only.create_key("5")
    refused = photo_only.generate(key, {"contents": [{"parts": [{"text": "a red bicycle"}]}]}, model="flux2-klein-4b")
    assert refused.status_code == 400, refused.text
    assert "generative stack" in refused.json()["error"]["message"]
    assert "make install-diffusion" in refused.json()["error"]["message"]

    # The hosted name falls back to the photo engine, which says what a text-only call needs.
    text_only = photo_only.generate(key, {"contents": [{"parts": [{"text": "a red bicycle"}]}]}, model="gemini-2.5-flash-image")
    assert text_only.status_code == 200, text_only.text
    said = " ".join(p.get("text", "") for p in text_only.json()["candidates"][0]["content"]["parts"])
    assert "make install-diffusion" in said


def test_pull_says_the_stack_comes_first(tmp_path: Path):
    env = {**os.environ, **WITHOUT_STACK, "FLASHBULB_DATA_DIR": str(tmp_path)}
    pulled = subprocess.run([*FLASHBULB, "pull", "sd-turbo"], capture_output=True, text=True, env=env, timeout=120)
    assert pulled.returncode == 2, pulled.stderr
    assert "make install-diffusion" in pulled.stderr and "torch" in pulled.stderr
    assert not (tmp_path / "models" / "sd-turbo").exists()  # nothing half-downloaded


def test_a_generative_stack_that_breaks_on_import_costs_only_its_own_models(tmp_path: Path):
    """Workers fork from one process that imports their libraries first: torch failing there (not
    missing: found, then an error while it loads) must not take the photo model's workers with it."""
    weights = tiny_pipelines.build(catalog.by_name()["sd-turbo"].pipeline, tmp_path / "tiny-sd")
    config = (
        '[diffusion]\nwarm_models = ["flashbulb-photo", "tiny-sd"]\n'
        f'[models.tiny-sd]\nlike = "sd-turbo"\npath = {json.dumps(str(weights))}\nsteps = 2\npixels = 4096\n'
    )
    broken = {"PYTHONPATH": str(ROOT / "tests" / "broken_generative_stack")}
    server = start_server(tmp_path / "data", f"sqlite:///{tmp_path / 'flashbulb.db'}", config=config, env=broken)
    try:
        ready = http.get(f"{server.base_url}/readyz").json()
        assert "libtorch_cuda.so" in ready["failed_models"]["tiny-sd"] and ready["warm_models"] == ["flashbulb-photo"]
        key = server.create_key("1")
        assert server.generate(key, gemini_body(png_bytes(astronaut(32)), "make it brighter")).status_code == 200
        drawn = server.generate(key, {"contents": [{"parts": [{"text": "a red bicycle"}]}]}, model="tiny-sd")
        assert drawn.status_code >= 500 and "libtorch_cuda.so" in drawn.text, drawn.text  # its own error, free
        assert http.get(f"{server.base_url}/flashbulb/account", headers={"x-goog-api-key": key}).json()["held_micros"] == 0
    finally:
        server.stop()

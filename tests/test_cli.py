"""`flashbulb generate | edit | restore` as a user runs them: subprocesses, locally or against a
live server, with real files, JSON output, progress on a terminal and exit codes that mean something."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import tiny_pipelines
from conftest import FLASHBULB, astronaut
from PIL import Image


def flashbulb(data_dir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "FLASHBULB_DATA_DIR": str(data_dir), **(env or {})}
    return subprocess.run([*FLASHBULB, *args], capture_output=True, text=True, env=environment, timeout=180)


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "old.png"
    astronaut(96).save(path)
    return path


@pytest.fixture(scope="module")
def local_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose flashbulb.toml registers a tiny text-to-image model."""
    data_dir = tmp_path_factory.mktemp("cli-local")
    weights = tiny_pipelines.build("StableDiffusionPipeline", data_dir / "tiny-weights")
    (data_dir / "flashbulb.toml").write_text(f'[models.tiny]\nlike = "sd-turbo"\npath = "{weights}"\nsteps = 2\npixels = 4096\n')
    return data_dir


def test_restore_locally_writes_the_upscaled_photo_and_shows_progress_on_a_terminal(local_dir, photo, tmp_path):
    out = tmp_path / "new.png"
    terminal = {"TTY_INTERACTIVE": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "100"}
    result = flashbulb(local_dir, "restore", str(photo), "--scale", "2", "-o", str(out), env=terminal)
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (192, 192)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stderr)  # without the terminal's colour codes
    assert "100%" in shown and "loading flashbulb-photo" in shown  # the progress bar ran
    assert f"wrote {out}" in shown
    # Nothing of mediapipe's native start-up chatter (TFLite, absl) between the progress bar's lines.
    assert not re.search(r"TensorFlow Lite|absl::|W0000|inference_feedback_manager", shown), shown


def test_generate_locally_with_json_output_and_n_images(local_dir, tmp_path):
    out = tmp_path / "fox.jpg"
    result = flashbulb(
        local_dir, "generate", "a red fox, 85mm", "--model", "tiny", "-n", "2", "--seed", "3", "-o", str(out), "--json"
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["ok"] and outcome["finish_reason"] == "STOP"
    assert outcome["outputs"] == [str(tmp_path / "fox-1.jpg"), str(tmp_path / "fox-2.jpg")]
    assert Image.open(outcome["outputs"][0]).format == "JPEG"
    assert outcome["quality"]["seeds"] == [3, 4] and outcome["charge_micros"] is None  # local: nothing charged


def test_edit_against_a_server_is_charged_like_any_client(server, photo, tmp_path):
    key = server.create_key("1")
    out = tmp_path / "edited.png"
    result = flashbulb(
        server.data_dir,
        "edit",
        str(photo),
        "make it black and white",
        "-o",
        str(out),
        "--server",
        server.base_url,
        "--key",
        key,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["charge_micros"] > 0 and Path(outcome["outputs"][0]).exists()
    assert outcome["quality"]["same_person"] is True


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["generate", "a lighthouse"], 2, "flashbulb pull flux2-klein-4b"),  # not installed
        (["generate", "a lighthouse", "--model", "no-such-model"], 2, "not found"),
        (["edit", "PHOTO", "write me a poem about it"], 4, "NO_IMAGE"),  # the model can't do that
        (["generate", "a lighthouse", "--server", "http://127.0.0.1:9", "--key", "fb-x"], 3, "can't reach"),
        (["generate", "a lighthouse", "--server", "http://127.0.0.1:9"], 5, "--key"),
    ],
)
def test_exit_codes_say_what_went_wrong(local_dir, photo, tmp_path, args, code, needle):
    args = [str(photo) if a == "PHOTO" else a for a in args]
    result = flashbulb(local_dir, *args, "-o", str(tmp_path / "x.png"))
    assert result.returncode == code, result.stderr
    assert needle in result.stderr


def test_a_corrupt_photo_is_exit_2_and_a_wrong_key_exit_5(server, photo, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = flashbulb(tmp_path, "restore", str(broken), "-o", str(tmp_path / "x.png"), "--json")
    assert result.returncode == 2 and json.loads(result.stdout)["error"] == "INVALID_ARGUMENT"
    result = flashbulb(
        tmp_path, "restore", str(photo), "-o", str(tmp_path / "x.png"), "--server", server.base_url, "--key", "fb-wrong"
    )
    assert result.returncode == 5 and "HTTP 400" in result.stderr


def test_listings_at_80_columns_keep_every_id_whole(tmp_path):
    narrow = {"COLUMNS": "80"}
    made = flashbulb(tmp_path, "keys", "create", "--name", "a-customer-with-a-long-account-name", "--credits", "1")
    key = made.stdout.strip()
    listed = flashbulb(tmp_path, "keys", "list", env=narrow).stdout
    assert "a-customer-with-a-long-account-name" in listed and key[:10] + "…" in listed
    assert all(len(line) <= 80 for line in listed.splitlines())
    models = flashbulb(tmp_path, "models", env=narrow).stdout
    assert "qwen-image-edit-2509" in models and "flux1-kontext-dev" in models
    pulled = flashbulb(tmp_path, "pull", "flashbulb-photo")
    assert pulled.returncode == 0 and "built in" in pulled.stderr


def test_config_check_prints_the_effective_settings_without_secrets_and_names_a_bad_key(tmp_path):
    (tmp_path / "flashbulb.toml").write_text(
        '[prices]\n"flashbulb-photo" = "0.003"\n[batch]\nlease_s = 12\n'
        '[rate_limits]\nredis_url = "redis://:hunter2@127.0.0.1:6379/0"\n'
    )
    checked = flashbulb(tmp_path, "config", "check", "--json", env={"FLASHBULB_DATABASE_URL": "postgresql://bob:sekret@db/x"})
    assert checked.returncode == 0, checked.stderr
    assert "sekret" not in checked.stdout and "hunter2" not in checked.stdout
    found = json.loads(checked.stdout)
    settings = found["settings"]
    assert found["file"] == str(tmp_path / "flashbulb.toml") and settings["batch_lease_s"] == 12.0
    assert settings["database_url"] == "postgresql://bob:***@db/x"
    assert settings["prices"]["flashbulb-photo"]["standard"] == 3_000 and settings["prices"]["sd-turbo"]["standard"] == 2_000
    (tmp_path / "flashbulb.toml").write_text('[prices]\nnope = "1"\n')
    refused = flashbulb(tmp_path, "config", "check")
    assert refused.returncode == 2 and "[prices]: no model named nope" in refused.stderr

"""The official JavaScript SDKs, unchanged, against a live server: `@google/genai` and `openai` from
npm (versions pinned in tests/js/package-lock.json, installed here with `npm ci`), driven by node.
Each check lives in tests/js/check.mjs and asserts on the decoded images it gets back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

JS = Path(__file__).parent / "js"
CHECKS = [
    "genai-models-list",
    "genai-generate-content",
    "genai-count-tokens",
    "genai-stream",
    "genai-image-size",
    "genai-files-upload",
    "openai-models-list",
    "openai-images-edit",
    "openai-refusal-is-a-400",
    "openai-edit-stream",
    "openai-responses-image-tool",
    "openai-files-then-responses-file-id",
]


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the JavaScript SDK tests (apt-get install nodejs npm)")
    lock = JS / "package-lock.json"
    installed = JS / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, capture_output=True, timeout=600)
    return found


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("js") / "coffee.png"
    Image.fromarray(data.coffee()).resize((48, 32), Image.Resampling.LANCZOS).save(path)
    return path


@pytest.mark.parametrize("check", CHECKS)
def test_the_javascript_sdk_call_works_unchanged(server, key, node, photo, check):
    env = {**os.environ, "FLASHBULB_URL": server.base_url, "FLASHBULB_KEY": key, "FLASHBULB_PHOTO": str(photo)}
    ran = subprocess.run([node, "check.mjs", check], cwd=JS, env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:] or ran.stdout[-3000:]
    assert json.loads(ran.stdout.strip().splitlines()[-1])["check"] == check

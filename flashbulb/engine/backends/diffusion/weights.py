"""Where a model's weights live on disk, whether they are complete, and `flashbulb pull`.

A model is installed when its folder holds a diffusers layout (model_index.json naming the
catalog's pipeline class, every component folder it lists, readable safetensors). `pull`
writes flashbulb-pull.json beside it recording what was downloaded and verified.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import socket
import time
from pathlib import Path

from flashbulb.engine.backends.diffusion.catalog import DiffusionModel

MANIFEST = "flashbulb-pull.json"
# Diffusers layout only: the repos also carry single-file checkpoints and other formats we never load.
ALLOW = ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model", "*/*.jinja", "*/*.tiktoken"]
HUB_HOST = "huggingface.co"


class WeightsError(Exception):
    """Weights missing, incomplete or unreachable; the message says what to do."""


def folder(model: DiffusionModel, model_dir: Path) -> Path:
    return model.path or model_dir / model.name


def problem(where: Path, pipeline: str) -> str | None:
    """Why a diffusers folder can't be loaded as `pipeline`, or None when it can."""
    index_file = where / "model_index.json"
    if not index_file.is_file():
        return f"no weights in {where}"
    try:
        index = json.loads(index_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return f"{index_file} is unreadable: {exc}"
    if index.get("_class_name") != pipeline:
        return f"{where} holds a {index.get('_class_name')}, not a {pipeline}"
    for component, spec in index.items():
        if component.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        if not (where / component).is_dir():
            return f"{where} lacks the {component} folder"
    return None


# What a generative model needs besides its weights: the `diffusion` extra, which the default
# install (the offline photo engine) leaves out.
STACK = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "huggingface_hub")
INSTALL_STACK = "run `make install-diffusion` in flashbulb's folder (torch, diffusers, transformers: 1 GB or more)"


@functools.cache
def stack_missing() -> tuple[str, ...]:
    """The packages of the generative stack this Python can't import (found, not imported: torch alone takes seconds)."""

    def found(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except ImportError:
            return False

    return tuple(name for name in STACK if not found(name))


def installed(model: DiffusionModel, model_dir: Path) -> bool:
    return not stack_missing() and problem(folder(model, model_dir), model.pipeline) is None


def how_to_install(model: DiffusionModel, model_dir: Path) -> str:
    if missing := stack_missing():
        then = f"put its weights in {model.path}" if model.path else f"`flashbulb pull {model.name}`"
        return (
            f"It needs the generative stack, which is not installed ({', '.join(missing)} missing): {INSTALL_STACK}, then {then}."
        )
    if model.path:
        return f"Put the {model.pipeline} weights (diffusers layout) in {model.path}."
    size = f" (about {model.download_gb:g} GB)" if model.download_gb else ""
    return f"Install it with `flashbulb pull {model.name}`{size}, or copy its diffusers folder to {folder(model, model_dir)}."


def _check_online(timeout_s: float) -> None:
    """Fail at once, with a reason, when the hub can't be reached (never hang on a dead network)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise WeightsError("HF_HUB_OFFLINE is set, so nothing can be downloaded.")
    endpoint = os.environ.get("HF_ENDPOINT", f"https://{HUB_HOST}").split("://", 1)[-1].split("/", 1)[0]
    host, _, port = endpoint.partition(":")
    try:
        socket.create_connection((host, int(port or 443)), timeout=timeout_s).close()
    except OSError as exc:
        raise WeightsError(f"can't reach {host} ({exc.strerror or exc}); this machine looks offline.") from exc


def verify(where: Path, pipeline: str) -> list[dict[str, object]]:
    """Every safetensors file opens and its tensors are all there (a torn download fails here)."""
    from safetensors import safe_open

    files = []
    for path in sorted(where.glob("*/*.safetensors")):
        try:
            with safe_open(path, "pt") as handle:
                tensors = len(list(handle.keys()))
        except Exception as exc:  # safetensors raises its own error types for a torn file
            raise WeightsError(f"{path} is damaged ({exc}); run the pull again.") from exc
        files.append({"file": str(path.relative_to(where)), "bytes": path.stat().st_size, "tensors": tensors})
    if reason := problem(where, pipeline):
        raise WeightsError(f"the download is incomplete: {reason}")
    return files


def pull(model: DiffusionModel, model_dir: Path, *, token: str | None = None, connect_timeout_s: float = 10) -> Path:
    """Download the model's diffusers folder with a progress bar, verify it and record it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    _check_online(connect_timeout_s)
    where = model_dir / model.name
    where.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        snapshot_download(model.source, local_dir=where, allow_patterns=ALLOW, token=token)
    except GatedRepoError as exc:
        raise WeightsError(
            f"{model.source} is gated: accept its licence on https://huggingface.co/{model.source} "
            "and set HF_TOKEN (or pass --token)."
        ) from exc
    except RepositoryNotFoundError as exc:
        raise WeightsError(f"{model.source} was not found on the hub.") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise WeightsError(f"the download of {model.source} failed: {exc}") from exc
    files = verify(where, model.pipeline)
    manifest = {
        "model": model.name,
        "source": model.source,
        "pipeline": model.pipeline,
        "licence": model.licence,
        "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started),
        "files": files,
    }
    (where / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return where

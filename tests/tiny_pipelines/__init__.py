"""Tiny random-weight pipelines of the catalog's diffusers classes, built locally (no downloads),
saved in diffusers layout so the service loads them through the same code as real weights."""

from __future__ import annotations

from pathlib import Path

from . import flux, qwen, sd

BUILDERS = {**flux.BUILDERS, **qwen.BUILDERS, **sd.BUILDERS}


def build(pipeline_class: str, path: Path) -> Path:
    BUILDERS[pipeline_class](path)
    return path

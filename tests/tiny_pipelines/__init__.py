"""Tiny random-weight pipelines of the catalog's diffusers classes, built locally (no downloads),
saved in diffusers layout so the service loads them through the same code as real weights."""

from __future__ import annotations

from pathlib import Path


def build(pipeline_class: str, path: Path) -> Path:
    # Imported here, not when a test module is: torch and diffusers took ~5 s of each test
    # worker's collection, whether or not it ran a test that builds weights.
    from . import flux, qwen, sd

    {**flux.BUILDERS, **qwen.BUILDERS, **sd.BUILDERS}[pipeline_class](path)
    return path

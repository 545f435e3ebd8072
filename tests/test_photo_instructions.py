"""The instruction parser of flashbulb-photo: phrases -> a plan, and what it refuses."""

from __future__ import annotations

import pytest

from flashbulb.engine.backends.photo_instructions import parse


@pytest.mark.parametrize(
    "text, steps, scale",
    [
        ("Restore this old photo", ["restore"], None),
        ("upscale 2x", ["upscale"], 2),
        ("make it sharper", ["sharpen"], None),
        ("enlarge ×3 please", ["upscale"], 3),
        ("x4 super-resolution", ["upscale"], 4),
        ("double the size", ["upscale"], 2),
        ("restore it, then upscale 4 times and sharpen", ["restore", "upscale", "sharpen"], 4),
        ("sharpen and then restore", ["sharpen", "restore"], None),
        ("remove the grain from this picture of my grandmother", ["restore"], None),
        ("please", [], None),
        ("", [], None),
    ],
)
def test_understood(text, steps, scale):
    plan = parse(text)
    assert plan.not_understood == []
    assert plan.steps == steps
    assert plan.scale == scale


@pytest.mark.parametrize(
    "text, refused",
    [
        ("give it a blue background", "give it a blue background"),
        ("restore it, then put me on a beach", "put me on a beach"),
        ("generate a cat", "generate a cat"),
    ],
)
def test_not_understood_clauses_are_reported(text, refused):
    assert refused in parse(text).not_understood

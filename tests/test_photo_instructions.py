"""The instruction parser of flashbulb-photo: phrases -> a plan of operations with options, and what it refuses."""

from __future__ import annotations

import pytest

from flashbulb.engine.backends.photo.instructions import COLOURS, parse


@pytest.mark.parametrize(
    "text, names, scale",
    [
        ("Restore this old photo", ["restore"], None),
        ("upscale 2x", ["upscale"], 2),
        ("make it sharper", ["sharpen"], None),
        ("enlarge ×3 please", ["upscale"], 3),
        ("x4 super-resolution", ["upscale"], 4),
        ("double the size", ["upscale"], 2),
        ("restore it, then upscale 4 times and sharpen", ["restore", "sharpen"], 4),
        ("sharpen and then restore", ["sharpen", "restore"], None),
        ("remove the grain and the scratches from this picture of my grandmother", ["restore"], None),
    ],
)
def test_restoration_words(text, names, scale):
    plan = parse(text)
    assert plan.not_understood == []
    assert plan.names == names
    upscaling = [op for op in plan.operations if op.name in ("restore", "upscale")]
    assert len(upscaling) <= 1 and all(op.params["scale"] == scale for op in upscaling)


@pytest.mark.parametrize(
    "text, params",
    [
        ("remove the background", {"mode": "remove"}),
        ("make the background transparent", {"mode": "remove"}),
        ("give it a blue background", {"mode": "colour", "colour": COLOURS["blue"]}),
        ("a blue studio backdrop", {"mode": "studio", "colour": COLOURS["blue"]}),
        ("background #ff8000", {"mode": "colour", "colour": (1.0, 128 / 255, 0.0)}),
        ("change the background", {"mode": "studio"}),
        ("blur the background", {"mode": "blur"}),
        ("office background", {"mode": "office"}),
        ("use the second photo as the background", {"mode": "image"}),
    ],
)
def test_background_options(text, params):
    plan = parse(text)
    assert plan.names == ["background"] and plan.operations[0].params == params


@pytest.mark.parametrize(
    "text, setup, side, moods",
    [
        ("Rembrandt lighting", "rembrandt", "left", []),
        ("loop light from the right", "loop", "right", []),
        ("paramount lighting", "butterfly", "left", []),
        ("split lighting from the right", "split", "right", []),
        ("add a rim light", "rim", "left", []),
        ("backlight her", "rim", "left", []),
        ("soft dramatic light", None, "left", ["softer", "dramatic"]),
        ("warmer", None, "left", ["warm"]),
        ("better lighting", "loop", "left", []),
    ],
)
def test_lighting_options(text, setup, side, moods):
    [op] = parse(text).operations
    assert op.name == "relight"
    assert (op.params["setup"], op.params["side"], op.params["moods"]) == (setup, side, moods)


def test_a_headshot_takes_its_clause_as_options():
    [op] = parse("make this a LinkedIn headshot with an office background, 4:5").operations
    assert op.name == "headshot" and op.params == {"background": {"mode": "office"}, "ratio": "4:5"}
    assert parse("professional headshot, 4:5 please").operations[0].params["ratio"] == "4:5"
    assert parse("passport photo").operations[0].params == {"background": {"mode": "studio"}}


@pytest.mark.parametrize(
    "text, params",
    [
        ("make it brighter", {"exposure": 0.7}),
        ("a bit darker", {"exposure": -0.35}),
        ("+1.5 stops of exposure", {"exposure": 1.5}),
        ("more contrast", {"contrast": 0.35}),
        ("reduce contrast by 20%", {"contrast": -0.2}),
        ("more vivid", {"saturation": 1.35}),
        ("black and white", {"saturation": 0.0}),
        ("crop to 16:9", {"crop": "16:9"}),
        ("crop it square", {"crop": "1:1"}),
        ("resize to 800px wide", {"resize": {"width": 800}}),
        ("resize to 640x480", {"resize": {"width": 640, "height": 480}}),
        ("shrink to 25%", {"resize": {"percent": 25.0}}),
    ],
)
def test_adjustments(text, params):
    [op] = parse(text).operations
    assert op.name == "adjust" and op.params == params


def test_a_bare_ratio_is_a_crop():
    assert parse("brighter, 16:9").names == ["adjust", "adjust"]
    assert parse("brighter, 16:9").operations[1].params == {"crop": "16:9"}


def test_mixed_instructions_run_in_the_order_written():
    plan = parse("restore it, then give it a blue studio background and Rembrandt lighting, crop to 4:5")
    assert plan.names == ["restore", "background", "relight", "adjust"]


@pytest.mark.parametrize("text", ["please", "", "thanks!"])
def test_nothing_asked_is_an_empty_plan(text):
    plan = parse(text)
    assert plan.operations == [] and plan.not_understood == []


@pytest.mark.parametrize(
    "text, refused",
    [
        ("restore it, then put me on a beach", "put me on a beach"),
        ("generate a cat", "generate a cat"),
        ("add a hat", "add a hat"),
    ],
)
def test_not_understood_clauses_are_reported(text, refused):
    assert refused in parse(text).not_understood


def test_every_example_the_studio_offers_is_understood_whole():
    from flashbulb.engine.backends.photo.instructions import EXAMPLES

    for example in EXAMPLES:
        plan = parse(example)
        assert plan.operations and not plan.not_understood and not plan.ignored, (example, plan)

"""flashbulb-photo's pixel operations in-process, on real photos with known damage."""

from __future__ import annotations

import matplotlib.cbook as cbook
import numpy as np
import pytest
from PIL import Image
from skimage import data

from flashbulb.engine.aspect import GEMINI_SIZES, ratio_value
from flashbulb.engine.backends.photo import adjust, restore
from flashbulb.engine.backends.photo.canvas import Canvas
from flashbulb.engine.backends.photo.errors import EditRefused


def test_noise_estimate_tracks_added_noise():
    clean = data.astronaut().astype(np.float32) / 255
    rng = np.random.default_rng(1)
    for sigma in (5, 15, 30):
        noisy = np.clip(clean + rng.normal(0, sigma / 255, clean.shape), 0, 1)
        assert abs(restore.noise_sigma(noisy) - sigma) < max(3, sigma * 0.25)


def test_a_faded_print_gets_its_tones_back_and_a_healthy_photo_is_left_alone():
    truth = data.coffee().astype(np.float32) / 255
    faded = truth * 0.5 + np.array([0.32, 0.27, 0.18], np.float32)  # lifted blacks, sepia cast
    canvas = Canvas(Image.fromarray((faded * 255).astype(np.uint8)))
    assert restore.recover_colour(canvas)
    assert np.abs(canvas.rgb - truth).mean() < np.abs(faded - truth).mean() / 2
    healthy = Canvas(Image.fromarray(data.coffee()))
    assert not restore.recover_colour(healthy)


def test_dust_specks_are_repaired_but_the_face_is_untouched():
    photo = data.astronaut().copy()
    rng = np.random.default_rng(2)
    ys, xs = rng.integers(260, 500, 40), rng.integers(10, 500, 40)
    photo[ys, xs] = 255  # white dust on the suit and the background
    canvas = Canvas(Image.fromarray(photo))
    face = canvas.face_mask(grow=1.6) > 0.01
    before = canvas.rgb.copy()
    assert restore.remove_dust(canvas) >= 30
    assert (canvas.rgb[ys, xs].mean(axis=1) < 0.9).mean() > 0.8
    assert np.array_equal(canvas.rgb[face], before[face])


@pytest.mark.parametrize("name", ["astronaut", "portrait", "grace_hopper"])
def test_every_aspect_ratio_keeps_the_whole_head_or_is_refused_naming_the_ratios_that_do(name):
    """Each Gemini ratio either crops around the whole head (the face found again, inside the frame,
    where the head was) or is refused saying which ratios keep it; every ratio it names does."""
    photo = {
        "astronaut": Image.fromarray(data.astronaut()),
        "portrait": Image.fromarray(data.astronaut()).crop((64, 0, 448, 512)),
        "grace_hopper": Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"),
    }[name]
    cropped, refused = {}, {}
    for ratio in GEMINI_SIZES:
        canvas = Canvas(photo)
        try:
            adjust.crop(canvas, ratio)
        except EditRefused as refusal:
            refused[ratio] = str(refusal)
            continue
        cropped[ratio] = canvas
        w, h = canvas.size
        assert w / h == pytest.approx(ratio_value(ratio), rel=0.02), ratio
        x0, top, x1, bottom = canvas.faces()[0].box
        assert x0 > 0 and top > 0 and x1 < w and bottom < h, (ratio, canvas.faces()[0].box, canvas.size)
    assert {"1:1", "3:4", "4:5"} <= cropped.keys()  # the portrait ratios always fit a portrait
    assert {"1:8", "8:1"} <= refused.keys()  # a 64 px strip holds no head
    for ratio, why in refused.items():
        assert f"A {ratio} crop" in why and "nothing was done or charged" in why
        named = why.split("Ratios that keep it: ")[1].rstrip(".").split(", ")
        assert set(named) == set(cropped), (ratio, named)
    # What was refused really would have cut the head: the largest crop of that ratio is smaller.
    hx0, htop, hx1, hbottom = adjust.head_box(Canvas(photo).faces()[0].box, *photo.size)
    for ratio in refused:
        bx0, btop, bx1, bbottom = adjust.crop_box(*photo.size, ratio_value(ratio))
        assert bx1 - bx0 < hx1 - hx0 or bbottom - btop < hbottom - htop, ratio

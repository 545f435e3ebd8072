"""flashbulb-photo's pixel operations in-process, on real photos with known damage."""

from __future__ import annotations

import numpy as np
from PIL import Image
from skimage import data

from flashbulb.engine.backends.photo import restore
from flashbulb.engine.backends.photo.canvas import Canvas


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

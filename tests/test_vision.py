"""The packaged vision models on real photos: faces, identity, segmentation, OCR, safety."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from flashbulb.vision import faces, identity, ocr, safety, segment


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


def test_finds_the_astronauts_face_with_a_full_mesh(astronaut):
    found = faces.find(astronaut)
    assert len(found) == 1
    face = found[0]
    x0, y0, x1, y1 = face.box
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 200  # her face, upper middle of the 512x512 photo
    assert face.mesh.shape == (478, 3)
    assert x0 - 10 <= face.mesh[faces.NOSE_TIP, 0] <= x1 + 10
    assert abs(face.roll_degrees()) < 10


def test_mesh_follows_a_rotation(astronaut):
    tilted = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), -15, 1.0), (512, 512))
    assert faces.find(tilted)[0].roll_degrees() == pytest.approx(15, abs=4)


def test_no_faces_in_a_cat_photo():
    assert faces.find(data.chelsea()) == []


def test_identity_survives_degradation_and_mirroring(astronaut):
    reference = identity.embeddings(astronaut)[0]
    blurry = cv2.resize(cv2.resize(astronaut, (160, 160)), (512, 512))
    assert identity.nearest(reference, identity.embeddings(blurry)) < identity.THRESHOLD
    assert identity.nearest(reference, identity.embeddings(astronaut[:, ::-1])) < identity.THRESHOLD


def test_identity_breaks_when_the_face_is_scrambled(astronaut):
    reference = identity.embeddings(astronaut)[0]
    face = faces.detect(astronaut)[0]
    x0, y0, x1, y1 = face.box
    scrambled = astronaut.copy()
    # Swap the eye band with the mouth band: still a face to the detector, no longer the same one.
    h = (y1 - y0) // 3
    top, bottom = scrambled[y0 : y0 + h, x0:x1].copy(), scrambled[y1 - h : y1, x0:x1].copy()
    scrambled[y0 : y0 + h, x0:x1], scrambled[y1 - h : y1, x0:x1] = bottom, top
    found = identity.embeddings(scrambled, [face])
    assert identity.nearest(reference, found) > identity.nearest(reference, identity.embeddings(astronaut)) + 0.1


def test_person_mask_covers_the_person_with_soft_edges(astronaut):
    mask = segment.person_mask(astronaut)
    assert mask.shape == (512, 512) and mask.dtype == np.float32
    x0, y0, x1, y1 = faces.detect(astronaut)[0].box
    assert mask[y0:y1, x0:x1].mean() > 0.9
    assert mask[:60, :60].mean() < 0.05 and mask[:60, -60:].mean() < 0.05  # the sky corners
    soft = ((mask > 0.05) & (mask < 0.95)).mean()
    assert 0.001 < soft < 0.1  # an edge band, not a hard cut-out and not a haze


def test_refinement_puts_a_low_resolution_mask_on_the_real_edge():
    yy, xx = np.mgrid[:512, :512]
    truth = (((xx - 256) ** 2 + (yy - 240) ** 2) < 140**2).astype(np.float32)
    coarse = cv2.resize(cv2.resize(truth, (128, 128), interpolation=cv2.INTER_AREA), (512, 512))
    naive = np.clip((coarse - 0.15) / 0.7, 0, 1)  # the same contrast pull without the guided filter
    assert np.abs(segment.refine(truth, coarse) - truth).mean() < np.abs(naive - truth).mean() / 5


def test_ocr_reads_a_street_sign_back():
    sign = np.full((200, 600, 3), 255, np.uint8)
    cv2.putText(sign, "Thompson St", (20, 120), cv2.FONT_HERSHEY_SIMPLEX, 2.5, (0, 0, 0), 5)
    report = ocr.check("a sign that reads 'Thompson St' and \"ONE WAY\"", sign)
    sign_text, missing = report["wanted"]
    assert sign_text == {"text": "Thompson St", "accuracy": 1.0}
    assert missing["text"] == "ONE WAY" and missing["accuracy"] < 0.5
    assert ocr.check("no quotes here", sign) is None


def test_safety_passes_a_portrait_and_blocks_what_the_operator_lists(astronaut):
    assert safety.check(astronaut).safe
    verdict = safety.check(astronaut, block=("FACE_FEMALE",))
    assert not verdict.safe and verdict.found[0].startswith("FACE_FEMALE")


def test_safety_remembers_what_it_found_in_an_accounts_pixels_and_applies_each_callers_list(monkeypatch):
    """The same pixels of one account are checked once (a batch's items on one photo, a retry): what
    the detector found is kept, not a verdict, so each call's block list and level still decide.
    Another account's check of them runs the detector: a quick answer must not tell it who sent what."""
    detector = safety._nudenet.get()
    runs: list[tuple] = []
    detect = detector.detect
    monkeypatch.setattr(detector, "detect", lambda bgr: runs.append(bgr.shape) or detect(bgr))
    portrait = np.ascontiguousarray(data.astronaut()[:400, 50:450])  # pixels no other test checks
    assert safety.check(portrait, owner=1).safe
    blocked = safety.check(portrait.copy(), block=("FACE_FEMALE",), owner=1)
    assert not blocked.safe and blocked.found[0].startswith("FACE_FEMALE")
    assert safety.check(portrait, block=("FACE_FEMALE",), level="loose", owner=1).min_score == 0.7
    assert len(runs) == 1
    changed = portrait.copy()
    changed[0, 0, 0] ^= 1  # one bit of one pixel: another image
    assert safety.check(changed, owner=1).safe and len(runs) == 2
    assert safety.check(portrait, owner=2).safe and len(runs) == 3  # another account
    assert safety.check(portrait).safe and safety.check(portrait).safe and len(runs) == 5  # no account: never kept

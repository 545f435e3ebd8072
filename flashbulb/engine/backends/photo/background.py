"""Backgrounds: remove (transparent), a colour, a studio gradient, an office blur, a bokeh blur of the
original, or another photo as the new environment (with the subject's light matched to it)."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from flashbulb.engine.backends.photo.canvas import Canvas, to_float

STUDIO_GREY = (0.52, 0.53, 0.55)
MODES = ("remove", "colour", "studio", "office", "blur", "image")


def _disc(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    return disc / disc.sum()


def _small(rgb: np.ndarray, long_side: int = 512) -> np.ndarray:
    h, w = rgb.shape[:2]
    factor = min(1.0, long_side / max(h, w))
    return cv2.resize(rgb, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)


def bokeh(rgb: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Lens blur of the background alone: the subject's colours don't bleed into it (normalised convolution)."""
    h, w = rgb.shape[:2]
    small, away = _small(rgb), _small(1.0 - person)
    kernel = _disc(max(3, round(max(small.shape[:2]) / 45)))
    weight = cv2.filter2D(away, -1, kernel)
    blurred = cv2.filter2D(small * away[..., None], -1, kernel) / np.maximum(weight, 1e-3)[..., None]
    # Where the subject covered everything nearby, fall back to a wide plain blur.
    wide = cv2.GaussianBlur(small, (0, 0), max(small.shape[:2]) / 12)
    trust = np.clip(weight * 4, 0, 1)[..., None]
    blurred = blurred * trust + wide * (1 - trust)
    return cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)


def studio(width: int, height: int, colour: tuple[float, float, float] = STUDIO_GREY) -> np.ndarray:
    """A seamless-paper look: lighter behind the head, falling off towards the corners."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    r = np.sqrt(((xx - width / 2) / width) ** 2 + ((yy - height * 0.35) / height) ** 2)
    light = (1.25 - 0.75 * np.clip(r, 0, 1))[..., None]
    return np.clip(np.array(colour, np.float32) * light, 0, 1)


def office(width: int, height: int, seed: int = 7) -> np.ndarray:
    """A defocused office: warm wall, a bright window on one side, out-of-focus lights. Drawn, not downloaded."""
    rng = np.random.default_rng(seed)
    scale = 512 / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    wall = np.array([0.62, 0.58, 0.52], np.float32) * (0.85 + 0.25 * (1 - yy / h))[..., None]
    window = np.clip(1.4 - np.abs(xx / w - 0.85) * 6, 0, 1)[..., None] * np.clip(1.2 - yy / h, 0, 1)[..., None]
    scene = wall * (1 - 0.6 * window) + np.array([0.93, 0.95, 0.97], np.float32) * 0.6 * window
    desk = (yy > h * 0.72)[..., None]
    scene = np.where(desk, np.array([0.36, 0.30, 0.25], np.float32), scene)
    for _ in range(14):  # ceiling and desk lamps far behind the subject
        cx, cy, radius = rng.uniform(0, w), rng.uniform(0, h * 0.6), rng.uniform(w / 40, w / 18)
        glow = np.clip(1.0 - np.hypot(xx - cx, yy - cy) / radius, 0, 1)[..., None] ** 0.5
        scene = scene + glow * np.array([0.25, 0.2, 0.1], np.float32)
    scene = cv2.GaussianBlur(scene, (0, 0), w / 60)
    return np.clip(cv2.resize(scene, (width, height), interpolation=cv2.INTER_LINEAR), 0, 1)


def cover(image: Image.Image, width: int, height: int) -> np.ndarray:
    """The photo scaled to fill width x height, centre-cropped."""
    rgb, _ = to_float(image)
    factor = max(width / rgb.shape[1], height / rgb.shape[0])
    scaled = cv2.resize(rgb, (max(width, round(rgb.shape[1] * factor)), max(height, round(rgb.shape[0] * factor))))
    y0, x0 = (scaled.shape[0] - height) // 2, (scaled.shape[1] - width) // 2
    return scaled[y0 : y0 + height, x0 : x0 + width]


def match_light(subject: np.ndarray, mask: np.ndarray, environment: np.ndarray, strength: float = 0.35) -> np.ndarray:
    """Move the subject's mean brightness and colour part of the way towards the new environment's (in Lab)."""
    lab = cv2.cvtColor(subject, cv2.COLOR_RGB2LAB)
    env = cv2.cvtColor(environment, cv2.COLOR_RGB2LAB).reshape(-1, 3).mean(axis=0)
    weight = mask[..., None]
    mine = (lab * weight).reshape(-1, 3).sum(axis=0) / max(float(weight.sum()), 1.0)
    shift = (env - mine) * np.array([strength * 0.5, strength, strength], np.float32)  # lightness moves least
    return np.clip(cv2.cvtColor(lab + shift, cv2.COLOR_LAB2RGB), 0, 1)


def replace(
    canvas: Canvas, mode: str, colour: tuple[float, float, float] | None = None, environment: Image.Image | None = None
) -> dict[str, object]:
    """Put the person in front of a new background; returns what was done."""
    width, height = canvas.size
    person = canvas.person()
    subject = canvas.rgb
    if mode == "remove":
        alpha = person if canvas.alpha is None else person * canvas.alpha
        canvas.set(subject, alpha, keep_analysis=True)
        return {"background": "removed", "subject": canvas.subject(), "person_fraction": round(float(person.mean()), 3)}
    if mode == "blur":
        new = bokeh(subject, person)
    elif mode == "office":
        new = office(width, height)
    elif mode == "image":
        assert environment is not None
        new = cv2.GaussianBlur(cover(environment, width, height), (0, 0), max(width, height) / 800)
        subject = match_light(subject, person, new)
    else:
        new = (
            studio(width, height, colour or STUDIO_GREY)
            if mode == "studio"
            else np.broadcast_to(np.array(colour, np.float32), subject.shape)
        )
    m = person[..., None]
    canvas.set(subject * m + new * (1 - m), canvas.alpha, keep_analysis=mode != "image")
    return {"background": mode, "subject": canvas.subject(), "person_fraction": round(float(person.mean()), 3)}

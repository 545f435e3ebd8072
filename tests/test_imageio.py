"""Decoding untrusted image bytes: formats, orientation, odd modes, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import astronaut, png_bytes
from PIL import Image

from flashbulb.engine.imageio import decode_image
from flashbulb.errors import FlashbulbError

LIMIT = 40_000_000


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_common_formats_decode_to_rgb(fmt):
    image = decode_image(png_bytes(astronaut(40), fmt), max_pixels=LIMIT)
    assert image.mode == "RGB" and image.size == (40, 40)


def test_exif_orientation_is_applied():
    wide = astronaut(64).crop((0, 0, 64, 32))  # 64 wide, 32 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image = decode_image(png_bytes(wide, "JPEG", exif=exif), max_pixels=LIMIT)
    assert image.size == (32, 64)


def test_alpha_is_kept():
    rgba = astronaut(32).convert("RGBA")
    rgba.putalpha(128)
    image = decode_image(png_bytes(rgba), max_pixels=LIMIT)
    assert image.mode == "RGBA" and image.getpixel((3, 3))[3] == 128


def test_palette_with_transparency_becomes_rgba():
    palette = astronaut(32).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    assert decode_image(png_bytes(palette, transparency=0), max_pixels=LIMIT).mode == "RGBA"
    assert decode_image(png_bytes(astronaut(32).convert("P")), max_pixels=LIMIT).mode == "RGB"


def test_16_bit_greyscale_is_scaled_not_clipped():
    levels = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    image = decode_image(png_bytes(Image.fromarray(levels)), max_pixels=LIMIT)
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.max() >= 250 and pixels.min() <= 5 and 100 < pixels.mean() < 155


def test_cmyk_jpeg_becomes_rgb():
    image = decode_image(png_bytes(astronaut(32).convert("CMYK"), "JPEG"), max_pixels=LIMIT)
    assert image.mode == "RGB"
    assert np.abs(np.asarray(image, dtype=float) - np.asarray(astronaut(32), dtype=float)).mean() < 20


@pytest.mark.parametrize(
    "data, says",
    [
        (b"", "empty"),
        (b"GIF89a" + b"\x00" * 20, "not a readable"),
        (png_bytes(astronaut(32), "GIF"), "GIF"),
        (png_bytes(astronaut(64))[:200], "corrupt"),
    ],
)
def test_refusals_name_the_problem(data, says):
    with pytest.raises(FlashbulbError) as raised:
        decode_image(data, max_pixels=LIMIT)
    assert says in raised.value.message


def test_pixel_limit_is_checked_before_decoding():
    with pytest.raises(FlashbulbError) as raised:
        decode_image(png_bytes(astronaut(64)), max_pixels=1000)
    assert "64x64" in raised.value.message


def test_decoded_pixels_count_in_flight_until_the_image_is_freed():
    from flashbulb.engine.imageio import pixels_in_flight

    start = pixels_in_flight.used
    image = decode_image(png_bytes(astronaut(64)), max_pixels=10_000)
    assert pixels_in_flight.used == start + 64 * 64
    with pytest.raises(FlashbulbError):  # a truncated PNG gives back what its header took
        decode_image(png_bytes(astronaut(64))[:200], max_pixels=10_000)
    assert pixels_in_flight.used == start + 64 * 64
    del image
    assert pixels_in_flight.used == start

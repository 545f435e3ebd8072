"""Decoding untrusted image bytes into a normalised PIL image, and encoding results."""

from __future__ import annotations

import gc
import io
import threading
import warnings
import weakref

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from flashbulb.errors import ErrorKind, FlashbulbError, invalid

ACCEPTED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# Every image a request brings in or asks for stays below the smallest per-side limit of the native
# libraries that touch its pixels: OpenCV's remap asserts at 32767 (SHRT_MAX) a side and aborts the
# whole process (measured: "resize to 99999x10", or a 33000x10 PNG with "make it brighter").
MAX_SIDE = 16384
# The largest image an edit may produce (4096x4096): bounds a request's memory and CPU time.
MAX_OUTPUT_PIXELS = 4096 * 4096


def size_problem(width: int, height: int, *, max_pixels: int, what: str) -> str | None:
    """Why an image of this size can't be taken or made, or None: the one check of every size."""
    if width < 1 or height < 1:
        return f"{what} would be {width}x{height} pixels; each side must be at least 1 pixel"
    if width > MAX_SIDE or height > MAX_SIDE:
        return f"{what} is {width}x{height} pixels; each side may be at most {MAX_SIDE:,} pixels"
    if width * height > max_pixels:
        return f"{what} is {width}x{height} pixels; the limit is {max_pixels:,} pixels"
    return None


class PixelBudget:
    """The pixels all the images of one request may decode to together: the per-image limit alone let
    one 0.5 MB request of 16 x 2500² images hold 3.1 GB (measured)."""

    def __init__(self, total: int):
        self.total = total
        self.left = total

    def take(self, width: int, height: int, what: str) -> None:
        if width * height > self.left:
            raise invalid(
                f"{what} is {width}x{height}; the images of one request may hold {self.total:,} pixels "
                f"together, and {self.total - self.left:,} are taken by the others"
            )
        self.left -= width * height


class PixelsInFlight:
    """The decoded pixels alive in this process, across requests: a request's own budget bounded one
    request, but queued requests each held theirs (measured: 4 concurrent requests of 16 x 2500²
    held 3.1 GB). A decoded image counts until it is freed (a finalizer gives its pixels back), so no
    path that drops a request can leak the count."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, pixels: int, what: str) -> None:
        for attempt in range(2):
            with self._lock:
                if self.used + pixels <= self.limit or self.used == 0:  # one image alone is bounded by max_pixels
                    self.used += pixels
                    return
            if attempt == 0:
                gc.collect()  # images of finished requests that only a reference cycle keeps alive
        raise FlashbulbError(
            ErrorKind.OVERLOADED,
            f"{what} would take {pixels:,} pixels, and this server is holding {self.used:,} of its {self.limit:,} "
            "for the images of calls in progress; retry shortly (nothing was charged).",
            retry_after_s=2,
        )

    def give(self, pixels: int) -> None:
        with self._lock:
            self.used -= pixels

    def held_by(self, image: Image.Image, pixels: int) -> Image.Image:
        weakref.finalize(image, self.give, pixels)
        return image


# Set from [limits] max_pixels_in_flight when a server starts (api/app.py).
pixels_in_flight = PixelsInFlight(200_000_000)


def decode_image(data: bytes, *, max_pixels: int, what: str = "image", budget: PixelBudget | None = None) -> Image.Image:
    """Decode PNG/JPEG/WebP bytes to an upright RGB or RGBA image, refusing bombs (and images past the
    request's `budget`) from the header, before decoding."""
    if not data:
        raise invalid(f"{what} is empty")
    taken = 0  # the pixels counted in flight, given back if decoding fails
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise invalid(f"{what} is {image.format}; send PNG, JPEG or WebP")
            # The header gives the size without decoding pixels: refuse bombs here.
            if problem := size_problem(image.width, image.height, max_pixels=max_pixels, what=what):
                raise invalid(problem)
            if budget is not None:
                budget.take(image.width, image.height, what)
            pixels_in_flight.take(image.width * image.height, what)
            taken = image.width * image.height
            image.load()
        decoded = normalise_mode(ImageOps.exif_transpose(image))
    except BaseException as exc:
        pixels_in_flight.give(taken)
        if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
            raise invalid(f"{what} claims more pixels than the limit of {max_pixels:,} (a decompression bomb?)") from exc
        if isinstance(exc, UnidentifiedImageError):
            raise invalid(f"{what} is not a readable PNG, JPEG or WebP image ({exc.__class__.__name__})") from exc
        if isinstance(exc, OSError | SyntaxError | ValueError):
            raise invalid(f"{what} is corrupt or truncated: {exc}") from exc
        raise
    return pixels_in_flight.held_by(decoded, taken)


def normalise_mode(image: Image.Image) -> Image.Image:
    """Bring any mode (palette, 16-bit, CMYK, LA, ...) to 8-bit RGB, or RGBA when it has transparency."""
    if image.mode in ("RGB", "RGBA"):
        return image
    has_alpha = image.mode in ("LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)
    if image.mode.startswith("I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping at 255.
        levels = np.asarray(image).astype(np.float32) / 257.0
        image = Image.fromarray(np.clip(levels, 0, 255).astype(np.uint8), "L")
    return image.convert("RGBA" if has_alpha else "RGB")


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def encode(image: Image.Image, fmt: str = "png", *, quality: int = 100, opaque: bool = False) -> bytes:
    """PNG, JPEG or WebP bytes. JPEG has no alpha, and `opaque` asks for none: both flatten onto white."""
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    if image.mode == "RGBA" and (opaque or fmt == "jpeg"):
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    if fmt == "png":
        return encode_png(image)
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=max(1, min(quality, 100)), optimize=True)
    elif fmt == "webp":
        # WebP's quality 100 is still lossy; only `lossless` keeps every pixel.
        image.save(buffer, format="WEBP", quality=max(0, min(quality, 100)), lossless=quality >= 100)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return buffer.getvalue()

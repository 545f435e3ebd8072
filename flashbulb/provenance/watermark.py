"""The invisible watermark: a 32-bit payload in an image's pixels, with RivaGAN (the ONNX encoder and
decoder inside the `invisible-watermark` wheel; diffusers' SDXL uses the same package's DWT-DCT).

RivaGAN is a convolutional network, so it reads its payload back after a crop, and after JPEG and PNG
re-encoding; run at full size it lost 5-16 of 32 bits after a 50% resize and took 2.7 s on a 512x512
photo (2 cores, measured). So the mark is made and read at one working size: the image is brought
to a short side of 256, the network's change to that copy is enlarged back onto the full image
(0-1 bit errors after each attack, PSNR ~43 dB, a fixed cost whatever the size; bench/provenance.py).
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import threading
from pathlib import Path

import numpy as np
from PIL import Image

PAYLOAD_BITS = 32
WORK_SIDE = 256  # the short side the network sees
MAX_WORK_SIDE = 1024  # ... unless that makes the long side longer than this (a 1:8 banner)
# Marked only when it reads back with at most this many bits wrong: what matching a reading's least
# sure bits still absorbs on a server with 100,000 marks recorded (provenance/verify.py). Photos read
# back exactly; what tiny random-weight pipelines draw (colour noise, pale blurs) 2-19 wrong (bench/provenance.py).
MAX_READ_BACK_ERRORS = 2
# A claimed mark's wrong bits must be among the reading's least sure ones, since verify matches by
# flipping only those (up to 12 of them on a server with few marks, 7 at ~1,700: verify.doubts_for):
# a smooth generated picture read 2 bits wrong where the decoder was sure, and verify missed it. At
# most 6 (fewer once the server's budget is smaller: ImageRequest.watermark_doubts), leaving the
# rest of verify's budget for what a copy's re-encoding costs.
TRACED_DOUBTS = 6
PAYLOAD_TRIES = 5  # payloads tried in one pass before a second pass (mark_result)
MIN_SIDE = 128  # smaller images carry no mark: a 50% copy of one is too small to read back

_sessions: tuple | None = None
_lock = threading.Lock()


def _weights_folder() -> str:
    """Where invisible-watermark's wheel put the RivaGAN ONNX files. Found, not imported: importing
    it imports torch, which the offline photo engine's install does not have."""
    import importlib.util

    spec = importlib.util.find_spec("imwatermark")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the RivaGAN watermark weights are missing: install them with "
            "`pip install --no-deps invisible-watermark==0.2.0` (`make run` does)"
        )
    return next(iter(spec.submodule_search_locations))


def _networks():  # (encoder, decoder) sessions (OpenVINO bf16 or onnxruntime), loaded once per process
    global _sessions
    with _lock:
        if _sessions is None:
            from flashbulb.vision import derived_file, fast_session

            folder = Path(_weights_folder())
            sources = {part: folder / f"rivagan_{part}.onnx" for part in ("encoder", "decoder")}
            _sessions = tuple(
                fast_session(
                    derived_file(f"rivagan_{part}_2d.onnx", [source, Path(__file__)], functools.partial(_as_2d, str(source))),
                    threads_if_unset=2,
                )
                for part, source in sources.items()
            )
    return _sessions


def _as_2d(path: str) -> bytes:
    """The RivaGAN network with its video convolutions made image ones. Its Conv3D kernels span one
    frame (1x11x11) and it is only ever given one, so each is exactly a Conv2D between a squeeze
    and an unsqueeze of the frame axis; onnxruntime's 2D convolutions are the faster kernels (one
    thread, 256x256: encoder 703 -> 468 ms, decoder 901 -> 548 ms, outputs within 3e-5)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(path)
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    flat: dict[str, str] = {}  # a Conv3D kernel's name -> its 2D copy's
    nodes = []
    for node in model.graph.node:
        kernel = weights.get(node.input[1]) if node.op_type == "Conv" else None
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        pads, strides = attributes.get("pads", [0] * 6), attributes.get("strides", [1, 1, 1])
        # Only a kernel one frame deep that neither pads nor strides along the frame axis is an image convolution.
        frame_deep = kernel is not None and len(kernel.dims) == 5 and kernel.dims[2] == 1
        padded = pads[0] or pads[3] or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        if kernel is None or not frame_deep or padded or strides[0] != 1:
            nodes.append(node)
            continue
        if kernel.name not in flat:
            flat[kernel.name] = f"{kernel.name}.2d"
            model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(kernel)[:, :, 0], flat[kernel.name]))
        frame_in, frame_out = f"{node.output[0]}.in", f"{node.output[0]}.out"
        nodes += [
            helper.make_node("Squeeze", [node.input[0]], [frame_in], axes=[2]),
            helper.make_node(
                "Conv",
                [frame_in, flat[kernel.name], *node.input[2:]],
                [frame_out],
                kernel_shape=list(kernel.dims[3:]),
                pads=[pads[1], pads[2], pads[4], pads[5]],
                strides=strides[1:],
                dilations=attributes.get("dilations", [1, 1, 1])[1:],
                group=attributes.get("group", 1),
            ),
            helper.make_node("Unsqueeze", [frame_out], [node.output[0]], axes=[2]),
        ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    still_used = {name for node in nodes for name in node.input}
    for name in flat:
        if name not in still_used:
            model.graph.initializer.remove(weights[name])
    return model.SerializeToString()


def unmarkable(image: Image.Image) -> str | None:
    """Why this image can't carry a mark, or None."""
    if not markable(image):
        return f"images under {MIN_SIDE} px a side carry no mark"
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    if np.abs(rgb - rgb[..., :1]).max() <= 2:  # grey, up to rounding
        # Measured: a luminance-only mark reads back as noise (16-18 bit errors); the network hides
        # its bits in colour, and colour would undo a black-and-white edit.
        return "a black-and-white image: the mark lives in colour, which would change it"
    return None


def markable(image: Image.Image) -> bool:
    return min(image.size) >= MIN_SIDE


def _working_copy(rgb: np.ndarray) -> np.ndarray:
    import cv2

    height, width = rgb.shape[:2]
    scale = min(WORK_SIDE / min(height, width), MAX_WORK_SIDE / max(height, width))
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def _frame(work: np.ndarray) -> np.ndarray:
    """An HxWx3 image in 0..255 as the network's one-frame video: (1, 3, 1, H, W) in -1..1."""
    return (work / 127.5 - 1.0).transpose(2, 0, 1)[None, :, None]


def embed(image: Image.Image, payload: int, where: Image.Image | None = None) -> Image.Image:
    """`image` carrying `payload` (0 <= payload < 2**32); transparency is kept as it was. `where`
    ("L", 255 = may change) keeps the mark inside a masked edit's region: the rest stays the exact
    pixels the caller sent."""
    import cv2

    if not 0 <= payload < 2**PAYLOAD_BITS:
        raise ValueError(f"a watermark payload is {PAYLOAD_BITS} bits")
    rgb = np.asarray(image.convert("RGB"))
    work = _working_copy(rgb)
    bits = np.array([[(payload >> (PAYLOAD_BITS - 1 - i)) & 1 for i in range(PAYLOAD_BITS)]], dtype=np.float32)
    encoder, _ = _networks()
    marked = np.clip(encoder.run(None, {"frame": _frame(work), "data": bits})[0], -1.0, 1.0)
    change = (marked[0, :, 0].transpose(1, 2, 0) + 1.0) * 127.5 - work
    change = cv2.resize(change, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    weight = np.ones(rgb.shape[:2], dtype=np.float32)
    if where is not None:
        weight *= np.asarray(where.convert("L").resize(image.size, Image.Resampling.NEAREST), dtype=np.float32) / 255.0
    if image.mode == "RGBA":  # what a cut-out hides stays the exact black it was made
        weight *= np.asarray(image.getchannel("A")) > 0
    out = Image.fromarray(np.clip(rgb + change * weight[..., None], 0, 255).round().astype(np.uint8), "RGB")
    if image.mode == "RGBA":
        out.putalpha(image.getchannel("A"))
    return out


@dataclasses.dataclass(frozen=True)
class Reading:
    """What the decoder read: a payload, how sure it was (mean |logit| over its bits), and its bit
    positions from least sure to most."""

    payload: int
    confidence: float
    doubtful_bits: tuple[int, ...]

    def candidates(self, doubts: int) -> list[int]:
        """The payload with every combination of its `doubts` least sure bits flipped (2**doubts).
        Measured (5 photos x 2 sizes x 5 attacks): a read with 1-2 bit errors had them among its 6
        least sure bits every time; JPEG q80 of 44 more, among the 10 least sure (verify.py)."""
        found = [self.payload]
        for bit in self.doubtful_bits[:doubts]:
            found += [candidate ^ (1 << (PAYLOAD_BITS - 1 - bit)) for candidate in found]
        return found


def read(image: Image.Image) -> Reading | None:
    """The payload `image` seems to carry (None when it is too small to carry one). Any image reads
    as some payload: only one that matches a recorded mark is a mark."""
    if not markable(image):
        return None
    rgb = np.asarray(image.convert("RGB"))
    _, decoder = _networks()
    logits = decoder.run(None, {"frame": _frame(_working_copy(rgb))})[0][0]
    payload = 0
    for logit in logits:
        payload = (payload << 1) | int(logit > 0)
    return Reading(
        payload=payload,
        confidence=round(float(np.mean(np.abs(logits))), 3),
        doubtful_bits=tuple(int(i) for i in np.argsort(np.abs(logits), kind="stable")),
    )


def mark_result(request, result):  # engine ImageRequest, ImageResult
    """Each result image carrying a payload (run in the worker, after the exact size is made: every
    later step is one a viewer's copy goes through too), read back to be sure. `result.watermark`
    is the payload its images carry; its quality says how well."""
    import time

    if request.watermark is None or not result.images:
        return result
    if why := next(filter(None, map(unmarkable, result.images)), None):
        result.quality["watermark"] = {"marked": False, "why": why}
        return result
    started = time.perf_counter()
    where = result.edited_region if result.edited_region is not None else request.mask
    # Measured: one pass on a photo reads back 1-2 bits wrong for ~30% of payloads (6 of 20 on one
    # edit), independently of each other; so fresh payloads are tried first (a mark is random
    # anyway), and only when none holds in one pass (0.3^5) is a second pass made.
    for payload in [request.watermark, *(secrets.randbits(PAYLOAD_BITS) for _ in range(PAYLOAD_TRIES - 1))]:
        marked = [embed(image, payload, where) for image in result.images]
        readings = [read(image) for image in marked]
        errors = [bit_errors(reading, payload) for reading in readings]
        if not any(errors):
            passes = 1
            break
    else:
        # An edit of an image that was marked already (a studio's second turn): the old mark fights
        # the new one (1-8 bit errors, measured); a second pass on the marked image settles it on
        # photos (0), at ~37 dB instead of ~43.
        marked = [embed(image, payload, where) if wrong else image for image, wrong in zip(marked, errors)]
        readings = [read(image) if wrong else reading for image, reading, wrong in zip(marked, readings, errors)]
        errors = [bit_errors(reading, payload) for reading in readings]
        passes = 2
    result.timings_ms["watermark"] = round((time.perf_counter() - started) * 1000, 1)
    worst = max(errors)
    doubts = min(TRACED_DOUBTS, request.watermark_doubts)
    sure_but_wrong = any(r is None or payload not in r.candidates(doubts) for r in readings)
    if worst > MAX_READ_BACK_ERRORS or sure_but_wrong:
        # A mark that can't be read back and traced is no mark: the image goes out as it was made, and says so.
        why = f"{worst} of {PAYLOAD_BITS} bits read back wrong after {passes} pass{'es' if passes > 1 else ''}"
        if worst <= MAX_READ_BACK_ERRORS:
            why += f", not among the {doubts} the decoder was least sure of, so it couldn't be traced"
        result.quality["watermark"] = {"marked": False, "why": f"this image doesn't hold the mark: {why}"}
        return result
    result.quality["watermark"] = {
        "marked": True,
        "method": "RivaGAN, 32 bits",
        "psnr_db": psnr(result.images[0], marked[0]),
        "read_back_bit_errors": worst,
        "passes": passes,
    }
    result.images, result.watermark = marked, payload
    return result


def bit_errors(reading: Reading | None, payload: int) -> int:
    return PAYLOAD_BITS if reading is None else bin(reading.payload ^ payload).count("1")


def psnr(before: Image.Image, after: Image.Image) -> float:
    """Peak signal-to-noise ratio of the colour channels, in dB (how invisible the change is)."""
    a = np.asarray(before.convert("RGB"), dtype=np.float64)
    b = np.asarray(after.convert("RGB"), dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return round(10 * np.log10(255.0**2 / mse), 1) if mse else float("inf")

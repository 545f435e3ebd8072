"""Restore time for a 256x256 photo -> 1024x1024 with flashbulb-photo, against named baselines in the same run.

Baselines: `ncnn-reference` runs the same Real-ESRGAN weights on the whole image in one ncnn call
with ncnn's default options (no tiling: unbounded memory); `bicubic` is PIL's bicubic 4x (no
restoration). Prints seconds per image (median of --repeat) and each path's speed-up over the
reference (target: flashbulb's network path >= 1.2x), and the PSNR of flashbulb's network output
(tiled, bf16) against the reference's (target >= 40 dB).

    .venv/bin/python bench/restore_speed.py [--size 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
from PIL import Image
from skimage import data

from flashbulb.engine.backends.photo import PhotoBackend
from flashbulb.engine.types import ImageRequest, JobContext
from flashbulb.vision import superres


def timed(work, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    photo = Image.fromarray(data.astronaut()).resize((args.size, args.size), Image.Resampling.LANCZOS)
    backend = PhotoBackend()
    model = superres.get_model()
    rgb = np.asarray(photo)
    request = ImageRequest(request_id="bench", model="flashbulb-photo", prompt="restore this old photo", images=[photo])

    flashbulb_s, result = timed(lambda: backend.run(request, JobContext()), args.repeat)
    network_s, network = timed(lambda: model.upscale4x(rgb), args.repeat)
    # ncnn with bf16 storage: what runs where the CPU has no native bfloat16 (superres.default_runtime).
    fallback = model if model.runtime == "ncnn" else superres.RealESRGAN(runtime="ncnn", threads=model.threads)
    fallback_s = network_s if fallback is model else timed(lambda: fallback.upscale4x(rgb), args.repeat)[0]
    flashbulb_peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stock = superres.RealESRGAN(runtime="ncnn", bf16=False, threads=model.threads)  # ncnn's default options
    reference_s, reference = timed(lambda: stock._run_tile(rgb), args.repeat)
    bicubic_s, _ = timed(lambda: photo.resize((args.size * 4,) * 2, Image.Resampling.BICUBIC), args.repeat)

    out = np.asarray(result.images[0])
    ref = np.clip(reference * 255.0 + 0.5, 0, 255).astype(np.uint8).astype(float)
    psnr = 10 * np.log10(255**2 / np.mean((network.astype(float) - ref) ** 2))
    print(
        f"restore {args.size}x{args.size} -> {out.shape[1]}x{out.shape[0]} (median of {args.repeat}, {model.threads} threads, {model.runtime})"
    )
    print(f"{'path':<52}{'s/image':>10}{'speed-up vs reference':>23}")
    for name, seconds in [
        ("ncnn-reference (untiled, ncnn defaults)", reference_s),
        (f"ncnn, {fallback.tile} px tiles, bf16 storage", fallback_s),
        *([(f"openvino, {model.tile} px tiles, bf16 (the default here)", network_s)] if fallback is not model else []),
        ("flashbulb-photo restore (the whole call)", flashbulb_s),
        ("bicubic (PIL, no restoration)", bicubic_s),
    ]:
        print(f"{name:<52}{seconds:>10.3f}{reference_s / seconds:>22.2f}x")
    print(
        f"peak RSS: {flashbulb_peak_mib:.0f} MiB with flashbulb's tiles, "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB after the untiled reference"
    )
    print(f"flashbulb network ({model.runtime}) vs reference: PSNR {psnr:.1f} dB (target >= 40)")


if __name__ == "__main__":
    main()

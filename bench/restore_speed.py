"""Restore time for a 256x256 photo -> 1024x1024 with flashbulb-photo, against named baselines in the same run.

Baselines: `ncnn-reference` runs the same Real-ESRGAN weights on the whole image in one ncnn call
(no tiling: the fastest but unbounded memory); `bicubic` is PIL's bicubic 4x (no restoration).
Prints seconds per image (median of --repeat) and the ratio of each to flashbulb's tiled path,
plus the largest pixel difference between the tiled and the reference output.

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
    flashbulb_peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reference_s, reference = timed(lambda: model._run_tile(rgb), args.repeat)
    bicubic_s, _ = timed(lambda: photo.resize((args.size * 4,) * 2, Image.Resampling.BICUBIC), args.repeat)

    out = np.asarray(result.images[0], dtype=np.int16)
    ref = np.clip(reference * 255.0 + 0.5, 0, 255).astype(np.int16)
    print(
        f"restore {args.size}x{args.size} -> {out.shape[1]}x{out.shape[0]} (median of {args.repeat}, {model.net.opt.num_threads} threads)"
    )
    print(f"{'path':<34}{'s/image':>10}{'x flashbulb':>13}")
    for name, seconds in [
        ("flashbulb-photo (tiled, full call)", flashbulb_s),
        ("ncnn-reference (one untiled call)", reference_s),
        ("bicubic (PIL, no restoration)", bicubic_s),
    ]:
        print(f"{name:<34}{seconds:>10.3f}{seconds / flashbulb_s:>13.3f}")
    print(
        f"peak RSS: {flashbulb_peak_mib:.0f} MiB with flashbulb's tiles, "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB after the untiled reference"
    )
    print(f"max |tiled - reference| pixel difference: {int(np.abs(out - ref).max())} (mean {np.abs(out - ref).mean():.3f})")


if __name__ == "__main__":
    main()

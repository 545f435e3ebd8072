"""A LinkedIn headshot of a 512x512 portrait with flashbulb-photo, against a named baseline in the
same run: one untiled Real-ESRGAN x4 pass of a 256x256 image with ncnn's default options (the
issue's yardstick: a headshot should cost no more than that; target ratio <= 1x). Also the
measurement floor: what the per-result measurements (safety, faces and identity, OCR) cost on a
32x32 edit (target <= 100 ms).

    .venv/bin/python bench/headshot_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from PIL import Image
from restore_speed import timed  # this folder's: the median of --repeat runs
from skimage import data

from flashbulb.engine.backends.photo import PhotoBackend
from flashbulb.engine.types import ImageRequest, JobContext
from flashbulb.vision import superres

MEASUREMENTS = ("safety_in", "identity_in", "identity_out", "safety_out", "ocr")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    backend = PhotoBackend()
    portrait = Image.fromarray(data.astronaut())  # 512x512
    headshot = ImageRequest(
        request_id="bench", model="flashbulb-photo", prompt="make this a LinkedIn headshot", images=[portrait]
    )
    headshot_s, result = timed(lambda: backend.run(headshot, JobContext()), args.repeat)
    assert result.images, result.text

    small = np.asarray(portrait.resize((256, 256), Image.Resampling.LANCZOS))
    stock = superres.RealESRGAN(runtime="ncnn", bf16=False)
    reference_s, _ = timed(lambda: stock._run_tile(small), args.repeat)

    tiny = ImageRequest(
        request_id="bench", model="flashbulb-photo", prompt="make it brighter", images=[portrait.resize((32, 32))]
    )
    floors = []
    for _ in range(max(args.repeat, 5)):
        timings = backend.run(tiny, JobContext()).timings_ms
        floors.append(sum(timings.get(stage, 0.0) for stage in MEASUREMENTS))

    out = result.images[0]
    print(f"headshot 512x512 -> {out.width}x{out.height} (median of {args.repeat}, {stock.threads} threads)")
    print(f"{'path':<52}{'seconds':>10}{'x reference':>13}")
    print(f"{'ncnn-reference (one untiled x4 pass of 256x256)':<52}{reference_s:>10.2f}{1:>13.2f}")
    print(f"{'flashbulb-photo headshot (the whole call)':<52}{headshot_s:>10.2f}{headshot_s / reference_s:>13.2f}  (target <= 1)")
    print(
        f"measurement floor on a 32x32 edit: {statistics.median(floors):.0f} ms (target <= 100), stages {', '.join(MEASUREMENTS)}"
    )


if __name__ == "__main__":
    main()

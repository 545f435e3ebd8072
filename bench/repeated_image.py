"""One account sending the same photo again and again (a batch's items on one photo, retries, the
studio's next turn): flashbulb-photo's time per call when its checks of those pixels are answered
from memory (vision/remembered.py), against a named baseline in the same run: the same calls, each
from another account, whose checks all run the models.

    .venv/bin/python bench/repeated_image.py [--calls 20] [--size 256]
"""

from __future__ import annotations

import argparse
import statistics
import time

from PIL import Image
from skimage import data

from flashbulb.engine.backends.photo import PhotoBackend
from flashbulb.engine.types import ImageRequest, JobContext

CHECKS = ("safety_in", "identity_in", "identity_out", "safety_out")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    backend = PhotoBackend()
    photo = Image.fromarray(data.astronaut()).resize((args.size, args.size))

    def call(owner: int) -> tuple[float, float]:
        request = ImageRequest(
            request_id="bench", model="flashbulb-photo", prompt="make it brighter", images=[photo], owner=owner
        )
        started = time.perf_counter()
        timings = backend.run(request, JobContext()).timings_ms
        return (time.perf_counter() - started) * 1000, sum(timings[stage] for stage in CHECKS)

    call(0)  # loads what the first call would
    rows = {
        "baseline: each call from another account": [call(owner) for owner in range(1, args.calls + 1)],
        "one account, the same photo": [call(10**6) for _ in range(args.calls)],
    }
    baseline = statistics.median(total for total, _ in rows["baseline: each call from another account"])
    print(f"{args.calls} calls each, {args.size}x{args.size} 'make it brighter', medians")
    print(f"{'calls':<44}{'call ms':>10}{'checks ms':>11}{'x baseline':>12}")
    for name, measured in rows.items():
        total = statistics.median(t for t, _ in measured)
        checks = statistics.median(c for _, c in measured)
        print(f"{name:<44}{total:>10.1f}{checks:>11.1f}{total / baseline:>12.2f}")


if __name__ == "__main__":
    main()

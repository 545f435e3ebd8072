"""Restore quality of flashbulb-photo on real photos with a known ground truth, against named baselines.

Each photo (those that ship in installed packages, nothing downloaded) is resized so its long side is at
most --size, cropped to multiples of 4, and that is the ground truth. It is degraded deterministically
(Gaussian blur sigma 1.0 -> 4x INTER_AREA downscale -> Gaussian noise sigma 15 -> JPEG quality 20) and
restored 4x by each method. Per image and method: PSNR and SSIM against the ground truth, the dlib
identity distance between ground-truth and output face (portraits only; < 0.6 is the same person) and
seconds per image; then the means over images and their ratio to `bicubic`.
With --memory (the default) it also reports the peak RSS of restoring a 2048x2048 photo in a fresh
process, against a fresh process that only imports flashbulb and loads the same model; that restore
runs Real-ESRGAN on 1024x1024 (several minutes on 2 cores; use --no-memory to skip it).

    .venv/bin/python bench/restore_quality.py [--size 512] [--images astronaut,chelsea] [--no-memory]
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import time

import cv2
import numpy as np
from matplotlib import cbook
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from flashbulb.engine.backends.photo import PhotoBackend
from flashbulb.engine.types import ImageRequest, JobContext
from flashbulb.vision import identity

PHOTOS = {
    "astronaut": data.astronaut,
    "camera": lambda: np.stack([data.camera()] * 3, axis=2),
    "chelsea": data.chelsea,
    "coffee": data.coffee,
    "rocket": data.rocket,
    "motorcycle": lambda: data.stereo_motorcycle()[0],
    "grace_hopper": lambda: np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")),
}
SEED = 0
NLM_H = 5  # JPEG q20 already averages away most of the sigma-15 noise, so h = sigma (15) smears detail;
# a sweep of h in 5..20 (bicubic after, astronaut/chelsea/coffee/rocket at 256 and 512) peaked at h = 5.


def ground_truth(rgb: np.ndarray, size: int) -> np.ndarray:
    image = Image.fromarray(rgb)
    if max(image.size) > size:
        factor = size / max(image.size)
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)
    out = np.asarray(image)
    return out[: out.shape[0] // 4 * 4, : out.shape[1] // 4 * 4]


def degrade(truth: np.ndarray) -> np.ndarray:
    blurred = cv2.GaussianBlur(truth, (0, 0), 1.0)
    small = cv2.resize(blurred, (truth.shape[1] // 4, truth.shape[0] // 4), interpolation=cv2.INTER_AREA)
    noisy = small + np.random.default_rng(SEED).normal(0.0, 15.0, small.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=20)
    return np.asarray(Image.open(buffer).convert("RGB"))


def bicubic(degraded: np.ndarray) -> np.ndarray:
    h, w = degraded.shape[:2]
    return np.asarray(Image.fromarray(degraded).resize((w * 4, h * 4), Image.Resampling.BICUBIC))


def nlm_bicubic(degraded: np.ndarray) -> np.ndarray:
    return bicubic(cv2.fastNlMeansDenoisingColored(degraded, None, NLM_H, NLM_H, 7, 21))


def flashbulb_photo(backend: PhotoBackend):
    def restore(degraded: np.ndarray) -> np.ndarray | str:
        request = ImageRequest(
            request_id="bench",
            model="flashbulb-photo",
            prompt="restore this old photo, upscale 4x",
            images=[Image.fromarray(degraded)],
        )
        result = backend.run(request, JobContext())
        if not result.images:
            return result.text
        h, w = degraded.shape[:2]
        out = result.images[0].convert("RGB")
        if out.size != (w * 4, h * 4):
            out = out.resize((w * 4, h * 4), Image.Resampling.LANCZOS)
        return np.asarray(out)

    return restore


def measure(truth: np.ndarray, method, degraded: np.ndarray, faces: list) -> dict | str:
    started = time.perf_counter()
    out = method(degraded)
    seconds = time.perf_counter() - started
    if isinstance(out, str):
        return out
    distance = identity.nearest(faces[0], identity.embeddings(out)) if faces else None
    return {
        "psnr": peak_signal_noise_ratio(truth, out, data_range=255),
        "ssim": structural_similarity(truth, out, channel_axis=2, data_range=255),
        "id": distance if faces else "-",
        "s": seconds,
    }


def id_text(value: object) -> str:
    return "no face" if value is None else value if isinstance(value, str) else f"{value:.3f}"


MEMORY_CHILD = """
import resource, sys
from PIL import Image
from skimage import data
from flashbulb.engine.backends.photo import PhotoBackend
from flashbulb.engine.types import ImageRequest, JobContext
photo = Image.fromarray(data.astronaut()).resize((2048, 2048), Image.Resampling.LANCZOS)
backend = PhotoBackend()
if sys.argv[1] == "restore":
    request = ImageRequest(request_id="bench", model="flashbulb-photo", prompt="restore this old photo", images=[photo])
    result = backend.run(request, JobContext())
    assert result.images, result.text
    print(*result.images[0].size)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def child_peak_mib(mode: str) -> tuple[float, str]:
    done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, mode], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"memory child ({mode}) failed:\n{done.stderr}")
    lines = done.stdout.split()
    return int(lines[-1]) / 1024, "x".join(lines[:-1])


def memory_table() -> None:
    baseline, _ = child_peak_mib("load")
    restore, size = child_peak_mib("restore")
    print("peak RSS, fresh process each (astronaut resized to 2048x2048)")
    print(f"{'process':<46}{'MiB':>8}{'x load':>9}")
    print(f"{'import flashbulb + load model (baseline)':<46}{baseline:>8.0f}{1:>9.2f}")
    print(f"{'flashbulb-photo restore -> ' + size:<46}{restore:>8.0f}{restore / baseline:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512, help="long side of the ground truth, at most")
    parser.add_argument("--images", default=",".join(PHOTOS), help=f"comma list of: {', '.join(PHOTOS)}")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    names = args.images.split(",")
    methods = {"bicubic": bicubic, "nlm+bicubic": nlm_bicubic, "flashbulb-photo": flashbulb_photo(PhotoBackend())}
    results: dict[str, dict[str, dict]] = {}
    failed: list[str] = []

    for name in names:
        truth = ground_truth(PHOTOS[name](), args.size)
        degraded = degrade(truth)
        faces = identity.embeddings(truth)
        h, w = truth.shape[:2]
        print(f"{name}: {w // 4}x{h // 4} degraded -> {w}x{h}, {'portrait' if faces else 'no face'}")
        print(f"{'method':<17}{'PSNR':>8}{'SSIM':>8}{'id dist':>9}{'s/image':>9}")
        results[name] = {}
        for method, restore in methods.items():
            row = measure(truth, restore, degraded, faces)
            if isinstance(row, str):
                print(f"{method:<17}FAILED: {row}")
                failed.append(name)
                continue
            results[name][method] = row
            print(f"{method:<17}{row['psnr']:>8.2f}{row['ssim']:>8.4f}{id_text(row['id']):>9}{row['s']:>9.3f}")
        print()

    kept = [name for name in names if name not in failed]
    print(
        f"mean over {len(kept)} images ({args.size} px long side); ratios against bicubic"
        + (f"; left out after a failure: {', '.join(sorted(set(failed)))}" if failed else "")
    )
    print(f"{'method':<17}{'PSNR':>8}{'SSIM':>8}{'id dist':>9}{'s/image':>9}{'PSNR x':>8}{'SSIM x':>8}{'time x':>9}")
    means, lost = {}, []
    for method in methods:
        rows = [results[name][method] for name in kept]
        if not rows:
            continue
        ids = [row["id"] for row in rows if isinstance(row["id"], float)]
        lost += [f"{method} on {name}" for name in kept if results[name][method]["id"] is None]
        means[method] = {key: statistics.fmean(row[key] for row in rows) for key in ("psnr", "ssim", "s")}
        m, base = means[method], means["bicubic"]
        mean_id = f"{statistics.fmean(ids):.3f}" if ids else "-"
        print(
            f"{method:<17}{m['psnr']:>8.2f}{m['ssim']:>8.4f}{mean_id:>9}{m['s']:>9.3f}"
            f"{m['psnr'] / base['psnr']:>8.3f}{m['ssim'] / base['ssim']:>8.3f}{m['s'] / base['s']:>9.1f}"
        )
    if lost:
        print(f"id dist is over the outputs where a face was found; none found for: {', '.join(lost)}")
    if args.memory:
        print()
        memory_table()


if __name__ == "__main__":
    main()

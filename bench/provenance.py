"""Provenance: how well the watermark survives, how often an image flashbulb didn't make is claimed,
and what marking and signing cost, all through a live server in one run.

1. Robustness: N results of flashbulb-photo (edits of real photos) and N of a tiny random-weight
   diffusion pipeline (text-to-image at 512x512), each attacked (JPEG q80, resize to 50%, a 10% crop,
   a PNG re-encode, and all of those at once), then `POST /flashbulb/verify`: the share traced back
   to the right call, per attack.
2. False positives: every PNG/JPEG/WebP of 64 px or more a side in the installed packages
   (scikit-image's and matplotlib's sample photos, logos, test baselines), none made by flashbulb.
3. Cost per image, in process, against the baseline of encoding the PNG alone (same image, same run):
   the watermark, and C2PA signing of the encoded PNG.

    .venv/bin/python bench/provenance.py [--images 6] [--size 512]
"""

from __future__ import annotations

import argparse
import base64
import glob
import io
import site
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from batch_throughput import Server

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "colorwheel", "immunohistochemistry", "retina", "hubble_deep_field"]
EDITS = ["make it brighter", "more contrast", "make it warmer", "restore this old photo"]


def png(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def attacks(image: Image.Image) -> dict[str, bytes]:
    w, h = image.size
    dx, dy = w // 20, h // 20

    def crop(im: Image.Image) -> Image.Image:
        return im.crop((im.width // 20, im.height // 20, im.width - im.width // 20, im.height - im.height // 20))

    rgb = image.convert("RGB")
    combined = Image.open(io.BytesIO(png(crop(rgb.resize((w // 2, h // 2), Image.Resampling.BICUBIC)), "JPEG", quality=80)))
    return {
        "none": png(image),
        "JPEG q80": png(rgb, "JPEG", quality=80),
        "resize 50%": png(image.resize((w // 2, h // 2), Image.Resampling.BICUBIC)),
        "crop 10%": png(image.crop((dx, dy, w - dx, h - dy))),
        "PNG re-encode": png(Image.open(io.BytesIO(png(rgb)))),
        "all four": png(combined),
    }


def sized(image: Image.Image, short: int) -> Image.Image:
    scale = short / min(image.size)
    return image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def results(server: Server, key: str, count: int, size: int) -> list[tuple[str, str, Image.Image, dict]]:
    """(kind, request id, image, its quality's watermark) for `count` photo edits and `count` diffusion images."""
    made = []
    headers = {"x-goog-api-key": key}
    for index in range(count):
        photo = sized(Image.fromarray(getattr(data, PHOTOS[index % len(PHOTOS)])()), size)
        body = {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": EDITS[index % len(EDITS)]},
                        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png(photo)).decode()}},
                    ],
                }
            ]
        }
        made.append(
            (
                "flashbulb-photo",
                httpx.post(
                    f"{server.base}/v1beta/models/flashbulb-photo:generateContent", json=body, headers=headers, timeout=600
                ),
            )
        )
        body = {
            "contents": [{"role": "user", "parts": [{"text": f"a lighthouse at dusk, study {index}"}]}],
            "generationConfig": {"seed": index},
        }
        made.append(
            (
                "tiny diffusion",
                httpx.post(f"{server.base}/v1beta/models/tiny:generateContent", json=body, headers=headers, timeout=600),
            )
        )
    out = []
    for kind, response in made:
        answer = response.json()
        if response.status_code == 200 and answer.get("promptFeedback", {}).get("blockReason"):
            # The safety check refusing a sample photo is its own finding, not this bench's: say so, go on.
            print(f"   (a {kind} input was refused: {answer['promptFeedback']['blockReasonMessage']})")
            continue
        if response.status_code != 200 or "candidates" not in answer:
            raise SystemExit(f"{kind} failed: {response.text[:300]}")
        [part] = [p for p in answer["candidates"][0]["content"]["parts"] if "inlineData" in p]
        mark = answer["flashbulb"]["quality"].get("watermark", {})
        image = Image.open(io.BytesIO(base64.b64decode(part["inlineData"]["data"])))
        out.append((kind, answer["responseId"], image, mark))
    return out


def verify(server: Server, key: str, image: bytes) -> dict:
    response = httpx.post(
        f"{server.base}/flashbulb/verify", files={"image": ("i", image)}, headers={"x-goog-api-key": key}, timeout=120
    )
    response.raise_for_status()
    return response.json()


def sample_images() -> list[Path]:
    paths = {
        Path(p)
        for folder in site.getsitepackages()
        for ext in ("png", "jpg", "jpeg", "webp")
        for p in glob.glob(f"{folder}/**/*.{ext}", recursive=True)
    }
    found = []
    for path in sorted(paths):
        try:
            with Image.open(path) as image:
                if min(image.size) >= 64:
                    found.append(path)
        except Exception:  # noqa: BLE001 - a file that only looks like an image
            continue
    return found


def median_ms(work, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def costs(size: int) -> None:
    from flashbulb.engine.imageio import encode_png
    from flashbulb.provenance import credentials, identity, watermark

    signer = credentials.Signer(identity.load(Path(tempfile.mkdtemp())))
    facts = credentials.Facts(model="flux2-klein-4b", watermark=0x1234ABCD)
    print("\n3. Cost per image, in process (median of 5; baseline: encoding the PNG alone)")
    print(f"   {'image':>11} | {'PNG encode':>10} | {'watermark':>16} | {'C2PA signing':>16}")
    for side in (512, 1024, 2048):
        image = sized(Image.fromarray(data.astronaut()), side)
        encoded = encode_png(image)
        base = median_ms(lambda: encode_png(image))
        mark = median_ms(lambda: watermark.embed(image, 0x1234ABCD))
        sign = median_ms(lambda: signer.sign(encoded, "png", facts))
        print(
            f"   {side:>5}x{side:<5} | {base:8.1f} ms | {mark:7.1f} ms {mark / base:5.2f}x | {sign:7.1f} ms {sign / base:5.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=6, help="results of each kind")
    parser.add_argument("--size", type=int, default=512, help="the short side of the photos edited")
    args = parser.parse_args()

    import tiny_pipelines

    from flashbulb.engine.backends.diffusion import catalog

    root = Path(tempfile.mkdtemp(prefix="provenance-bench-"))
    tiny_pipelines.build(catalog.by_name()["sd-turbo"].pipeline, root / "tiny-sd")
    data_dir = root / "data"
    data_dir.mkdir()
    (data_dir / "flashbulb.toml").write_text(
        f'[diffusion]\nwarm_models = ["flashbulb-photo", "tiny"]\n\n[models.tiny]\nlike = "sd-turbo"\npath = "{root / "tiny-sd"}"\n'
        "steps = 2\npixels = 262144\n\n[rate_limits]\nkey_rpm = 0\naccount_rpm = 0\n"
    )
    server = Server(data_dir, f"sqlite:///{data_dir / 'flashbulb.db'}")
    server.start()
    try:
        key = server.key("bench", "1000")
        made = results(server, key, args.images, args.size)
        print(f"1. Watermark robustness: share of results traced back to their own call ({args.images} asked of each kind)")
        names = list(attacks(made[0][2]))
        print(f"   {'attack':>14} | " + " | ".join(f"{k:>15}" for k in ("flashbulb-photo", "tiny diffusion")))
        table = {name: {"flashbulb-photo": 0, "tiny diffusion": 0} for name in names}
        for kind, request_id, image, _ in made:
            for name, attacked in attacks(image).items():
                mark = verify(server, key, attacked)["watermark"]
                table[name][kind] += mark.get("found") and mark.get("request_id") == request_id
        counts = {k: sum(kind == k for kind, *_ in made) for k in ("flashbulb-photo", "tiny diffusion")}
        for name in names:
            print(f"   {name:>14} | " + " | ".join(f"{table[name][k] / max(1, counts[k]):>14.0%} " for k in counts))
        for k in counts:  # an unmarked result (one that doesn't hold the mark) counts as not traced above
            marks = [m for kind, *_, m in made if kind == k and m.get("marked")]
            unmarked = sorted({m.get("why", "?") for kind, *_, m in made if kind == k and not m.get("marked")})
            line = f"   {k}: {counts[k]} results, {len(marks)} marked"
            if marks:
                psnrs = [m["psnr_db"] for m in marks]
                line += (
                    f", mark PSNR min {min(psnrs)} dB / median {statistics.median(psnrs):.1f} dB, "
                    f"{sum(m['passes'] == 2 for m in marks)} needed a second pass, read-back bit errors "
                    f"{sorted(m['read_back_bit_errors'] for m in marks)}"
                )
            print(line + "".join(f"\n      not marked: {why}" for why in unmarked))

        samples = sample_images()
        claimed = []
        for path in samples:
            found = verify(server, server_admin(server), path.read_bytes())
            if found["watermark"].get("found") or (found["c2pa"] or {}).get("claim_generator", "").startswith("flashbulb"):
                claimed.append(path)
        print(
            f"\n2. False positives: {len(claimed)} of {len(samples)} images flashbulb didn't make were claimed "
            f"({len(claimed) / max(1, len(samples)):.2%})"
        )
        for path in claimed:
            print(f"   claimed: {path}")
    finally:
        server.stop()
    costs(args.size)


def server_admin(server: Server) -> str:
    """The admin key the server printed on its first start (it sees every call)."""
    import re

    return re.search(r"^FLASHBULB_ADMIN_KEY=(\S+)$", (server.data_dir / "server.log").read_text(), re.M).group(1)


if __name__ == "__main__":
    main()

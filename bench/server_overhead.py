"""Median server overhead per call: everything but the model, through a live server and the real SDK.

Overhead = client-measured latency of generateContent minus the model time the server reports
(flashbulb.timings_ms.model). Baseline in the same run: a bare HTTP round trip to /healthz.

    .venv/bin/python bench/server_overhead.py [--calls 50] [--size 32]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image
from skimage import data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="flashbulb-bench-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Many calls from one key as fast as possible: a benchmark, not a customer to limit.
    (data_dir / "flashbulb.toml").write_text(
        "[rate_limits]\nkey_rpm = 0\naccount_rpm = 0\nkey_concurrent = 0\naccount_concurrent = 0\n"
    )
    env = {**os.environ, "FLASHBULB_DATA_DIR": str(data_dir)}
    log = open(data_dir / "server.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "flashbulb.cli", "serve", "--port", str(port)], stdout=log, stderr=log, env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        key = subprocess.run(
            [sys.executable, "-m", "flashbulb.cli", "keys", "create", "--name", "bench", "--credits", "100"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()
        buffer = io.BytesIO()
        Image.fromarray(data.astronaut()).resize((args.size, args.size)).save(buffer, "PNG")
        body = {
            "contents": [
                {
                    "parts": [
                        {"text": "upscale 1x"},
                        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(buffer.getvalue()).decode()}},
                    ]
                }
            ]
        }
        url = f"{base}/v1beta/models/flashbulb-photo:generateContent"
        with httpx.Client(headers={"x-goog-api-key": key}, timeout=60) as client:
            client.post(url, json=body).raise_for_status()  # warm-up
            totals, models, health = [], [], []
            for _ in range(args.calls):
                started = time.perf_counter()
                response = client.post(url, json=body)
                totals.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                models.append(response.json()["flashbulb"]["timings_ms"]["model"])
                started = time.perf_counter()
                client.get(f"{base}/healthz").raise_for_status()
                health.append((time.perf_counter() - started) * 1000)
        overheads = [t - m for t, m in zip(totals, models)]
        print(f"{args.calls} calls, {args.size}x{args.size} input, SQLite, one client on loopback")
        print(f"{'measure':<40}{'median ms':>10}")
        for name, values in [
            ("generateContent, client latency", totals),
            ("model time (server-reported)", models),
            ("server overhead (latency - model)", overheads),
            ("baseline: GET /healthz round trip", health),
        ]:
            print(f"{name:<40}{statistics.median(values):>10.2f}")
        print(f"overhead / healthz round trip: {statistics.median(overheads) / statistics.median(health):.1f}x")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()

"""Real-ESRGAN on ncnn and on OpenVINO: the same weights give the same picture, and tiling gives
the same picture as one untiled pass."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from conftest import astronaut

from flashbulb.vision import ncnn_onnx, superres
from flashbulb.vision.superres import RealESRGAN


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a - b) ** 2)))


@pytest.mark.parametrize("runtime", ["ncnn", "openvino"])
def test_tiles_join_without_visible_seams_and_match_ncnns_own_defaults(runtime):
    rgb = np.asarray(astronaut(64))
    reference = RealESRGAN(runtime="ncnn", bf16=False)  # ncnn's default options, one untiled pass: the reference
    whole = np.clip(reference._run_tile(rgb) * 255 + 0.5, 0, 255).round()
    tiled = RealESRGAN(tile=32, pad=16, runtime=runtime).upscale4x(rgb).astype(float)  # the production context, 4 tiles, bf16
    assert tiled.shape == (256, 256, 3)
    difference = np.abs(tiled - whole)
    print(
        f"{runtime} tiled bf16 vs untiled defaults: PSNR {psnr(tiled, whole):.1f} dB, mean {difference.mean():.2f}, "
        f"p99 {np.percentile(difference, 99):.1f}"
    )
    # Measured: PSNR 41.0 dB, mean 1.2, 99th percentile 9 (context at tile edges is only 16 px at
    # this size); a tile pasted one pixel off, or without its context, gives several times more.
    assert psnr(tiled, whole) >= 40 and difference.mean() < 2 and np.percentile(difference, 99) < 12


def test_the_graph_read_from_ncnns_files_computes_what_ncnn_computes():
    """At full precision the ONNX graph OpenVINO runs is ncnn's network, layer for layer (measured:
    126 dB); one weight read from the wrong offset, or a coefficient dropped, gives ~20 dB."""
    rgb = np.asarray(astronaut(48))
    ncnn_out = RealESRGAN(runtime="ncnn", bf16=False)._run_tile(rgb) * 255
    openvino_out = superres._OpenVino(threads=2, precision="f32").run(rgb) * 255
    assert psnr(np.clip(openvino_out, 0, 255), np.clip(ncnn_out, 0, 255)) >= 90


def test_an_ncnn_layer_it_does_not_know_is_refused_by_name(tmp_path):
    (tmp_path / "net.param").write_text("7767517\n2 2\nInput data 0 1 data\nPooling pool 1 1 data output 0=0 1=2 2=2\n")
    (tmp_path / "net.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="ncnn layer Pooling"):
        ncnn_onnx.to_onnx(tmp_path / "net.param", tmp_path / "net.bin")


def test_progress_is_reported_per_tile():
    seen = []
    RealESRGAN(tile=16, pad=4).upscale4x(np.asarray(astronaut(32)), lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_the_converted_graph_is_kept_in_the_cache_and_loaded_from_there(tmp_path, monkeypatch):
    """A start reads the graph converted at an earlier one (1.1 s of every start saved); where the
    cache can't be written the conversion is used from memory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    stale = tmp_path / "flashbulb" / f"{superres.MODEL_NAME}-0123456789abcdef.onnx"  # an older conversion's
    recent = stale.with_name(f"{superres.MODEL_NAME}-fedcba9876543210.onnx")  # one a process may be starting from
    stale.parent.mkdir()
    for old in (stale, recent):
        old.write_bytes(b"old")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    directory = superres.weights_dir()
    converted = ncnn_onnx.to_onnx(directory / f"{superres.MODEL_NAME}.param", directory / f"{superres.MODEL_NAME}.bin")
    first = superres.onnx_model()
    assert isinstance(first, type(tmp_path)) and first.parent == tmp_path / "flashbulb"
    assert first.read_bytes() == converted.SerializeToString()
    written = first.stat().st_mtime_ns
    assert superres.onnx_model() == first and first.stat().st_mtime_ns == written  # read, not converted again
    assert not list(first.parent.glob("*.part")) and not stale.exists() and recent.exists()
    rgb = np.asarray(astronaut(32))
    from_cache = superres._OpenVino(threads=2, precision="f32").run(rgb)
    assert (tmp_path / "flashbulb" / "openvino").is_dir()  # OpenVINO keeps its compiled form beside it

    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    in_memory = superres.onnx_model()
    assert in_memory == converted.SerializeToString()
    assert np.array_equal(superres._OpenVino(threads=2, precision="f32").run(rgb), from_cache)

"""Seconds per 1024x1024 FLUX.2 [klein] 4B image on one GPU: stock diffusers against flashbulb's fast path.

What it measures: one full `Flux2KleinPipeline` call (prompt encoding with Qwen3-4B, 4 denoising steps at
guidance 1.0, VAE decode), batch 1, 1024x1024, median of --runs timed calls after --warmup untimed ones
(torch.compile builds its graphs during the warm-up), with torch.cuda.synchronize around every call. Three
paths, in this order, in one process on one GPU, on the same modules:

    stock diffusers            the pipeline in bf16 on cuda, nothing else (the baseline)
    flashbulb                  the same pipeline after speed_up(pipe, FastPath()): compile, fp8, fused QKV, ...
    flashbulb + step cache     then speed_up(pipe, FastPath(step_cache=--step-cache)): first-block cache on top

It prints s/image, images/hour, the speedup against stock and peak GPU memory per path, what speed_up applied,
and the quality cost of each step as PSNR against the path before it at the same seed (fast path against
stock, step cache against fast path). The weights are random (the real architecture and sizes, built in
place, nothing downloaded), so the timings are real and the PSNR only shows how far a path drifts numerically,
not how good a picture is; random weights also make the step cache's skip decisions unrepresentative.

Run it:

    python bench/gpu_latency.py --runs 5                  # H100: about 16 GB of weights, a few minutes
    python bench/gpu_latency.py --runs 5 --out latency.json
    python bench/gpu_latency.py --tiny                    # CPU smoke test of the same code: tiny model, 64x64, 2 steps
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import Qwen2TokenizerFast, Qwen3Config, Qwen3ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashbulb.engine.backends.diffusion.fastpath import FastPath, speed_up

PROMPT = "A red fox resting in fresh snow under soft winter light, detailed fur, shallow depth of field"

# FLUX.2 [klein] 4B, as diffusers' own converter builds it (huggingface/diffusers
# scripts/convert_flux2_to_diffusers.py, model_type "klein-4b"; the same values are in the diffusers-format
# transformer/config.json of FLUX.2-klein-base-4B).
KLEIN_4B_TRANSFORMER = dict(
    patch_size=1,
    in_channels=128,  # 32 VAE latent channels, patchified 2x2
    num_layers=5,  # dual-stream blocks
    num_single_layers=20,  # single-stream blocks
    attention_head_dim=128,
    num_attention_heads=24,  # inner dim 3072
    joint_attention_dim=7680,  # Qwen3-4B hidden states of layers 9, 18 and 27 stacked: 3 x 2560
    timestep_guidance_channels=256,
    mlp_ratio=3.0,
    axes_dims_rope=(32, 32, 32, 32),
    rope_theta=2000,
    eps=1e-6,
    guidance_embeds=False,
)
# FLUX.2 VAE (FLUX.2-klein-4B vae/config.json; also AutoencoderKLFlux2's defaults).
KLEIN_4B_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=32,
    norm_num_groups=32,
    sample_size=1024,
    use_quant_conv=True,
    use_post_quant_conv=True,
    mid_block_add_attention=True,
    batch_norm_eps=1e-4,
    batch_norm_momentum=0.1,
    patch_size=(2, 2),
)
# Qwen3-4B, the klein 4B text encoder (Qwen/Qwen3-4B config.json).
QWEN3_4B = dict(
    vocab_size=151936,
    hidden_size=2560,
    intermediate_size=9728,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=40960,
    rms_norm_eps=1e-6,
    rope_theta=1_000_000,
    tie_word_embeddings=True,
)
# The FLUX.2 flow-matching schedule (FLUX.2 scheduler/scheduler_config.json).
KLEIN_SCHEDULER = dict(
    num_train_timesteps=1000,
    shift=3.0,
    use_dynamic_shifting=True,
    base_shift=0.5,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
    time_shift_type="exponential",
)

# --tiny: the same classes at toy sizes. 28 text-encoder layers so the pipeline's hidden states (9, 18, 27)
# exist; four VAE levels keep the real scale factor of 8 (sizes multiples of 16).
TINY_TRANSFORMER = dict(
    KLEIN_4B_TRANSFORMER,
    in_channels=16,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=3 * 16,
    axes_dims_rope=(4, 4, 4, 4),
)
TINY_VAE = dict(KLEIN_4B_VAE, block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4)
TINY_QWEN3 = dict(
    QWEN3_4B,
    vocab_size=512,
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=28,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=8,
)

# Qwen3's chat template, reduced to what Flux2KleinPipeline renders: one user turn, the generation prompt,
# thinking switched off.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)


@dataclasses.dataclass
class PathResult:
    name: str
    applied: dict[str, str]
    seconds: float  # median s/image
    runs: list[float]
    peak_gib: float | None  # peak GPU memory allocated during the timed runs
    psnr_db: float | None  # against the reference path (None for stock)
    psnr_against: str | None
    image: np.ndarray = dataclasses.field(repr=False)


def byte_level_tokenizer() -> Qwen2TokenizerFast:
    """A Qwen2-style byte-level BPE without merges (one token per byte) plus Qwen's chat tokens.

    Every prompt is padded to 512 tokens, so the text encoder does the same work as with Qwen's real vocabulary.
    """
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate(alphabet + specials)}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=bpe,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=specials[1:],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def qwen3_config(fields: dict, tokenizer: Qwen2TokenizerFast) -> Qwen3Config:
    fields = dict(fields, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    if "rope_parameters" in inspect.signature(Qwen3Config.__init__).parameters:  # transformers 5
        fields["rope_parameters"] = {"rope_type": "default", "rope_theta": float(fields.pop("rope_theta"))}
    return Qwen3Config(**fields)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_pipeline(tiny: bool, device: torch.device, dtype: torch.dtype) -> Flux2KleinPipeline:
    """Every component created directly on `device` in `dtype` with random weights: no download, no fp32 copy."""
    tokenizer = byte_level_tokenizer()
    torch.manual_seed(0)
    with torch.device(device), default_dtype(dtype):
        text_encoder = Qwen3ForCausalLM(qwen3_config(TINY_QWEN3 if tiny else QWEN3_4B, tokenizer))
        transformer = Flux2Transformer2DModel(**(TINY_TRANSFORMER if tiny else KLEIN_4B_TRANSFORMER))
        vae = AutoencoderKLFlux2(**(TINY_VAE if tiny else KLEIN_4B_VAE))
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**KLEIN_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        transformer=transformer.eval(),
        is_distilled=True,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: Flux2KleinPipeline, size: int, steps: int, seed: int) -> np.ndarray:
    generator = torch.Generator(pipe.device).manual_seed(seed)
    images = pipe(
        prompt=PROMPT,
        height=size,
        width=size,
        num_inference_steps=steps,
        guidance_scale=1.0,
        generator=generator,
        output_type="np",
    ).images
    return images[0]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Timing = tuple[float, list[float], float | None, np.ndarray]  # median s/image, every run, peak GiB, last image


def time_path(pipe: Flux2KleinPipeline, args: argparse.Namespace) -> Timing:
    """args.runs timed calls after args.warmup untimed ones, all at the same seed."""
    device = pipe.device
    for _ in range(args.warmup):
        generate(pipe, args.size, args.steps, args.seed)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    runs, image = [], None
    for _ in range(args.runs):
        synchronize(device)
        started = time.perf_counter()
        image = generate(pipe, args.size, args.steps, args.seed)
        synchronize(device)
        runs.append(time.perf_counter() - started)

    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return statistics.median(runs), runs, peak_gib, image


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of two [0, 1] float images; inf when identical, nan when either has NaNs."""
    mse = float(np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def print_table(results: list[PathResult], args: argparse.Namespace, device_name: str) -> None:
    stock = results[0].seconds
    print(
        f"\nFLUX.2 [klein] 4B{' (TINY)' if args.tiny else ''}, {args.size}x{args.size}, {args.steps} steps, "
        f"guidance 1.0, batch 1, median of {args.runs} after {args.warmup} warm-up, on {device_name}"
    )
    print(f"{'path':<26}{'s/image':>10}{'images/hour':>13}{'speedup vs stock':>18}{'peak GPU GiB':>14}  PSNR")
    for result in results:
        peak = "-" if result.peak_gib is None else f"{result.peak_gib:.1f}"
        quality = "-" if result.psnr_db is None else f"{result.psnr_db:.1f} dB vs {result.psnr_against}"
        print(
            f"{result.name:<26}{result.seconds:>10.3f}{3600 / result.seconds:>13.0f}"
            f"{stock / result.seconds:>17.2f}x{peak:>14}  {quality}"
        )
    for result in results[1:]:
        print(f"  {result.name}: " + ", ".join(f"{key} {value}" for key, value in result.applied.items()))
    if args.tiny:
        print("  (--tiny checks the code path only: CPU timings of a toy model say nothing about the GPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed calls per path (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per path first (compiles)")
    parser.add_argument("--step-cache", type=float, default=0.08, help="first-block cache threshold for path 3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="tiny random model on CPU, 64x64, 2 steps (smoke test)")
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()

    # 1. Device, dtype and workload
    if args.tiny:
        device, dtype = torch.device("cpu"), torch.float32
        args.size, args.steps = 64, 2
        device_name = "CPU"
    else:
        if not torch.cuda.is_available():
            sys.exit("needs a CUDA GPU (or --tiny for the CPU smoke test)")
        device, dtype = torch.device("cuda"), torch.bfloat16
        args.size, args.steps = 1024, 4
        device_name = torch.cuda.get_device_name(device)

    # 2. Build the pipeline: full-size klein 4B with random weights, directly on the device
    started = time.perf_counter()
    pipe = build_pipeline(args.tiny, device, dtype)
    sizes = ", ".join(
        f"{name} {sum(p.numel() for p in getattr(pipe, name).parameters()) / 1e6:,.1f} M"
        for name in ("transformer", "text_encoder", "vae")
    )
    print(f"built in {time.perf_counter() - started:.1f} s ({sizes} params), torch {torch.__version__}")

    results: list[PathResult] = []

    def run_path(name: str, applied: dict[str, str], against: PathResult | None) -> None:
        started = time.perf_counter()
        seconds, runs, peak_gib, image = time_path(pipe, args)
        quality = None if against is None else psnr(image, against.image)
        results.append(
            PathResult(name, applied, seconds, runs, peak_gib, quality, None if against is None else against.name, image)
        )
        print(f"{name}: {seconds:.3f} s/image ({time.perf_counter() - started:.0f} s with warm-up)", flush=True)

    # 3. Stock diffusers: bf16 on cuda, nothing else
    run_path("stock diffusers", {}, None)

    # 4. flashbulb: the service's default fast path
    applied = speed_up(pipe, FastPath())
    run_path("flashbulb", applied, results[-1])

    # 5. flashbulb + step cache, on top of 4 (speed_up only adds what is not there yet)
    applied = speed_up(pipe, FastPath(step_cache=args.step_cache))
    run_path("flashbulb + step cache", applied, results[-1])

    # 6. Report
    print_table(results, args, device_name)
    if args.out:
        report = {
            "model": "FLUX.2 [klein] 4B, random weights" + (" (tiny)" if args.tiny else ""),
            "device": device_name,
            "size": args.size,
            "steps": args.steps,
            "runs": args.runs,
            "warmup": args.warmup,
            "step_cache_threshold": args.step_cache,
            "paths": [
                {
                    "name": r.name,
                    "applied": r.applied,
                    "seconds_per_image": r.seconds,
                    "runs": r.runs,
                    "images_per_hour": 3600 / r.seconds,
                    "speedup_vs_stock": results[0].seconds / r.seconds,
                    "peak_gpu_gib": r.peak_gib,
                    "psnr_db": r.psnr_db if r.psnr_db is None or math.isfinite(r.psnr_db) else None,
                    "psnr_identical": r.psnr_db == math.inf,
                    "psnr_against": r.psnr_against,
                }
                for r in results
            ],
            "flashbulb_over_stock": results[1].seconds / results[0].seconds,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    ratio = results[1].seconds / results[0].seconds
    print(f"flashbulb/stock: {ratio:.3f} (s/image; {1 / ratio:.2f}x faster)")


if __name__ == "__main__":
    main()

"""The GPU fast path, applied to a loaded diffusers pipeline that is already bf16 on cuda.

    applied = speed_up(pipe, FastPath())   # {"compile": "on", "fp8": "on (...)", "step_cache": "off (threshold 0)"}

Each technique is one function that either applies itself and says "on ...", or leaves the pipeline alone and
says "off (why)"; nothing here raises for a missing feature. The order matters and is fixed in speed_up:
QKV fusion before fp8 (so the fused Linear is quantized), fp8 and the step-cache hooks before torch.compile (so
the compiled graph traces the quantized weights and the hooks). Calling it again on the same pipeline only adds
what is not there yet (fp8 is never applied twice; a new step-cache threshold replaces the old one and the
compiled denoiser retraces on its own).

On CPU (tests, laptops) nothing expensive runs: compile and fp8 report "off (no GPU)" and the cheap GPU wins
are skipped. The step cache is device independent (forward hooks only), so it is applied wherever it works.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers.models.modeling_utils import ModelMixin

log = logging.getLogger(__name__)

# With dynamic=False every new (batch, height, width) is a separate graph; torch gives up and runs eager after
# `recompile_limit` of them (8 by default), fewer than the ten aspect ratios times the batch sizes served.
_RECOMPILE_LIMIT = 64


@dataclasses.dataclass(frozen=True)
class FastPath:
    # torch.compile the denoiser (transformer or unet), static shapes: dynamic=False, so each
    # (batch, height, width) compiles once and is cached by torch
    compile: bool = True
    # torchao float8 dynamic activation + weight quantization of the denoiser's Linear layers, only on GPUs with
    # compute capability >= (8, 9) and when torchao imports; otherwise skipped and said so
    fp8: bool = True
    # first-block cache threshold (diffusers FirstBlockCacheConfig via denoiser.enable_cache); 0 = off
    step_cache: float = 0.0


def speed_up(pipe, options: FastPath) -> dict[str, str]:  # any DiffusionPipeline
    """Apply what the device supports; returns {"compile": "on"/"off (reason)", "fp8": ..., "step_cache": ...}
    describing what was applied."""
    denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    if denoiser is None:
        return dict.fromkeys(("compile", "fp8", "step_cache"), "off (pipeline has no transformer or unet)")

    on_gpu = pipe.device.type == "cuda"
    if on_gpu:
        _allow_tf32()
        _fuse_qkv(denoiser)
        _channels_last(pipe, denoiser)
    fp8 = _fp8(denoiser, options.fp8) if on_gpu else "off (no GPU)"
    step_cache = _step_cache(denoiser, options.step_cache)
    compiled = _compile(denoiser, options.compile) if on_gpu else "off (no GPU)"

    applied = {"compile": compiled, "fp8": fp8, "step_cache": step_cache}
    log.info("fast path for %s: %s", type(pipe).__name__, applied)
    return applied


def _allow_tf32() -> None:
    # The pipelines run in bf16, but fp32 matmuls and convs remain (scheduler maths, upcast VAEs, RoPE tables);
    # TF32 runs them on tensor cores at a precision diffusion outputs cannot show.
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def _fuse_qkv(denoiser: torch.nn.Module) -> bool:
    # One (3d x d) matmul instead of three (d x d) ones: fewer, larger kernels for the same maths. Models with
    # "Added" KV processors (and ones without the method) refuse; they keep separate projections.
    fuse = getattr(denoiser, "fuse_qkv_projections", None)
    if fuse is None:
        return False
    try:
        fuse()
    except (ValueError, NotImplementedError, AttributeError) as error:
        log.info("fused QKV projections off for %s: %s", type(denoiser).__name__, error)
        return False
    return True


def _channels_last(pipe, denoiser: torch.nn.Module) -> None:
    # cuDNN's fastest bf16 convolution kernels are NHWC. Only convolutional networks gain: the VAE (decoding a
    # 1024x1024 image is mostly 3x3 convs at full resolution) and a UNet denoiser; a DiT denoiser has no convs.
    for module in (getattr(pipe, "vae", None), getattr(pipe, "unet", None)):
        if module is not None and any(isinstance(m, torch.nn.Conv2d) for m in module.modules()):
            module.to(memory_format=torch.channels_last)


def _fp8(denoiser: ModelMixin, wanted: bool) -> str:
    # Float8 tensor-core matmuls (Ada/Hopper and later) run at twice the bf16 rate and halve the weights' memory;
    # activations are quantized on the fly per row, weights once per output channel. The quantize/matmul pair
    # only pays off once torch.compile fuses the activation scaling into the neighbouring kernels.
    if not wanted:
        return "off (disabled)"
    if getattr(denoiser, "_flashbulb_fp8", False):
        return "on (already quantized)"
    capability = torch.cuda.get_device_capability(denoiser.device)
    if capability < (8, 9):
        return f"off (needs compute capability 8.9+, GPU has {capability[0]}.{capability[1]})"
    if denoiser.dtype != torch.bfloat16:
        return f"off (denoiser is {denoiser.dtype}, per-row float8 needs bfloat16)"
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
    except Exception as error:  # noqa: BLE001 - missing, or built against another torch
        return f"off (torchao unavailable: {type(error).__name__})"
    quantize_(denoiser, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=_fp8_friendly)
    denoiser._flashbulb_fp8 = True  # type: ignore[assignment]  # torch's __setattr__ stub says Tensor | Module; any value works
    return "on (torchao float8 e4m3, dynamic per-row activations and weights)"


def _fp8_friendly(module: torch.nn.Module, _name: str) -> bool:
    # torch._scaled_mm needs both matrix dimensions divisible by 16; anything else stays bf16.
    return isinstance(module, torch.nn.Linear) and module.in_features % 16 == 0 and module.out_features % 16 == 0


def _step_cache(denoiser: ModelMixin, threshold: float) -> str:
    # First-block cache: every step runs the first transformer block; when its output moved less than
    # `threshold` (relative mean absolute change) since the previous step, the remaining blocks are skipped and
    # their last residual is reused. Trades a little fidelity for skipped steps; 0 keeps every step exact.
    if threshold <= 0:
        return "off (threshold 0)"
    if not hasattr(denoiser, "enable_cache"):
        return f"off ({type(denoiser).__name__} has no enable_cache)"
    blocker = _first_block_cache_blocker(denoiser)
    if blocker:
        return f"off ({blocker})"
    from diffusers.hooks import FirstBlockCacheConfig

    current = getattr(denoiser, "_cache_config", None)
    if isinstance(current, FirstBlockCacheConfig) and current.threshold == threshold:
        return f"on (first-block cache, threshold {threshold:g})"
    if current is not None:
        denoiser.disable_cache()
    denoiser.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    return f"on (first-block cache, threshold {threshold:g})"


def _first_block_cache_blocker(denoiser: torch.nn.Module) -> str | None:
    """Why diffusers' FirstBlockCache would fail on this denoiser, or None if it should work.

    The cache adds the residual of blocks 2..N to the first block's output, so the first and the last block must
    return the same structure. In diffusers 0.42 Flux2Transformer2DModel pairs a dual-stream first block (a
    (text, image) tuple) with a single-stream last block (one joined tensor): enable_cache succeeds and the first
    generation then dies with a TypeError (huggingface/diffusers#14280, fix proposed in #14359). Checked from the
    block metadata diffusers registers for its own cache hooks, so it clears itself once diffusers is fixed.
    """
    try:
        from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS
        from diffusers.hooks._helpers import TransformerBlockRegistry
    except ImportError:  # internals moved: let enable_cache itself decide
        return None
    blocks = [
        block
        for name, child in denoiser.named_children()
        if name in _ALL_TRANSFORMER_BLOCK_IDENTIFIERS and isinstance(child, torch.nn.ModuleList)
        for block in child
    ]
    if len(blocks) < 2:
        return f"{type(denoiser).__name__} has no transformer blocks to cache"
    first, last = type(blocks[0]), type(blocks[-1])
    try:
        head, tail = TransformerBlockRegistry.get(first), TransformerBlockRegistry.get(last)
    except ValueError:
        return f"diffusers' first-block cache does not know {first.__name__}/{last.__name__}"
    if (head.return_encoder_hidden_states_index is None) != (tail.return_encoder_hidden_states_index is None):
        import diffusers

        return (
            f"diffusers {diffusers.__version__} first-block cache cannot join {first.__name__} and "
            f"{last.__name__} outputs, huggingface/diffusers#14280"
        )
    return None


def _compile(denoiser: ModelMixin, wanted: bool) -> str:
    # Inductor fuses the elementwise work around every matmul (norms, modulation, RoPE, SwiGLU, fp8 scaling)
    # into a few generated kernels. Static shapes give the fastest kernels; each new image size compiles once
    # (seconds to minutes for a 4B transformer, once per process) on its first request; later ones reuse it.
    # In place (nn.Module.compile) so the pipeline keeps the same module, its config and its hooks.
    if not wanted:
        return "off (disabled)"
    if not getattr(denoiser, "_flashbulb_compiled", False):
        config = torch._dynamo.config
        limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.7
        setattr(config, limit, max(getattr(config, limit), _RECOMPILE_LIMIT))
        denoiser.compile(dynamic=False)
        denoiser._flashbulb_compiled = True  # type: ignore[assignment]  # as _flashbulb_fp8 above
    return "on"

"""Partial images while a pipeline denoises: the latents of a chosen step decoded by the pipeline's
own VAE, as its `__call__` decodes the last one (one function per family, following each
pipeline's closing lines), for callers that stream `partial_images`.

What a step's latents show is the image still noisy, less so each step: what the hosted APIs'
partial images are too. The cost is one VAE decode per preview (`quality.timings_ms["previews"]`).
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image


def preview_steps(wanted: int, steps: int) -> list[int]:
    """The steps (0-based) after which to decode a preview: `wanted` of them spread evenly over the
    run, never the last (that is the result itself); fewer when the run has fewer steps."""
    wanted = min(wanted, steps - 1)
    return sorted({round(steps * (k + 1) / (wanted + 1)) - 1 for k in range(wanted)})


def _vae_decode(pipe, latents) -> list[Image.Image]:
    image = pipe.vae.decode(latents.to(pipe.vae.dtype), return_dict=False)[0]
    return pipe.image_processor.postprocess(image, output_type="pil")


def _stable_diffusion(pipe, latents, width: int, height: int) -> list[Image.Image]:
    return _vae_decode(pipe, latents / pipe.vae.config.scaling_factor)


def _flux1(pipe, latents, width: int, height: int) -> list[Image.Image]:
    latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    return _vae_decode(pipe, latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor)


def _flux2(pipe, latents, width: int, height: int) -> list[Image.Image]:
    import torch

    # The image's tokens come in row order (the pipeline scatters them by their ids to the same place).
    rows, cols = height // (pipe.vae_scale_factor * 2), width // (pipe.vae_scale_factor * 2)
    batch, _, channels = latents.shape
    latents = latents[:, : rows * cols].reshape(batch, rows, cols, channels).permute(0, 3, 1, 2)
    mean = pipe.vae.bn.running_mean.view(1, -1, 1, 1).to(latents.device, latents.dtype)
    std = torch.sqrt(pipe.vae.bn.running_var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps).to(latents.device, latents.dtype)
    return _vae_decode(pipe, pipe._unpatchify_latents(latents * std + mean))


def _qwen_image(pipe, latents, width: int, height: int) -> list[Image.Image]:
    import torch

    latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    config = pipe.vae.config
    mean = torch.tensor(config.latents_mean).view(1, config.z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    std = torch.tensor(config.latents_std).view(1, config.z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    image = pipe.vae.decode((latents * std + mean).to(pipe.vae.dtype), return_dict=False)[0][:, :, 0]
    return pipe.image_processor.postprocess(image, output_type="pil")


def _z_image(pipe, latents, width: int, height: int) -> list[Image.Image]:
    return _vae_decode(pipe, latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor)


DECODERS: dict[str, Callable] = {
    "StableDiffusionPipeline": _stable_diffusion,
    "StableDiffusionXLPipeline": _stable_diffusion,
    "StableDiffusionXLInpaintPipeline": _stable_diffusion,
    "FluxPipeline": _flux1,
    "FluxKontextPipeline": _flux1,
    "Flux2KleinPipeline": _flux2,
    "QwenImageEditPlusPipeline": _qwen_image,
    "ZImagePipeline": _z_image,
}


def decode(pipe, latents, width: int, height: int) -> list[Image.Image] | None:
    """The images a step's latents hold, or None for a pipeline this module doesn't know."""
    decoder = DECODERS.get(type(pipe).__name__)
    return None if decoder is None else decoder(pipe, latents, width, height)

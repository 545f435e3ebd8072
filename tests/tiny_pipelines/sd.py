"""Tiny random-weight Stable Diffusion pipelines, built entirely offline.

Each builder seeds torch, builds miniature components (configs follow the
``get_dummy_components`` helpers of diffusers' own test suite, with a
4-level VAE so ``vae_scale_factor`` is 8 like the real checkpoints), and
saves the pipeline in diffusers layout (safetensors).  The CLIP tokenizers
are built in code from a byte-level vocabulary, so nothing touches the hub.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerAncestralDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from .components import clip_text_config, four_level_vae
from .text_tokenizers import clip_tokenizer


def _vae():
    # Narrow channels keep it tiny; the four levels keep SD/SDXL's vae_scale_factor of 8.
    return four_level_vae(
        AutoencoderKL,
        block_out_channels=[16, 16, 32, 32],
        latent_channels=4,
        norm_num_groups=8,
        sample_size=128,
        force_upcast=False,  # fp32 fixtures; avoids per-call vae.to(float32) warning spam in the inpaint pipeline
    )


def _scheduler():
    return EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        prediction_type="epsilon",
        timestep_spacing="trailing",
        steps_offset=1,
    )


def _sdxl_components(in_channels: int) -> dict:
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 * addition_time_embed_dim + text_encoder_2 projection_dim
        cross_attention_dim=64,  # text_encoder hidden 32 + text_encoder_2 hidden 32
        norm_num_groups=1,
    )
    vae = _vae()
    tokenizer = clip_tokenizer()
    tokenizer_2 = clip_tokenizer(pad_token="!")  # SDXL's second tokenizer pads with "!"
    text_encoder = CLIPTextModel(clip_text_config(tokenizer, hidden_act="gelu", projection_dim=32))
    text_encoder_2 = CLIPTextModelWithProjection(clip_text_config(tokenizer_2, hidden_act="gelu", projection_dim=32))
    return {
        "unet": unet,
        "scheduler": _scheduler(),
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": tokenizer_2,
    }


def build_sd_turbo(path: Path) -> None:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=32,
        norm_num_groups=8,
    )
    vae = _vae()
    tokenizer = clip_tokenizer(pad_token="!")  # SD 2.x / SD-Turbo tokenizer pads with "!"
    text_encoder = CLIPTextModel(clip_text_config(tokenizer, hidden_act="gelu"))
    pipe = StableDiffusionPipeline(
        unet=unet,
        scheduler=_scheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)


def build_sdxl_turbo(path: Path) -> None:
    torch.manual_seed(0)
    pipe = StableDiffusionXLPipeline(**_sdxl_components(in_channels=4), force_zeros_for_empty_prompt=True)
    pipe.save_pretrained(path, safe_serialization=True)


def build_sdxl_inpaint(path: Path) -> None:
    torch.manual_seed(0)
    pipe = StableDiffusionXLInpaintPipeline(
        **_sdxl_components(in_channels=9),  # dedicated inpainting UNet: latents + mask + masked-image latents
        requires_aesthetics_score=False,
        force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(path, safe_serialization=True)


BUILDERS = {
    "StableDiffusionPipeline": build_sd_turbo,
    "StableDiffusionXLPipeline": build_sdxl_turbo,
    "StableDiffusionXLInpaintPipeline": build_sdxl_inpaint,
}

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
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

_MAX_LEN = 77  # tokenizer.model_max_length == text_encoder max_position_embeddings
_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP byte -> printable unicode char table (256 chars)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def _make_clip_tokenizer(pad_token: str = _EOS) -> CLIPTokenizer:
    """Byte-level CLIP BPE: every byte char plus its ``</w>`` variant, a few
    merges, and the two special tokens last (like real CLIP, so the EOS token
    has the highest id and argmax-pooling also finds it)."""
    chars = _bytes_to_unicode()
    tokens = chars + [c + "</w>" for c in chars]
    merges = []
    for word in ("the", "a", "in", "of", "and", "red", "fox", "snow", "street", "sign", "blurry", "photo"):
        # merge left-to-right: t h -> th, th e</w> -> the</w>
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            left, right = pieces[0], pieces[1]
            merged = left + right
            if (left, right) not in merges:
                merges.append((left, right))
            if merged not in tokens:
                tokens.append(merged)
            pieces = [merged] + pieces[2:]
    tokens += [_BOS, _EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        bos_token=_BOS,
        eos_token=_EOS,
        unk_token=_EOS,
        pad_token=pad_token,
        model_max_length=_MAX_LEN,
    )


def _text_config(tok: CLIPTokenizer, **extra) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=_MAX_LEN,
        hidden_act="gelu",
        **extra,
    )


def _vae():
    # 4 levels -> vae_scale_factor 8 (same as real SD/SDXL); narrow channels keep it tiny.
    return AutoencoderKL(
        block_out_channels=[16, 16, 32, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        layers_per_block=1,
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
    tokenizer = _make_clip_tokenizer()
    tokenizer_2 = _make_clip_tokenizer(pad_token="!")  # SDXL's second tokenizer pads with "!"
    text_encoder = CLIPTextModel(_text_config(tokenizer, projection_dim=32))
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer_2, projection_dim=32))
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
    tokenizer = _make_clip_tokenizer(pad_token="!")  # SD 2.x / SD-Turbo tokenizer pads with "!"
    text_encoder = CLIPTextModel(_text_config(tokenizer))
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

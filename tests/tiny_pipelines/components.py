"""Component configs that several tiny pipelines share (the pipeline-specific ones stay in the builders)."""

from __future__ import annotations

from diffusers import AutoencoderKL
from transformers import CLIPTextConfig, CLIPTokenizer

from .text_tokenizers import CLIP_MAX_LENGTH


def clip_text_config(tokenizer: CLIPTokenizer, *, hidden_act: str, **extra) -> CLIPTextConfig:
    """A tiny CLIP text encoder (hidden size 32, two layers) that matches `tokenizer`: its vocabulary size,
    its BOS/EOS/PAD ids (the EOS id is how CLIP finds the pooled token) and its maximum length."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=CLIP_MAX_LENGTH,
        hidden_act=hidden_act,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def four_level_vae(vae_class: type = AutoencoderKL, **config):
    """A tiny RGB VAE with four levels of one layer each. Four levels give vae_scale_factor 8, as in the real
    SD, SDXL, FLUX and Z-Image checkpoints, so the pipelines' size rules match theirs; `config` sets the widths."""
    return vae_class(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        **config,
    )

"""Tiny random-weight FLUX pipelines (FLUX.2 klein, FLUX.1 schnell, FLUX.1 Kontext), built entirely offline.

Every builder seeds torch, builds each component from a tiny config (tokenizers included, made in code),
assembles the diffusers pipeline and saves it in diffusers layout (safetensors).  The saved pipelines load
back with ``DiffusionPipeline.from_pretrained(path)`` and keep the real models' geometry where it matters
to the service: VAE scale factor 8 (width/height multiple of 16), Klein's text encoder exposing hidden
states (9, 18, 27), Kontext's guidance embedding and the schedulers' real shift settings.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLFlux2,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Transformer2DModel,
    FluxKontextPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
)
from transformers import CLIPTextModel, Qwen3Config, Qwen3ForCausalLM, T5Config, T5EncoderModel

from .components import clip_text_config, four_level_vae
from .text_tokenizers import QWEN3_CHAT_TEMPLATE, byte_alphabet, clip_tokenizer, qwen_tokenizer, t5_tokenizer

# FLUX's tiny vocabularies number the 256 byte symbols in codepoint order (not byte order, as the SD and
# Qwen ones do), so that the saved tokenizers and their token ids stay as they have always been.
_ALPHABET = sorted(byte_alphabet())


def _flux1_components(*, guidance_embeds: bool, shift: float, use_dynamic_shifting: bool) -> dict:
    """Components shared by FluxPipeline and FluxKontextPipeline (CLIP + T5 text encoders, FLUX.1 VAE); the
    two differ in the guidance embedding and the scheduler's shift."""
    # CLIP without merges, its two specials at ids 0 and 1.
    tokenizer = clip_tokenizer(merge_words=(), specials_first=True, alphabet=_ALPHABET)
    tokenizer_2 = t5_tokenizer()

    torch.manual_seed(0)
    text_encoder = CLIPTextModel(clip_text_config(tokenizer, hidden_act="quick_gelu", projection_dim=32))
    torch.manual_seed(0)
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            pad_token_id=tokenizer_2.pad_token_id,
            eos_token_id=tokenizer_2.eos_token_id,
            decoder_start_token_id=tokenizer_2.pad_token_id,
        )
    )
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # T5 d_model
        pooled_projection_dim=32,  # CLIP hidden size
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 4, 8),
    )
    torch.manual_seed(0)
    vae = four_level_vae(
        AutoencoderKL,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=shift,
        use_dynamic_shifting=use_dynamic_shifting,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    return {
        "scheduler": scheduler,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": tokenizer_2,
        "transformer": transformer,
        "image_encoder": None,
        "feature_extractor": None,
    }


def build_flux2_klein(path: Path) -> None:
    """Flux2KleinPipeline (step-distilled): Qwen3 text encoder with 28 tiny layers so that the pipeline's
    default ``text_encoder_out_layers=(9, 18, 27)`` works."""
    torch.manual_seed(0)
    # Byte-level Qwen3 vocabulary without merges (one token per byte), plus the chat specials Klein's
    # prompt template uses; the specials are named in tokenizer_config.json like the real ones.
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    tokenizer = qwen_tokenizer(
        chat_template=QWEN3_CHAT_TEMPLATE,
        special_tokens=specials,
        named_special_tokens=specials[1:],
        eos_token="<|im_end|>",
        model_max_length=131072,
        alphabet=_ALPHABET,
    )
    hidden = 16
    torch.manual_seed(0)
    text_encoder = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=32,
            num_hidden_layers=28,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=1024,
            tie_word_embeddings=True,
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels patchified 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=3 * hidden,  # three stacked Qwen3 hidden states
        timestep_guidance_channels=256,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )
    torch.manual_seed(0)
    vae = four_level_vae(
        AutoencoderKLFlux2,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
        time_shift_type="exponential",
    )
    pipe = Flux2KleinPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )
    pipe.save_pretrained(path, safe_serialization=True)


def build_flux1(path: Path) -> None:
    """FluxPipeline in the FLUX.1 [schnell] layout (no guidance embedding, static shift 1.0)."""
    torch.manual_seed(0)
    pipe = FluxPipeline(**_flux1_components(guidance_embeds=False, shift=1.0, use_dynamic_shifting=False))
    pipe.save_pretrained(path, safe_serialization=True)


def build_flux1_kontext(path: Path) -> None:
    """FluxKontextPipeline in the FLUX.1 Kontext [dev] layout (guidance embedding, dynamic shifting)."""
    torch.manual_seed(0)
    pipe = FluxKontextPipeline(**_flux1_components(guidance_embeds=True, shift=3.0, use_dynamic_shifting=True))
    pipe.save_pretrained(path, safe_serialization=True)


BUILDERS = {
    "Flux2KleinPipeline": build_flux2_klein,
    "FluxPipeline": build_flux1,
    "FluxKontextPipeline": build_flux1_kontext,
}

"""Tiny random-weight FLUX pipelines (FLUX.2 klein, FLUX.1 schnell, FLUX.1 Kontext), built entirely offline.

Every builder seeds torch, builds each component from a tiny config (tokenizers included, made in code),
assembles the diffusers pipeline and saves it in diffusers layout (safetensors).  The saved pipelines load
back with ``DiffusionPipeline.from_pretrained(path)`` and keep the real models' geometry where it matters
to the service: VAE scale factor 8 (width/height multiple of 16), Klein's text encoder exposing hidden
states (9, 18, 27), Kontext's guidance embedding and the schedulers' real shift settings.
"""

from __future__ import annotations

import string
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
from tokenizers import pre_tokenizers
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    Qwen2TokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

# Minimal Qwen3-style chat template: what Flux2KleinPipeline renders with
# add_generation_prompt=True, enable_thinking=False.
_QWEN3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\n\n</think>\n\n' }}"
    "{% endif %}"
    "{% endif %}"
)

# Four VAE levels give the real FLUX scale factor of 8; with 2x2 packing sizes are multiples of 16.
_VAE_LEVELS = ("DownEncoderBlock2D",) * 4, ("UpDecoderBlock2D",) * 4


def _byte_alphabet() -> list[str]:
    """The 256 byte-level BPE symbols, in a fixed order (so token ids are deterministic)."""
    return sorted(pre_tokenizers.ByteLevel.alphabet())


def _qwen_tokenizer() -> Qwen2TokenizerFast:
    """Byte-level BPE without merges (one token per byte) plus Qwen's chat special tokens."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    vocab = {tok: i for i, tok in enumerate(_byte_alphabet() + specials)}
    tokenizer = Qwen2TokenizerFast(
        vocab=vocab,
        merges=[],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=specials[1:],
        model_max_length=131072,
    )
    tokenizer.chat_template = _QWEN3_CHAT_TEMPLATE
    return tokenizer


def _clip_tokenizer() -> CLIPTokenizer:
    """CLIP-style byte-level BPE without merges: every byte as a word-inner and a word-final ('</w>') token."""
    alphabet = _byte_alphabet()
    tokens = ["<|startoftext|>", "<|endoftext|>"] + alphabet + [ch + "</w>" for ch in alphabet]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _t5_tokenizer() -> T5TokenizerFast:
    """Unigram vocabulary of single characters (T5/SentencePiece style '▁' word marker)."""
    chars = string.ascii_letters + string.digits + string.punctuation
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + ch, -3.0) for ch in chars] + [(ch, -4.0) for ch in chars]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512)


def _flux1_components(*, guidance_embeds: bool, scheduler: FlowMatchEulerDiscreteScheduler) -> dict:
    """Components shared by FluxPipeline and FluxKontextPipeline (CLIP + T5 text encoders, FLUX.1 VAE)."""
    tokenizer = _clip_tokenizer()
    tokenizer_2 = _t5_tokenizer()

    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
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
    down, up = _VAE_LEVELS
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
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
    tokenizer = _qwen_tokenizer()
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
    down, up = _VAE_LEVELS
    vae = AutoencoderKLFlux2(
        in_channels=3,
        out_channels=3,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
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
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=1.0,
        use_dynamic_shifting=False,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxPipeline(**_flux1_components(guidance_embeds=False, scheduler=scheduler))
    pipe.save_pretrained(path, safe_serialization=True)


def build_flux1_kontext(path: Path) -> None:
    """FluxKontextPipeline in the FLUX.1 Kontext [dev] layout (guidance embedding, dynamic shifting)."""
    torch.manual_seed(0)
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxKontextPipeline(**_flux1_components(guidance_embeds=True, scheduler=scheduler))
    pipe.save_pretrained(path, safe_serialization=True)


BUILDERS = {
    "Flux2KleinPipeline": build_flux2_klein,
    "FluxPipeline": build_flux1,
    "FluxKontextPipeline": build_flux1_kontext,
}

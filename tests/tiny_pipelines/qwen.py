"""Tiny random-weight Qwen-family diffusers pipelines, built entirely offline.

- ``QwenImageEditPlusPipeline`` in the Qwen-Image-Edit-2509 layout (Qwen2.5-VL text encoder with a
  vision tower, Qwen2Tokenizer, Qwen2VLProcessor, AutoencoderKLQwenImage, QwenImageTransformer2DModel).
- ``ZImagePipeline`` in the Z-Image-Turbo layout (Qwen3Model text encoder, Qwen2Tokenizer,
  AutoencoderKL, ZImageTransformer2DModel).

Tokenizers are byte-level BPEs (the 256 byte symbols plus merges learnt here from a few sentences) with
the Qwen special tokens, so nothing is downloaded. Weights are random but seeded, so every build is identical.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .components import four_level_vae
from .text_tokenizers import QWEN3_CHAT_TEMPLATE, qwen_tokenizer

# Qwen3 adds these as ordinary (non-special) added tokens.
_QWEN3_EXTRA_TOKENS = ("<tool_call>", "</tool_call>", "<think>", "</think>")

# Qwen2-VL / Qwen2.5-VL chat template (as shipped with Qwen2.5-VL-Instruct).
_QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Text the tokenizers learn whole-word merges from. The Qwen-Image-Edit system prompt is in it so that,
# as with the real Qwen2 vocabulary, the template's prefix is exactly 64 tokens: the number
# QwenImageEditPlusPipeline drops (`prompt_template_encode_start_idx`) before the user's text.
_BPE_CORPUS = [
    "Describe the key features of the input image (color, shape, size, texture, objects, background), then explain "
    "how the user's text instruction should alter or modify the image. Generate a new image that meets the user's "
    "requirements while maintaining consistency with the original input where appropriate.",
    "Describe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships of the "
    "objects and background:",
    "system\nuser\nassistant\nYou are a helpful assistant. Picture 1: Picture 2: Picture 3: Video 1:",
    "A photo of a person with a red fox in the snow, a street sign that reads 'Thompson St', same person, navy blazer.",
]


# The tiny vision tower's pixel budget (the processor's min/max pixels). The pipeline hands the processor
# each reference at ~384x384; smart_resize turns that into 56x56 = 4x4 patches of 14 = 4 merged tokens.
_VISION_MIN_PIXELS = 56 * 56
_VISION_MAX_PIXELS = 64 * 64


def _qwen2_vl_processor(tokenizer, chat_template: str):
    """A Qwen2VLProcessor (Qwen2VLImageProcessor + tokenizer + chat template), built without torchvision.

    transformers 5 gives every Qwen2VLProcessor a video processor, and its only video processor class
    (Qwen2VLVideoProcessor) needs torchvision. The edit pipeline never sends video, so the processor is
    built without one, and its ``save_pretrained`` writes the files by hand in transformers 5's layout
    (tokenizer files, chat_template.jinja, processor_config.json), with a Qwen2VLVideoProcessor entry in
    processor_config.json for a transformers that has torchvision. Without torchvision,
    ``Qwen2VLProcessor.from_pretrained`` fails on *any* folder (it always loads a video processor), so a
    loader must build the processor from the folder's tokenizer and image processor and pass it in:
    ``DiffusionPipeline.from_pretrained(path, processor=...)``.
    """
    import json
    import os

    import transformers
    from transformers import Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    image_processor_class = getattr(transformers, "Qwen2VLImageProcessorPil", None) or transformers.Qwen2VLImageProcessor
    size = {"shortest_edge": _VISION_MIN_PIXELS, "longest_edge": _VISION_MAX_PIXELS}
    image_processor = image_processor_class(size=size)

    def allow_no_video(self, argument_name, argument):
        if argument_name == "video_processor" and argument is None:
            return None
        return ProcessorMixin.check_argument_for_proper_class(self, argument_name, argument)

    own = Qwen2VLProcessor.__dict__.get("check_argument_for_proper_class")
    Qwen2VLProcessor.check_argument_for_proper_class = allow_no_video
    try:
        processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)
    finally:
        if own is None:
            del Qwen2VLProcessor.check_argument_for_proper_class
        else:
            Qwen2VLProcessor.check_argument_for_proper_class = own

    image_config = image_processor.to_dict()
    image_config["image_processor_type"] = "Qwen2VLImageProcessor"
    video_config = {
        key: image_config[key]
        for key in (
            "do_convert_rgb",
            "do_normalize",
            "do_rescale",
            "do_resize",
            "image_mean",
            "image_std",
            "merge_size",
            "patch_size",
            "resample",
            "rescale_factor",
            "size",
            "temporal_patch_size",
        )
    }
    video_config.update(do_sample_frames=False, min_frames=4, max_frames=768, video_processor_type="Qwen2VLVideoProcessor")

    def save_pretrained(save_directory, **_ignored):
        os.makedirs(save_directory, exist_ok=True)
        processor.tokenizer.save_pretrained(save_directory)
        with open(os.path.join(save_directory, "chat_template.jinja"), "w", encoding="utf-8") as f:
            f.write(chat_template)
        config = {"image_processor": image_config, "processor_class": "Qwen2VLProcessor", "video_processor": video_config}
        with open(os.path.join(save_directory, "processor_config.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return [os.path.join(save_directory, "processor_config.json")]

    processor.save_pretrained = save_pretrained  # diffusers' pipeline.save_pretrained calls this one
    return processor


def build_qwen_image_edit_plus(path: Path) -> None:
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    tokenizer = qwen_tokenizer(chat_template=_QWEN2_VL_CHAT_TEMPLATE, merges_from=_BPE_CORPUS)
    ids = tokenizer.convert_tokens_to_ids
    processor = _qwen2_vl_processor(tokenizer, _QWEN2_VL_CHAT_TEMPLATE)

    text_hidden = 32
    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": text_hidden,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1000000.0},
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": text_hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()

    z_dim = 4
    torch.manual_seed(0)
    # The pipeline always VAE-encodes the references at ~1024x1024 (VAE_IMAGE_SIZE, not a call argument):
    # no residual blocks at full resolution keeps that at ~0.3 s per reference on 2 CPU cores.
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=z_dim,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=0,
        temperal_downsample=[False, False, False],
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
    )

    torch.manual_seed(0)
    # One block: with three ~1024x1024 references the image stream is 3 x 4096 + 16 tokens long.
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=z_dim * 4,
        out_channels=z_dim,
        num_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=text_hidden,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )

    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256,
        base_shift=0.5,
        max_image_seq_len=8192,
        max_shift=0.9,
        shift=1.0,
        shift_terminal=0.02,
        time_shift_type="exponential",
        use_dynamic_shifting=True,
    )

    pipe = QwenImageEditPlusPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=processor,
        transformer=transformer,
    )
    pipe.save_pretrained(path, safe_serialization=True)


def build_z_image(path: Path) -> None:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(0)
    tokenizer = qwen_tokenizer(chat_template=QWEN3_CHAT_TEMPLATE, merges_from=_BPE_CORPUS, added_tokens=_QWEN3_EXTRA_TOKENS)
    ids = tokenizer.convert_tokens_to_ids

    text_hidden = 32
    torch.manual_seed(0)
    text_encoder = Qwen3Model(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=text_hidden,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=1024,
            bos_token_id=ids("<|endoftext|>"),
            eos_token_id=ids("<|im_end|>"),
            pad_token_id=ids("<|endoftext|>"),
        )
    ).eval()

    torch.manual_seed(0)
    vae = four_level_vae(
        AutoencoderKL,
        block_out_channels=[8, 16, 16, 16],
        latent_channels=16,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )

    torch.manual_seed(0)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        norm_eps=1e-5,
        qk_norm=True,
        cap_feat_dim=text_hidden,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[8, 4, 4],
        axes_lens=[1536, 512, 512],
    )

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)

    pipe = ZImagePipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    pipe.save_pretrained(path, safe_serialization=True)


BUILDERS = {
    "QwenImageEditPlusPipeline": build_qwen_image_edit_plus,
    "ZImagePipeline": build_z_image,
}

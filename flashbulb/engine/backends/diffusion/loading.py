"""Loading a diffusers folder into a pipeline, with the one workaround our dependencies need."""

from __future__ import annotations

from pathlib import Path

QWEN_VL_PIPELINES = ("QwenImageEditPipeline", "QwenImageEditPlusPipeline")


def load_pipeline(where: Path, pipeline: str, dtype):  # torch.dtype -> DiffusionPipeline
    from diffusers import DiffusionPipeline
    from transformers.utils import is_torchvision_available

    components = {}
    if pipeline in QWEN_VL_PIPELINES and not is_torchvision_available():
        components["processor"] = _image_only_qwen_vl_processor(where / "processor")
    return DiffusionPipeline.from_pretrained(where, dtype=dtype, **components)


def _image_only_qwen_vl_processor(folder: Path):
    """Qwen-Image-Edit's Qwen2VLProcessor without its video half. transformers 5 always loads the
    video processor, which needs torchvision, and there is no CPU build of torchvision on PyPI;
    the edit pipelines never send video."""
    from transformers import AutoTokenizer, Qwen2VLImageProcessor, Qwen2VLProcessor

    class ImageOnlyProcessor(Qwen2VLProcessor):
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return ImageOnlyProcessor(
        image_processor=Qwen2VLImageProcessor.from_pretrained(folder), tokenizer=tokenizer, chat_template=tokenizer.chat_template
    )

"""What every wire format tells the caller about a served request: token counts, and flashbulb's own
fields and `x-flashbulb-*` headers (request id, charge, timings, measured quality)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from flashbulb.billing.prices import QUALITIES, SIZE_CLASSES, PriceSchedule, size_class
from flashbulb.billing.quotes import Quote
from flashbulb.engine.types import ImageRequest, ImageResult
from flashbulb.gateway.gateway import Served
from flashbulb.provenance import unsigned

# Gemini's published token rules; the OpenAI format reports the same counts under its own names.
TOKENS_PER_IMAGE_TILE = 258
TOKENS_PER_OUTPUT_IMAGE = 1290


@dataclasses.dataclass(frozen=True)
class Tokens:
    text_in: int
    image_in: int
    text_out: int
    image_out: int

    @property
    def prompt(self) -> int:
        return self.text_in + self.image_in

    @property
    def output(self) -> int:
        return self.text_out + self.image_out

    @property
    def total(self) -> int:
        return self.prompt + self.output


def image_tokens(width: int, height: int) -> int:
    """Gemini counts 258 tokens for an image up to 384 px a side, else 258 per 768x768 tile."""
    if width <= 384 and height <= 384:
        return TOKENS_PER_IMAGE_TILE
    return TOKENS_PER_IMAGE_TILE * math.ceil(width / 768) * math.ceil(height / 768)


def text_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


def prompt_tokens(request: ImageRequest) -> Tokens:
    """What a request's prompt counts before it runs (Gemini's countTokens)."""
    text = "\n".join(part for part in (request.system, request.prompt) if part)
    image_in = sum(image_tokens(im.width, im.height) for im in request.images)
    return Tokens(text_in=text_tokens(text), image_in=image_in, text_out=0, image_out=0)


def count_tokens(request: ImageRequest, served: Served, *, text_out: str = "") -> Tokens:
    """`text_out` is the text the wire format actually returned (none for OpenAI's images API)."""
    prompt = prompt_tokens(request)
    return dataclasses.replace(
        prompt, text_out=math.ceil(len(text_out) / 4), image_out=TOKENS_PER_OUTPUT_IMAGE * len(served.result.images)
    )


def flashbulb_fields(request: ImageRequest, served: Served) -> dict[str, Any]:
    """flashbulb's own body object (SDKs ignore unknown fields): what it cost and what we measured."""
    return {
        "request_id": request.request_id,
        "charge_micros": served.charge_micros,
        **({"price_micros": price_json(served.quote, served.result)} if served.quote else {}),
        "timings_ms": served.result.timings_ms,
        "quality": served.result.quality,
        # Whether each image carries a C2PA manifest signed by this server ([provenance] content_credentials).
        "content_credentials": served.sign is not unsigned and bool(served.result.images),
        **({"replica": served.result.replica} if served.result.replica else {}),
    }


def flashbulb_headers(request: ImageRequest, served: Served) -> dict[str, str]:
    headers = {
        "x-flashbulb-request-id": request.request_id,
        "x-flashbulb-charge-micros": str(served.charge_micros),
        "x-flashbulb-timings-ms": json.dumps(served.result.timings_ms, separators=(",", ":")),
    }
    if served.result.quality:
        headers["x-flashbulb-quality"] = json.dumps(quality_summary(served.result.quality), separators=(",", ":"))
    return headers


def quality_summary(quality: dict[str, Any]) -> dict[str, Any]:
    """The measurements a script checks without parsing the body (ASCII JSON, so it fits in a header)."""
    summary: dict[str, Any] = {
        key: quality[key] for key in ("faces_in", "faces_out", "identity_distance", "same_person") if key in quality
    }
    if "safety" in quality:
        verdicts = [*quality["safety"].get("inputs", []), quality["safety"].get("output", {"safe": True})]
        summary["safe"] = all(v["safe"] for v in verdicts)
    if "ocr" in quality:
        summary["ocr_accuracy"] = [w["accuracy"] for w in quality["ocr"]["wanted"]]
    return summary


def price_json(quote: Quote, result: ImageResult) -> dict[str, Any]:
    """The response's `flashbulb.price_micros`: what each part of the charge cost."""
    sizes = [size_class(im.width * im.height) for im in result.images]
    return {
        "output_images": [{"size_class": size, "micros": quote.unit(size)} for size in sizes],
        "input_images": {
            "count": quote.inputs,
            "unit_micros": quote.input_image,
            "micros": quote.input_image * quote.inputs if sizes else 0,
        },
        "unit_micros": {"small": quote.small, "standard": quote.standard, "large": quote.large, "input_image": quote.input_image},
    }


def prices_json(schedule: PriceSchedule) -> dict[str, Any]:
    """A model's price list, as GET /v1beta/models' `flashbulb.prices` and `flashbulb models --json` show it."""
    return {
        "image_micros": {c: schedule.per_image(c) for c in SIZE_CLASSES},
        "input_image_micros": schedule.input_image,
        "quality_percent": {q: schedule.percent(q) for q in QUALITIES},
        "size_classes": {"small": "<= 0.5 MP", "standard": "<= 1.2 MP", "large": "> 1.2 MP"},
    }

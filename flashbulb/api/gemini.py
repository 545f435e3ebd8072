"""The Gemini API wire format (generateContent, streamGenerateContent, models) <-> ImageRequest/ImageResult.

Only translation lives here: no pricing, scheduling or pixel work.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from flashbulb.api.errors import describe_validation, google_error_body
from flashbulb.api.receipt import count_tokens, flashbulb_fields, flashbulb_headers, prices_json, prompt_tokens
from flashbulb.api.serving import Authenticated, api_key_of, fulfil_streaming, new_request_id, serve
from flashbulb.billing.prices import PriceBook
from flashbulb.engine.aspect import check_aspect_ratio, check_image_size, ratio_of, sized
from flashbulb.engine.imageio import PixelBudget, decode_image, encode_png
from flashbulb.engine.registry import ModelEntry
from flashbulb.engine.types import Caller, FinishReason, ImageRequest
from flashbulb.errors import FlashbulbError, invalid
from flashbulb.gateway.gateway import Gateway, Served
from flashbulb.jobs.files import FileStore
from flashbulb.parsing import load_json, whole_number

MAX_CANDIDATES = 4


# ---- request shapes (camelCase and snake_case both accepted; unknown fields ignored) ----


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="ignore")


class Blob(Wire):
    mime_type: str = ""
    data: str


class FileData(Wire):
    mime_type: str = ""
    file_uri: str


class Part(Wire):
    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    thought: bool | None = None


class Content(Wire):
    role: str | None = None
    parts: list[Part] = []


class ImageConfig(Wire):
    aspect_ratio: str | None = None
    image_size: str | None = None


class GenerationConfig(Wire):
    response_modalities: list[str] | None = None
    candidate_count: int | None = None
    seed: int | None = None
    image_config: ImageConfig | None = None


class SafetySetting(Wire):
    category: str
    threshold: str = "HARM_BLOCK_THRESHOLD_UNSPECIFIED"
    method: str | None = None  # SEVERITY or PROBABILITY: the detector gives one score either way


class GenerateContentRequest(Wire):
    contents: list[Content] = []
    generation_config: GenerationConfig | None = None
    system_instruction: Content | None = None
    safety_settings: list[SafetySetting] | None = None


# ---- wire -> domain ----

# safetySettings: flashbulb checks one class, sexually explicit images (NudeNet); a threshold for it
# sets how readily that check blocks (engine/types.py safety_level). The other categories have no
# detector here and are accepted as they are; BLOCK_NONE and OFF are the loosest level, not off.
HARM_CATEGORIES = {
    "HARM_CATEGORY_UNSPECIFIED",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
    "HARM_CATEGORY_JAILBREAK",
    "HARM_CATEGORY_IMAGE_HATE",
    "HARM_CATEGORY_IMAGE_DANGEROUS_CONTENT",
    "HARM_CATEGORY_IMAGE_HARASSMENT",
    "HARM_CATEGORY_IMAGE_SEXUALLY_EXPLICIT",
}
CHECKED_CATEGORIES = {"HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_IMAGE_SEXUALLY_EXPLICIT"}
SAFETY_LEVELS = {
    "HARM_BLOCK_THRESHOLD_UNSPECIFIED": "default",
    "BLOCK_LOW_AND_ABOVE": "strict",
    "BLOCK_MEDIUM_AND_ABOVE": "default",
    "BLOCK_ONLY_HIGH": "loose",
    "BLOCK_NONE": "loose",
    "OFF": "loose",
}


def safety_level(settings: list[SafetySetting]) -> str:
    """The strictest level asked for the checked categories ("default" if none)."""
    asked = set()
    for index, setting in enumerate(settings):
        if setting.category not in HARM_CATEGORIES:
            raise invalid(f"safetySettings[{index}].category {setting.category!r} is not one of {sorted(HARM_CATEGORIES)}")
        if setting.threshold not in SAFETY_LEVELS:
            raise invalid(f"safetySettings[{index}].threshold {setting.threshold!r} is not one of {sorted(SAFETY_LEVELS)}")
        if setting.category in CHECKED_CATEGORIES:
            asked.add(SAFETY_LEVELS[setting.threshold])
    return next((level for level in ("strict", "default", "loose") if level in asked), "default")


def decode_base64(data: str, where: str) -> bytes:
    """Standard or URL-safe base64, padded or not, whitespace tolerated."""
    cleaned = "".join(data.split()).replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid(f"{where}.data is not valid base64") from exc


def parse_body(body: bytes, *, count_tokens: bool = False) -> GenerateContentRequest:
    payload = load_json(body)
    if count_tokens and isinstance(payload, dict) and isinstance(payload.get("generateContentRequest"), dict):
        payload = payload["generateContentRequest"]  # countTokens takes `contents` or a whole request
    if not isinstance(payload, dict):
        raise invalid("Invalid JSON payload received: expected an object with 'contents'")
    try:
        return GenerateContentRequest.model_validate(payload)
    except ValidationError as exc:
        raise invalid(describe_validation(exc.errors())) from exc


# fileData.fileUri naming one of flashbulb's own files: `files/<id>`, or its full `uri`.
_FILE_URI = re.compile(r"(?:^|/)files/([a-z0-9-]{1,40})")


def to_image_request(
    wire: GenerateContentRequest,
    *,
    model: str,
    caller: Caller,
    request_id: str,
    max_pixels: int,
    max_images: int,
    read_file: Callable[[str], bytes] | None = None,
) -> ImageRequest:
    """`read_file` gives the bytes of one of the caller's files (by id) for fileData parts; without
    it (batch items) fileData is refused."""
    if not wire.contents:
        raise invalid("contents is empty: send at least one user turn with text or an image")
    turns = wire.contents
    last = turns[-1]
    if (last.role or "user") != "user":
        raise invalid(f"the last turn in contents must be role 'user', not {last.role!r}")
    sent = sum(1 for part in last.parts if part.inline_data is not None or part.file_data is not None)
    if sent > max_images:  # counted before anything is decoded
        raise invalid(f"{sent} images were sent; the limit is {max_images}")
    budget = PixelBudget(max_pixels)

    def images_of(index: int, content: Content) -> list:
        found = []
        for p, part in enumerate(content.parts):
            where = f"contents[{index}].parts[{p}]"
            if part.file_data is not None:
                match = _FILE_URI.search(part.file_data.file_uri.split("?")[0])
                if read_file is None or match is None:
                    raise invalid(
                        f"{where}.fileData.fileUri must name a file uploaded to this server (files/<id>); "
                        "or send the image as inlineData"
                    )
                found.append(decode_image(read_file(match[1]), max_pixels=max_pixels, what=f"{where}.fileData", budget=budget))
            if part.inline_data is not None:
                if part.inline_data.mime_type and not part.inline_data.mime_type.startswith("image/"):
                    raise invalid(f"{where}.inlineData.mimeType {part.inline_data.mime_type!r} is not an image type")
                data = decode_base64(part.inline_data.data, f"{where}.inlineData")
                found.append(decode_image(data, max_pixels=max_pixels, what=f"{where}.inlineData", budget=budget))
        return found

    images = images_of(len(turns) - 1, last)
    if not images:
        # A follow-up turn ("now make it sharper") edits the newest image in the conversation.
        for index in range(len(turns) - 2, -1, -1):
            images = images_of(index, turns[index])[-1:]
            if images:
                break
    if len(images) > max_images:
        raise invalid(f"{len(images)} images were sent; the limit is {max_images}")
    prompt = " ".join(p.text.strip() for p in last.parts if p.text and not p.thought).strip()
    if not prompt and not images:
        raise invalid("the last user turn has neither text nor an image")

    config = wire.generation_config or GenerationConfig()
    modalities = {m.upper() for m in (config.response_modalities or ["TEXT", "IMAGE"])}
    if unknown := modalities - {"TEXT", "IMAGE"}:
        raise invalid(f"generationConfig.responseModalities {sorted(unknown)} not supported; use TEXT and IMAGE")
    if "IMAGE" not in modalities:
        raise invalid("flashbulb models answer with images: include IMAGE in generationConfig.responseModalities")
    n = config.candidate_count or 1
    if not 1 <= n <= MAX_CANDIDATES:
        raise invalid(f"generationConfig.candidateCount must be between 1 and {MAX_CANDIDATES}")
    image_config = config.image_config or ImageConfig()
    aspect = check_aspect_ratio(image_config.aspect_ratio)
    image_size = check_image_size(image_config.image_size)
    request = ImageRequest(
        request_id=request_id,
        model=model,
        prompt=prompt,
        images=images,
        aspect_ratio=aspect,
        n=n,
        seed=config.seed,
        system="\n".join(p.text for p in wire.system_instruction.parts if p.text) if wire.system_instruction else "",
        want_text="TEXT" in modalities,
        caller=caller,
        safety_level=safety_level(wire.safety_settings or []),
    )
    if image_size:  # a promise of pixels: the ratio the request is drawn at, at that size class
        request.size = sized(ratio_of(request), image_size)
    return request


# ---- domain -> wire ----


def to_response(request: ImageRequest, served: Served) -> dict[str, Any]:
    result = served.result
    parts: list[dict[str, Any]] = []
    if result.text and (request.want_text or result.finish_reason != FinishReason.STOP):
        parts.append({"text": result.text})
    for image in result.images:
        parts.append(
            {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(served.sign(encode_png(image), "png")).decode()}}
        )
    if result.images:
        # Gemini 3 signs its image parts and multi-turn clients (the SDKs' chats) send the signature back
        # with the turn; flashbulb's names the request and needs nothing more, but is there to echo.
        parts[-1]["thoughtSignature"] = base64.b64encode(f"flashbulb:{request.request_id}".encode()).decode()
    tokens = count_tokens(request, served, text_out=parts[0]["text"] if parts and "text" in parts[0] else "")
    prompt_details = [{"modality": "TEXT", "tokenCount": tokens.text_in}]
    if tokens.image_in:
        prompt_details.append({"modality": "IMAGE", "tokenCount": tokens.image_in})
    candidate_details = [{"modality": "IMAGE", "tokenCount": tokens.image_out}] if tokens.image_out else []
    if tokens.text_out:
        candidate_details.insert(0, {"modality": "TEXT", "tokenCount": tokens.text_out})
    if result.input_blocked:  # as Gemini answers a blocked prompt: feedback on it, no candidate
        answer: dict[str, Any] = {"promptFeedback": {"blockReason": "IMAGE_SAFETY", "blockReasonMessage": result.text}}
    else:
        candidate = {"content": {"role": "model", "parts": parts}, "finishReason": result.finish_reason.value, "index": 0}
        answer = {"candidates": [candidate]}
    return {
        **answer,
        "usageMetadata": {
            "promptTokenCount": tokens.prompt,
            "candidatesTokenCount": tokens.output,
            "totalTokenCount": tokens.total,
            "promptTokensDetails": prompt_details,
            "candidatesTokensDetails": candidate_details,
        },
        "modelVersion": request.model,
        "responseId": request.request_id,
        "flashbulb": flashbulb_fields(request, served),
    }


def counted_tokens(request: ImageRequest) -> dict[str, Any]:
    """countTokens' answer: the prompt as generateContent's usageMetadata.promptTokenCount counts it."""
    tokens = prompt_tokens(request)
    details = [{"modality": "TEXT", "tokenCount": tokens.text_in}]
    if tokens.image_in:
        details.append({"modality": "IMAGE", "tokenCount": tokens.image_in})
    return {"totalTokens": tokens.prompt, "promptTokensDetails": details}


def model_resource(entry: ModelEntry, prices: PriceBook, name: str | None = None, *, operator: bool = False) -> dict[str, Any]:
    """A model, or an alias (`name`, e.g. gemini-3-pro-image-preview) in front of one; to the
    `operator` (an admin key) also where its weights live and how to install it."""
    schedule = prices.schedule(entry.name)
    name = name or entry.name
    return {
        "name": f"models/{name}",
        "baseModelId": name,
        "version": entry.version,
        "displayName": entry.display_name,
        "description": entry.description,
        "inputTokenLimit": entry.input_token_limit,
        "outputTokenLimit": entry.output_token_limit,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        "flashbulb": {
            "model": entry.name,  # differs from `name` for aliases
            "capabilities": list(entry.capabilities),
            "price_micros_per_image": schedule.standard,
            "prices": prices_json(schedule),
            "installed": entry.installed(),
            **entry.details,
            **(entry.operator_details if operator else {}),
        },
    }


# ---- routes ----


def build_router(gateway: Gateway, files: FileStore) -> APIRouter:
    router = APIRouter()
    settings = gateway.settings
    registry = gateway.engine.registry

    def file_reader(caller: Caller) -> Callable[[str], bytes]:
        return files.image_reader(caller.account_id, settings.max_body_bytes)

    async def prepare(request: Request, model: str) -> ImageRequest:
        caller = await gateway.authenticate(api_key_of(request))
        registry.resolve(model)  # an unknown model is a 404 before the body is even parsed
        body = await request.body()
        request_id = new_request_id()

        def translate() -> ImageRequest:  # JSON, base64 and image decoding: off the event loop
            return to_image_request(
                parse_body(body),
                model=model,
                caller=caller,
                request_id=request_id,
                max_pixels=settings.max_input_pixels,
                max_images=settings.max_input_images,
                read_file=file_reader(caller),
            )

        return await asyncio.to_thread(translate)

    @router.get("/models")
    async def list_models(request: Request, caller: Authenticated, pageSize: int = 50, pageToken: str = "") -> dict:
        names = [*registry.entries, *(alias for alias in registry.aliases if alias not in registry.entries)]
        start = whole_number(pageToken, "pageToken", param="pageToken") if pageToken else 0
        page = names[start : start + max(1, pageSize)]
        body: dict[str, Any] = {
            "models": [model_resource(registry.resolve(name), gateway.prices, name, operator=caller.is_admin) for name in page]
        }
        if start + len(page) < len(names):
            body["nextPageToken"] = str(start + len(page))
        return body

    @router.get("/models/{model}")
    async def get_model(request: Request, caller: Authenticated, model: str) -> dict:
        return model_resource(registry.resolve(model), gateway.prices, model.removeprefix("models/"), operator=caller.is_admin)

    @router.post("/models/{model}:countTokens")
    async def count_tokens_route(request: Request, caller: Authenticated, model: str) -> dict:
        registry.resolve(model)
        body = await request.body()

        def count() -> dict:
            image_request = to_image_request(
                parse_body(body, count_tokens=True),
                model=model,
                caller=caller,
                request_id="count",
                max_pixels=settings.max_input_pixels,
                max_images=settings.max_input_images,
                read_file=file_reader(caller),
            )
            return counted_tokens(image_request)

        return await asyncio.to_thread(count)

    @router.post("/models/{model}:generateContent")
    async def generate_content(request: Request, model: str) -> JSONResponse:
        image_request = await prepare(request, model)
        # Built (and serialised) before the charge is settled: an answer that can't be sent costs nothing.
        render = lambda served: JSONResponse(to_response(image_request, served), headers=flashbulb_headers(image_request, served))  # noqa: E731
        return cast(JSONResponse, (await serve(gateway, request, image_request, render)).rendered)  # render's

    @router.post("/models/{model}:streamGenerateContent")
    async def stream_generate_content(request: Request, model: str, alt: str = "") -> StreamingResponse:
        image_request = await prepare(request, model)
        await gateway.reserve(image_request)  # out of credits is an HTTP 429, not an event

        # flashbulb's studio asks for progress (x-flashbulb-progress: 1): before the answer come
        # chunks holding only {"flashbulb": {"progress": fraction}}. SDKs never ask: they see one chunk.
        progress = alt == "sse" and request.headers.get("x-flashbulb-progress") == "1"

        async def events() -> AsyncIterator[str]:
            # Starlette cancels this generator when the client goes away; the gateway then releases.
            render = lambda served: json.dumps(to_response(image_request, served), separators=(",", ":"), allow_nan=False)  # noqa: E731
            try:
                async for kind, value in fulfil_streaming(gateway, image_request, render, progress=progress):
                    if kind == "progress":
                        yield f'data: {{"flashbulb":{{"progress":{value}}}}}\r\n\r\n'
                    else:
                        text = value.rendered
            except FlashbulbError as error:
                text = json.dumps(google_error_body(error)[1], separators=(",", ":"))
            yield f"data: {text}\r\n\r\n" if alt == "sse" else f"[{text}]"

        media_type = "text/event-stream" if alt == "sse" else "application/json"
        return StreamingResponse(events(), media_type=media_type, headers={"x-flashbulb-request-id": image_request.request_id})

    return router

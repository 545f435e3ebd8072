"""The OpenAI Images API wire format (images/generations, images/edits, models) <-> ImageRequest/ImageResult.

Only translation lives here: no pricing or scheduling, and no pixel work beyond reading OpenAI's mask
convention and encoding results in the format asked for.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, cast

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import HTTPConnection
from starlette.routing import Match
from starlette.types import Scope

from flashbulb.api.errors import bearer_only, openai_error_body
from flashbulb.api.outputs import OutputStore
from flashbulb.api.receipt import count_tokens, flashbulb_fields, flashbulb_headers, prices_json
from flashbulb.api.serving import AUTHENTICATED, Authenticated, fulfil_streaming, new_request_id, serve
from flashbulb.billing.prices import PriceBook
from flashbulb.engine.aspect import nearest_ratio
from flashbulb.engine.imageio import PixelBudget, decode_image, encode
from flashbulb.engine.registry import ModelEntry, Registry
from flashbulb.engine.types import Caller, FinishReason, ImageRequest, ImageResult
from flashbulb.errors import ErrorKind, FlashbulbError, invalid
from flashbulb.gateway.gateway import MAX_PROMPT_CHARS, Gateway, Served
from flashbulb.jobs.files import FileStore
from flashbulb.parsing import load_json
from flashbulb.provenance import Sign, unsigned

DEFAULT_MODEL = "gpt-image-1"  # an alias: the installed default generative model, else flashbulb-photo
MAX_N = 10

_SIZE = re.compile(r"(\d{1,5})x(\d{1,5})")
MAX_EDGE = 3840
MAX_SIZE_PIXELS = 3840 * 2160
# An edit's images arrive as `image`, or as `image[]` / `image[0]`... (the SDK sends a list as image[]).
_IMAGE_FIELD = re.compile(r"image(\[\d*\])?")
# The quality gpt-image-1 reports for each one it accepts (flashbulb runs each model at its one setting).
REPORTED_QUALITY = {"auto": "high", "low": "low", "medium": "medium", "standard": "medium", "high": "high", "hd": "high"}
# The models' `created`: flashbulb's catalog has no dates, so the time this server started.
_STARTED = int(time.time())


# ---- request shapes (unknown fields ignored: the SDK learns new ones before we do) ----


class ImageParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str
    model: str | None = None
    n: int | None = Field(None, ge=1, le=MAX_N)
    size: str | None = None
    quality: Literal["auto", "low", "medium", "high", "standard", "hd"] | None = None
    response_format: Literal["b64_json", "url"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: int | None = Field(None, ge=0, le=100)
    background: Literal["auto", "opaque", "transparent"] | None = None
    user: str | None = None
    seed: int | None = None  # not OpenAI's, but flashbulb's models repeat an image given its seed
    stream: bool | None = None
    partial_images: int | None = Field(None, ge=0, le=3)
    input_fidelity: Literal["low", "high"] | None = None  # every edit here keeps the input's identity
    moderation: Literal["auto", "low"] | None = None  # "low": the safety check's loosest level (never off)


class GenerateParams(ImageParams):
    style: Literal["vivid", "natural"] | None = None  # dall-e-3's; accepted, no model here uses it


_CODES = {
    "missing": "missing_required_parameter",
    "literal_error": "invalid_value",
    "greater_than_equal": "integer_below_min_value",
    "less_than_equal": "integer_above_max_value",
}


# ---- wire -> domain ----


def parse_json(body: bytes) -> dict[str, Any]:
    payload = load_json(body, code="invalid_json")
    if not isinstance(payload, dict):
        raise invalid("The request body must be a JSON object with at least 'prompt'.", code="invalid_json")
    return payload


def parse_params(shape: type[ImageParams], payload: dict[str, Any]) -> ImageParams:
    """Validate the options; every error names the offending field in `param`."""
    try:
        params = shape.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        kind = first["type"]
        code = _CODES.get(kind, "invalid_type" if kind.endswith(("_type", "_parsing")) else "invalid_value")
        message = f"Missing required parameter: '{param}'." if kind == "missing" else f"Invalid '{param}': {first['msg']}."
        raise invalid(message, param=param, code=code) from exc
    if not params.prompt.strip():
        raise invalid("Invalid 'prompt': empty string. Say what to draw or change.", param="prompt", code="empty_string")
    if len(params.prompt) > MAX_PROMPT_CHARS:
        message = f"Invalid 'prompt': longer than {MAX_PROMPT_CHARS:,} characters."
        raise invalid(message, param="prompt", code="string_above_max_length")
    if params.partial_images is not None and not params.stream:
        raise invalid("'partial_images' is for streaming: set 'stream' to true.", param="partial_images")
    if params.stream and params.response_format == "url":
        raise invalid("A stream sends images as b64_json; leave 'response_format' off.", param="response_format")
    if params.background == "transparent" and params.output_format == "jpeg":
        message = "A transparent background needs output_format 'png' or 'webp'."
        raise invalid(message, param="background", code="invalid_value")
    aspect_ratio_of(params.size)  # a bad size is a 400 before any image is decoded
    return params


def size_of(size: str | None) -> tuple[int, int] | None:
    """OpenAI's WIDTHxHEIGHT, checked as gpt-image-2 checks it; drawn at exactly that size (see
    engine/output_size.py). None: 'auto', each model's own size."""
    if size is None or size.strip() in ("", "auto"):
        return None
    match = _SIZE.fullmatch(size.strip().lower())
    problem = None
    if not match:
        problem = "use 'auto' or WIDTHxHEIGHT, e.g. '1024x1024', '1536x1024' or '1024x1536'"
    else:
        width, height = int(match[1]), int(match[2])
        if width % 16 or height % 16 or not width or not height:
            problem = "both sides must be positive multiples of 16"
        elif max(width, height) > 3 * min(width, height):
            problem = "the long side may be at most 3 times the short side"
        elif max(width, height) > MAX_EDGE or width * height > MAX_SIZE_PIXELS:
            problem = f"the largest size is 3840x2160 ({MAX_SIZE_PIXELS:,} pixels, {MAX_EDGE} a side)"
    if problem:
        raise invalid(f"Invalid 'size': {size!r}: {problem}.", param="size", code="invalid_value")
    return width, height


def aspect_ratio_of(size: str | None) -> str | None:
    """The Gemini aspect ratio nearest a size: models that crop (flashbulb-photo) crop to it first."""
    exact = size_of(size)
    return nearest_ratio(*exact) if exact else None


def resolve_model(registry: Registry, name: str) -> ModelEntry:
    try:
        return registry.resolve(name)
    except FlashbulbError as error:
        raise FlashbulbError(error.kind, error.message, param="model", code="model_not_found") from error


def decode(data: bytes, what: str, param: str, max_pixels: int, budget: PixelBudget | None = None) -> Image.Image:
    try:
        return decode_image(data, max_pixels=max_pixels, what=what, budget=budget)
    except FlashbulbError as error:
        raise invalid(error.message, param=param) from error


def repaint_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """OpenAI marks where to edit with transparent pixels; ImageRequest.mask wants 255 = repaint."""
    if mask.mode != "RGBA":
        raise invalid("The mask needs an alpha channel: a PNG, transparent where the image should change.", param="mask")
    if mask.size != size:
        raise invalid(
            f"The mask is {mask.width}x{mask.height} but the image is {size[0]}x{size[1]}; they must be the same size.",
            param="mask",
        )
    return ImageOps.invert(mask.getchannel("A"))


def decode_inputs(
    images: list[bytes], mask: bytes | None, *, max_pixels: int, max_images: int
) -> tuple[list[Image.Image], Image.Image | None]:
    if not images:
        raise invalid("Missing required parameter: 'image'.", param="image", code="missing_required_parameter")
    if len(images) > max_images:
        raise invalid(f"{len(images)} images were sent; the limit is {max_images}.", param="image")
    names = [f"image {k + 1}" for k in range(len(images))] if len(images) > 1 else ["image"]
    budget = PixelBudget(max_pixels)
    decoded = [decode(data, name, "image", max_pixels, budget) for name, data in zip(names, images)]
    if mask is None:
        return decoded, None
    return decoded, repaint_mask(decode(mask, "mask", "mask", max_pixels), decoded[0].size)


def data_url_bytes(url: object, param: str) -> bytes:
    """The bytes of a base64 data: URL. flashbulb never fetches http(s) URLs on a caller's behalf."""
    head, comma, data = url.partition(",") if isinstance(url, str) else ("", "", "")
    if not head.startswith("data:") or not comma or ";base64" not in head:
        raise invalid(
            f"'{param}' must be a base64 data URL (data:image/png;base64,...); other URLs are not fetched.", param=param
        )
    try:
        return base64.b64decode(data, validate=True)
    except ValueError as exc:
        raise invalid(f"'{param}' is not valid base64.", param=param) from exc


def image_bytes(part: dict[str, Any], param: str, read_file: Callable[[str], bytes]) -> bytes:
    """An image part's bytes: its `image_url` (a data URL) or its `file_id` (uploaded with files.create)."""
    if isinstance(part.get("image_url"), str):
        return data_url_bytes(part["image_url"], f"{param}.image_url")
    if isinstance(part.get("file_id"), str):
        return read_file(part["file_id"])
    raise invalid(f"'{param}' needs an image_url (a data URL) or a file_id (from files.create).", param=param)


def read_edit_json(
    body: bytes, max_images: int, read_file: Callable[[str], bytes]
) -> tuple[dict[str, Any], list[bytes], bytes | None]:
    """An edit as JSON (gpt-image-1.5 and later): `images: [{"image_url": "data:..."} or {"file_id": ...}]`,
    an optional `mask` the same way, the options beside them."""
    fields = parse_json(body)
    images = fields.pop("images", None)
    mask = fields.pop("mask", None)
    if not isinstance(images, list) or not images:
        raise invalid(
            'Missing required parameter: \'images\' (a list of {"image_url": data URL} or {"file_id": id}).',
            param="images",
            code="missing_required_parameter",
        )
    if len(images) > max_images:
        raise invalid(f"{len(images)} images were sent; the limit is {max_images}.", param="images")
    for k, item in enumerate(images):
        if not isinstance(item, dict):
            raise invalid(f'\'images[{k}]\' must be {{"image_url": data URL}} or {{"file_id": id}}.', param="images")
    if mask is not None and not isinstance(mask, dict):
        raise invalid('\'mask\' must be {"image_url": data URL} or {"file_id": id}.', param="mask")
    decoded = [image_bytes(item, f"images[{k}]", read_file) for k, item in enumerate(images)]
    return fields, decoded, image_bytes(mask, "mask", read_file) if mask is not None else None


async def read_edit_form(
    request: Request, max_images: int, read_file: Callable[[str], bytes]
) -> tuple[dict[str, str], list[bytes], bytes | None]:
    """The multipart form of an edit: its option fields, its image files and its mask file (or the
    same as JSON, whose images may name uploaded files)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        return await asyncio.to_thread(read_edit_json, await request.body(), max_images, read_file)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise invalid(
            "images/edits takes multipart/form-data (image files, prompt and options as form fields) or "
            "JSON with images as data URLs."
        )
    form = await request.form(max_files=max_images + 1, max_fields=100)
    try:
        fields: dict[str, str] = {}
        images: list[bytes] = []
        mask: bytes | None = None
        for key, value in form.multi_items():
            if _IMAGE_FIELD.fullmatch(key) or key == "mask":
                param = "mask" if key == "mask" else "image"
                if not isinstance(value, UploadFile):
                    raise invalid(f"'{key}' must be a file part (PNG, JPEG or WebP).", param=param, code="invalid_type")
                if param == "mask":
                    mask = await value.read()
                else:
                    images.append(await value.read())
            elif isinstance(value, UploadFile):
                raise invalid(f"'{key}' must be a plain form field, not a file.", param=key, code="invalid_type")
            else:
                fields[key] = value
    finally:
        await form.close()
    return fields, images, mask


def to_image_request(
    params: ImageParams, images: list[Image.Image], mask: Image.Image | None, *, caller: Caller, request_id: str
) -> ImageRequest:
    return ImageRequest(
        request_id=request_id,
        model=params.model or DEFAULT_MODEL,
        prompt=params.prompt.strip(),
        images=images,
        mask=mask,
        aspect_ratio=aspect_ratio_of(params.size),
        size=size_of(params.size),
        n=params.n or 1,
        seed=params.seed,
        want_text=False,
        caller=caller,
        quality=params.quality,
        safety_level="loose" if params.moderation == "low" else "default",
    )


# ---- domain -> wire ----


def refusal(result: ImageResult) -> FlashbulbError:
    """A result without images, as OpenAI reports it: a 400 whose code says why (nothing was charged)."""
    if result.finish_reason is FinishReason.IMAGE_SAFETY:
        return invalid(result.text or "The request was blocked by the safety check.", code="moderation_blocked")
    return invalid(result.text or "The model made no image.", code="image_generation_failed")


def encode_all(images: list[Image.Image], params: ImageParams, sign: Sign = unsigned) -> list[bytes]:
    """The images in the format asked for; `sign` adds their content credentials (a final result's)."""
    fmt = params.output_format or "png"
    quality = 100 if params.output_compression is None else params.output_compression
    return [sign(encode(image, fmt, quality=quality, opaque=params.background == "opaque"), fmt) for image in images]


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), allow_nan=False)}\n\n"


def to_response(request: ImageRequest, served: Served, params: ImageParams, data: list[dict[str, str]]) -> dict[str, Any]:
    images = served.result.images
    fmt = params.output_format or "png"
    transparent = fmt != "jpeg" and params.background != "opaque" and any(im.mode == "RGBA" for im in images)
    tokens = count_tokens(request, served)
    return {
        "created": int(time.time()),
        "data": data,
        "background": "transparent" if transparent else "opaque",
        "output_format": fmt,
        "quality": REPORTED_QUALITY[params.quality or "auto"],
        "size": f"{images[0].width}x{images[0].height}",
        "usage": {
            "total_tokens": tokens.total,
            "input_tokens": tokens.prompt,
            "output_tokens": tokens.output,
            "input_tokens_details": {"text_tokens": tokens.text_in, "image_tokens": tokens.image_in},
            "output_tokens_details": {"text_tokens": tokens.text_out, "image_tokens": tokens.image_out},
        },
        "flashbulb": {**flashbulb_fields(request, served), "model": request.model, "aspect_ratio": request.aspect_ratio},
    }


def model_object(name: str, entry: ModelEntry, prices: PriceBook) -> dict[str, Any]:
    schedule = prices.schedule(entry.name)
    return {
        "id": name,
        "object": "model",
        "created": _STARTED,
        "owned_by": "flashbulb",
        "flashbulb": {
            "model": entry.name,  # differs from `id` for aliases such as gpt-image-1
            "capabilities": list(entry.capabilities),
            "price_micros_per_image": schedule.standard,
            "prices": prices_json(schedule),
            "installed": entry.installed(),
        },
    }


# ---- routes ----


class OpenAIRoute(APIRoute):
    """A route that matches only OpenAI callers (a bearer token, no Gemini key): /v1/models is Gemini's
    path too, and Gemini's routes, registered after these, answer everyone else."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE and not bearer_only(HTTPConnection(scope)):
            return Match.NONE, {}
        return match, child_scope


def build_models_router(gateway: Gateway) -> APIRouter:
    """GET /models and /models/{model} in OpenAI's shape; include it before the Gemini routers."""
    router = APIRouter(route_class=OpenAIRoute)
    registry = gateway.engine.registry

    @router.get("/models", dependencies=[AUTHENTICATED])
    async def list_models(request: Request) -> dict:
        names = [*registry.entries, *(alias for alias in registry.aliases if alias not in registry.entries)]
        return {"object": "list", "data": [model_object(name, registry.resolve(name), gateway.prices) for name in names]}

    @router.get("/models/{model}", dependencies=[AUTHENTICATED])
    async def retrieve_model(request: Request, model: str) -> dict:
        return model_object(model, resolve_model(registry, model), gateway.prices)

    return router


def build_router(gateway: Gateway, outputs: OutputStore, files: FileStore) -> APIRouter:
    """POST /images/generations and /images/edits (whose JSON images may be files: `file_id`)."""
    router = APIRouter()
    settings = gateway.settings
    registry = gateway.engine.registry

    async def respond(request: Request, params: ImageParams, image_request: ImageRequest) -> Response:  # JSON, or a stream
        resolve_model(registry, image_request.model)  # an unknown model is a 404 naming `model`

        def render(served: Served) -> JSONResponse:
            """The answer, built (images encoded, URLs stored) before the charge is settled."""
            headers = {**flashbulb_headers(image_request, served), "x-request-id": image_request.request_id}
            if served.result.finish_reason is not FinishReason.STOP or not served.result.images:
                status, body = openai_error_body(refusal(served.result))
                body["flashbulb"] = flashbulb_fields(image_request, served)
                return JSONResponse(body, status_code=status, headers=headers)
            fmt = params.output_format or "png"
            encoded = encode_all(served.result.images, params, served.sign)
            if params.response_format == "url":
                data = [{"url": str(request.url_for("result_image", name=outputs.save(d, fmt)))} for d in encoded]
            else:
                data = [{"b64_json": base64.b64encode(d).decode()} for d in encoded]
            return JSONResponse(to_response(image_request, served, params, data), headers=headers)

        try:
            if params.stream:
                return await stream(image_request, params, "image_edit" if image_request.images else "image_generation")
            return cast(JSONResponse, (await serve(gateway, request, image_request, render)).rendered)  # render's
        except FlashbulbError as error:
            if error.kind is ErrorKind.FAILED_PRECONDITION and error.param is None:
                error.param = "model"  # the model asked for is not installed (or failed to load)
            raise

    async def stream(image_request: ImageRequest, params: ImageParams, event: str) -> StreamingResponse:
        """Server-sent events: up to `partial_images` `<event>.partial_image` (the stages a model
        passes: flashbulb-photo's multi-step edits; the API allows fewer than asked, "the final image
        may be sent before the full number of partial images"), then `<event>.completed` for each
        image, or one `error` event."""
        await gateway.reserve(image_request)  # out of credits is an HTTP 429, not an event

        def render(served: Served) -> list[str]:
            if served.result.finish_reason is not FinishReason.STOP or not served.result.images:
                raise refusal(served.result)  # released, not charged: a refusal is an error event
            body = to_response(image_request, served, params, [])
            common = {key: body[key] for key in ("background", "output_format", "quality", "size", "usage")}
            return [
                sse(
                    f"{event}.completed",
                    {
                        "type": f"{event}.completed",
                        "b64_json": base64.b64encode(data).decode(),
                        "created_at": body["created"],
                        **common,
                        "flashbulb": body["flashbulb"],
                    },
                )
                for data in encode_all(served.result.images, params, served.sign)
            ]

        async def events() -> AsyncIterator[str]:
            # Starlette cancels this generator when the client goes away; the gateway then releases.
            fmt = params.output_format or "png"
            try:
                async for kind, value in fulfil_streaming(gateway, image_request, render, previews=params.partial_images or 0):
                    if kind == "preview":
                        index, image = value
                        yield sse(
                            f"{event}.partial_image",
                            {
                                "type": f"{event}.partial_image",
                                "b64_json": base64.b64encode(encode_all([image], params)[0]).decode(),
                                "partial_image_index": index,
                                "created_at": int(time.time()),
                                "size": f"{image.width}x{image.height}",
                                "quality": REPORTED_QUALITY[params.quality or "auto"],
                                "background": params.background or "auto",
                                "output_format": fmt,
                            },
                        )
                    else:
                        for text in value.rendered:
                            yield text
            except FlashbulbError as error:
                yield sse("error", {"type": "error", **openai_error_body(error)[1]})

        headers = {"x-request-id": image_request.request_id, "x-flashbulb-request-id": image_request.request_id}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    @router.post("/images/generations")
    async def generations(request: Request, caller: Authenticated) -> Response:
        params = parse_params(GenerateParams, parse_json(await request.body()))
        image_request = to_image_request(params, [], None, caller=caller, request_id=new_request_id())
        return await respond(request, params, image_request)

    @router.post("/images/edits")
    async def edits(request: Request, caller: Authenticated) -> Response:
        read_file = files.image_reader(caller.account_id, settings.max_body_bytes)
        fields, images_sent, mask_file = await read_edit_form(request, settings.max_input_images, read_file)
        params = parse_params(ImageParams, fields)
        images, mask = await asyncio.to_thread(
            decode_inputs, images_sent, mask_file, max_pixels=settings.max_input_pixels, max_images=settings.max_input_images
        )
        request_id = new_request_id()
        image_request = to_image_request(params, images, mask, caller=caller, request_id=request_id)
        return await respond(request, params, image_request)

    return router

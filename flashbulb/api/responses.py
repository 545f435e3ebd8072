"""The OpenAI Responses API, for its `image_generation` tool only (how the Agents SDK and most new
OpenAI code make images) <-> ImageRequest/ImageResult.

flashbulb answers with images, never with model text: a request without the image tool is a 400
that says so. The image options live on the tool and are checked as the Images API checks them
(api/openai.py), so both OpenAI paths draw, price and report an image the same way.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError

from flashbulb.api.errors import openai_error_body
from flashbulb.api.openai import (
    ImageParams,
    decode,
    encode_all,
    image_bytes,
    parse_json,
    parse_params,
    refusal,
    repaint_mask,
    resolve_model,
    sse,
    to_image_request,
    to_response,
)
from flashbulb.api.outputs import OutputStore
from flashbulb.api.serving import Authenticated, fulfil_streaming, new_request_id, serve
from flashbulb.engine.imageio import PixelBudget, decode_image, encode_png
from flashbulb.engine.types import Caller, FinishReason, ImageRequest
from flashbulb.errors import ErrorKind, FlashbulbError, invalid
from flashbulb.gateway.gateway import Gateway, Served
from flashbulb.jobs.files import FileStore


class ImageTool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["image_generation"]
    model: str | None = None
    action: Literal["auto", "generate", "edit"] | None = None
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    partial_images: int | None = None
    moderation: str | None = None
    input_fidelity: str | None = None
    input_image_mask: dict[str, Any] | None = None


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = "gpt-4.1"
    input: str | list[dict[str, Any]]
    tools: list[dict[str, Any]] = []
    instructions: str | None = None
    previous_response_id: str | None = None
    stream: bool = False


def parse_request(body: bytes) -> tuple[ResponsesRequest, ImageTool]:
    try:
        wire = ResponsesRequest.model_validate(parse_json(body))
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise invalid(f"Invalid '{param}': {first['msg']}.", param=param) from exc
    tools = [t for t in wire.tools if isinstance(t, dict) and t.get("type") == "image_generation"]
    if not tools:
        raise invalid(
            'flashbulb answers the Responses API with images only: add tools=[{"type": "image_generation"}] '
            "(text-only model output is not served here).",
            param="tools",
            code="unsupported_value",
        )
    try:
        return wire, ImageTool.model_validate(tools[0])
    except ValidationError as exc:
        first = exc.errors()[0]
        raise invalid(f"Invalid 'tools[].{'.'.join(map(str, first['loc']))}': {first['msg']}.", param="tools") from exc


def read_mask(
    mask: dict[str, Any] | None, images: list[Image.Image], max_pixels: int, read_file: Callable[[str], bytes]
) -> Image.Image | None:
    """The tool's input_image_mask (an image_url or file_id, transparent where the image should change),
    as ImageRequest.mask for the image being edited."""
    if mask is None:
        return None
    if not images:
        raise invalid("input_image_mask needs an image to edit: send an input_image or a previous_response_id.", param="tools")
    data = image_bytes(mask, "tools[0].input_image_mask", read_file)
    return repaint_mask(decode(data, "input_image_mask", "tools", max_pixels), images[0].size)


def read_input(
    wire: ResponsesRequest, max_pixels: int, max_images: int, read_file: Callable[[str], bytes]
) -> tuple[str, list[Image.Image], list[Image.Image]]:
    """The last user turn's text and images, and the images of earlier turns (newest last)."""
    if isinstance(wire.input, str):
        return wire.input, [], []
    sent = sum(
        1
        for item in wire.input
        for part in (item["content"] if isinstance(item.get("content"), list) else [])
        if isinstance(part, dict) and part.get("type") == "input_image"
    )
    if sent > max_images:  # counted before anything is decoded
        raise invalid(f"{sent} images were sent; the limit is {max_images}.", param="input")
    budget = PixelBudget(max_pixels)
    earlier: list[Image.Image] = []
    text = ""
    images: list[Image.Image] = []
    for index, item in enumerate(wire.input):
        where = f"input[{index}]"
        if item.get("type") == "image_generation_call" and isinstance(item.get("result"), str):
            try:
                earlier.append(decode_image(base64.b64decode(item["result"]), max_pixels=max_pixels, what=where, budget=budget))
            except ValueError as exc:  # not base64
                raise invalid(f"'{where}.result' is not a base64 image.", param=f"{where}.result") from exc
            continue
        if item.get("role", "user") != "user":
            continue
        content = item.get("content", "")
        parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise invalid(f"'{where}.content' must be a string or a list of parts.", param=f"{where}.content")
        turn_text, turn_images = [], []
        for p, part in enumerate(parts):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "input_text" and isinstance(part.get("text"), str):
                turn_text.append(part["text"])
            elif kind == "input_image":
                param = f"{where}.content[{p}]"
                data = image_bytes(part, param, read_file)
                turn_images.append(decode_image(data, max_pixels=max_pixels, what=param, budget=budget))
            else:
                raise invalid(f"'{where}.content[{p}]' must be an input_text or input_image part.", param=f"{where}.content")
        earlier.extend(images)
        text, images = " ".join(turn_text), turn_images
    return text, images, earlier


def image_call(
    call_id: str, status: str, tool: ImageTool, action: str, body: dict[str, Any] | None, b64: str | None, prompt: str
) -> dict:
    item: dict[str, Any] = {"id": call_id, "type": "image_generation_call", "status": status, "action": action}
    if body is not None:
        item.update(
            result=b64,
            revised_prompt=prompt,
            background=body["background"],
            output_format=body["output_format"],
            quality=body["quality"],
            size=body["size"],
        )
    return item


def response_object(
    response_id: str, wire: ResponsesRequest, status: str, output: list[dict], usage: dict | None, extra: dict
) -> dict:
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": wire.model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": wire.tools,
        "previous_response_id": wire.previous_response_id,
        "error": None,
        "incomplete_details": None,
        "instructions": wire.instructions,
        "usage": usage,
        **extra,
    }


def build_router(gateway: Gateway, outputs: OutputStore, files: FileStore) -> APIRouter:
    """POST /responses. Each response's image is kept (api/outputs.py, as long as result URLs are)
    so that a later call can edit it by `previous_response_id`; input images may be files uploaded
    with files.create (`file_id`)."""
    router = APIRouter()
    settings = gateway.settings

    def translate(body: bytes, caller: Caller) -> tuple[ResponsesRequest, ImageTool, ImageParams, ImageRequest, str]:
        wire, tool = parse_request(body)
        read_file = files.image_reader(caller.account_id, settings.max_body_bytes)
        prompt, sent, earlier = read_input(wire, settings.max_input_pixels, settings.max_input_images, read_file)
        if wire.previous_response_id:
            try:
                kept = outputs.kept(caller.account_id, wire.previous_response_id)
            except FileNotFoundError:
                message = f"Previous response with id '{wire.previous_response_id}' not found."
                raise FlashbulbError(ErrorKind.NOT_FOUND, message, param="previous_response_id") from None
            earlier.append(decode_image(kept, max_pixels=settings.max_input_pixels, what="the previous response's image"))
        action = tool.action or "auto"
        # "auto" edits when there is an image to edit; "generate" draws anew from the text alone.
        chosen = [] if action == "generate" else (sent or earlier[-1:])
        if action == "edit" and not chosen:
            raise invalid("action 'edit' needs an image: send an input_image or a previous_response_id.", param="tools")
        fields = {k: v for k, v in tool.model_dump().items() if k in ImageParams.model_fields and v is not None}
        fields["prompt"] = "\n".join(t for t in (wire.instructions, prompt) if t)
        fields["stream"] = wire.stream
        params = parse_params(ImageParams, fields)
        mask = read_mask(tool.input_image_mask, chosen, settings.max_input_pixels, read_file)
        request = to_image_request(params, chosen, mask, caller=caller, request_id=new_request_id())
        return wire, tool, params, request, "edit" if chosen else "generate"

    @router.post("/responses")
    async def create_response(request: Request, caller: Authenticated):
        body = await request.body()
        wire, tool, params, image_request, action = await asyncio.to_thread(translate, body, caller)
        resolve_model(gateway.engine.registry, image_request.model)
        response_id = f"resp_{secrets.token_hex(16)}"
        call_id = f"ig_{secrets.token_hex(16)}"

        def completed(served: Served) -> dict:
            if served.result.finish_reason is not FinishReason.STOP or not served.result.images:
                raise refusal(served.result)
            body = to_response(image_request, served, params, [])
            b64 = base64.b64encode(encode_all(served.result.images[:1], params, served.sign)[0]).decode()
            outputs.keep(caller.account_id, response_id, encode_png(served.result.images[0]))
            usage = body["usage"]
            usage = {
                "input_tokens": usage["input_tokens"],
                "output_tokens": usage["output_tokens"],
                "total_tokens": usage["total_tokens"],
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            }
            item = image_call(call_id, "completed", tool, action, body, b64, image_request.prompt)
            return response_object(response_id, wire, "completed", [item], usage, {"flashbulb": body["flashbulb"]})

        headers = {"x-request-id": image_request.request_id, "x-flashbulb-request-id": image_request.request_id}
        if not wire.stream:
            render = lambda served: JSONResponse(completed(served), headers=headers)  # noqa: E731
            return (await serve(gateway, request, image_request, render)).rendered

        await gateway.reserve(image_request)  # out of credits is an HTTP 429, not an event

        async def events() -> AsyncIterator[str]:
            sequence = iter(range(1_000))

            def event(kind: str, **fields: Any) -> str:
                return sse(kind, {"type": kind, "sequence_number": next(sequence), **fields})

            pending = response_object(response_id, wire, "in_progress", [], None, {})
            yield event("response.created", response=pending)
            yield event("response.in_progress", response=pending)
            yield event(
                "response.output_item.added",
                output_index=0,
                item=image_call(call_id, "in_progress", tool, action, None, None, image_request.prompt),
            )
            yield event("response.image_generation_call.in_progress", output_index=0, item_id=call_id)
            yield event("response.image_generation_call.generating", output_index=0, item_id=call_id)
            try:
                async for kind, value in fulfil_streaming(gateway, image_request, completed, previews=params.partial_images or 0):
                    if kind == "preview":
                        index, image = value
                        yield event(
                            "response.image_generation_call.partial_image",
                            output_index=0,
                            item_id=call_id,
                            partial_image_index=index,
                            size=f"{image.width}x{image.height}",
                            partial_image_b64=base64.b64encode(encode_all([image], params)[0]).decode(),
                            output_format=params.output_format or "png",
                        )
                    else:
                        final = value.rendered
            except FlashbulbError as error:
                _, problem = openai_error_body(error)
                failed = response_object(response_id, wire, "failed", [], None, {"error": problem["error"]})
                yield event("response.failed", response=failed)
                return
            yield event("response.image_generation_call.completed", output_index=0, item_id=call_id)
            yield event("response.output_item.done", output_index=0, item=final["output"][0])
            yield event("response.completed", response=final)

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return router

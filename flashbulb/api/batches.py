"""The Gemini Batch API: `models/{model}:batchGenerateContent` with inline requests or a JSONL file,
and `batches/{id}` get, list, cancel and delete, in the shapes google-genai's `client.batches`
sends and parses. Each item is a generateContent request, translated by gemini.py; jobs/ stores
and runs them.

A batch answers as a long-running operation: `{"name": "batches/ID", "metadata": {..., "state":
"BATCH_STATE_RUNNING", "batchStats": {...}}, "done": false}`; once done, the results are in
`metadata.output` (and `response`): `inlinedResponses` for inline input, `responsesFile` (a
JSONL file of `{"key", "response"}` or `{"key", "error"}` lines, in input order) for file input.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

from fastapi import APIRouter, Request
from pydantic import ValidationError

from flashbulb.api.errors import GOOGLE_STATUS, describe_validation
from flashbulb.api.files import page_offset, page_size, timestamp
from flashbulb.api.gemini import Wire, parse_body, to_image_request, to_response
from flashbulb.api.serving import Authenticated
from flashbulb.config import Settings
from flashbulb.engine.types import Caller, ImageRequest
from flashbulb.errors import ErrorKind, FlashbulbError, invalid
from flashbulb.gateway import accounts
from flashbulb.gateway.gateway import Gateway, Served
from flashbulb.jobs import queue
from flashbulb.jobs.files import FileStore, new_id
from flashbulb.jobs.runner import BatchRunner
from flashbulb.parsing import load_json

STATES = {
    queue.PENDING: "BATCH_STATE_PENDING",
    queue.RUNNING: "BATCH_STATE_RUNNING",
    queue.SUCCEEDED: "BATCH_STATE_SUCCEEDED",
    queue.FAILED: "BATCH_STATE_FAILED",
    queue.CANCELLED: "BATCH_STATE_CANCELLED",
}
_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main."


# ---- one item: the stored generateContent request in, its response or error out ----


class GeminiItemCodec:
    def __init__(self, settings: Settings):
        self.settings = settings

    def request(self, payload: str, *, model: str, caller: Caller, request_id: str) -> ImageRequest:
        return to_image_request(
            parse_body(payload.encode()),
            model=model,
            caller=caller,
            request_id=request_id,
            max_pixels=self.settings.max_input_pixels,
            max_images=self.settings.max_input_images,
        )

    def response(self, request: ImageRequest, served: Served) -> dict:
        return to_response(request, served)

    def error(self, error: FlashbulbError) -> dict:
        code, status = GOOGLE_STATUS[error.kind]
        return {"code": code, "message": error.message, "status": status}


# ---- the create request ----


class InlinedRequest(Wire):
    request: dict[str, Any] = {}
    metadata: dict[str, Any] | None = None


class InlinedRequests(Wire):
    requests: list[InlinedRequest] = []


class InputConfig(Wire):
    requests: InlinedRequests | None = None
    file_name: str | None = None


class BatchSpec(Wire):
    display_name: str = ""
    input_config: InputConfig | None = None


def parse_create(body: bytes) -> BatchSpec:
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise invalid('Invalid JSON payload received: expected {"batch": {"inputConfig": ...}}')
    try:
        spec = BatchSpec.model_validate(payload.get("batch", payload))
    except ValidationError as exc:
        raise invalid(describe_validation(exc.errors())) from exc
    config = spec.input_config
    if config is None or (config.file_name is None) == (config.requests is None):
        raise invalid("batch.inputConfig needs exactly one of requests.requests (inline) or fileName (files/...)")
    if len(spec.display_name) > 512:
        raise invalid("batch.displayName must be at most 512 characters")
    return spec


def inline_items(requests: InlinedRequests) -> Iterator[queue.NewItem]:
    for position, item in enumerate(requests.requests):
        yield queue.NewItem(request=json.dumps(item.request), key=str(position), labels=item.metadata)


def jsonl_items(handle: BinaryIO, file_name: str) -> Iterator[queue.NewItem]:
    """One item per non-blank line: {"key": ..., "request": {GenerateContentRequest}}. A line that is
    not such an object fails the whole create (nothing is stored); a request that is wrong inside
    (bad base64, no contents) is that item's error when it runs."""
    position = 0
    for number, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        try:
            line = load_json(raw)
        except FlashbulbError as exc:
            raise invalid(f"{file_name} line {number}: {exc.message}") from exc
        if not isinstance(line, dict) or not isinstance(line.get("request"), dict):
            raise invalid(f'{file_name} line {number}: expected {{"key": ..., "request": {{"contents": ...}}}}')
        key = line.get("key", str(position))
        yield queue.NewItem(request=json.dumps(line["request"]), key=key if isinstance(key, str) else json.dumps(key))
        position += 1


# ---- the batch resource ----


def batch_resource(batch: queue.BatchInfo, output: dict | None) -> dict[str, Any]:
    name = f"batches/{batch.id}"
    metadata: dict[str, Any] = {
        "@type": _TYPE + "GenerateContentBatch",
        "name": name,
        "model": f"models/{batch.model}",
        "displayName": batch.display_name,
        "createTime": timestamp(batch.created_at),
        "updateTime": timestamp(batch.updated_at),
        "batchStats": {  # int64 counts: strings in Google's JSON
            "requestCount": str(batch.stats.total),
            "successfulRequestCount": str(batch.stats.succeeded),
            "failedRequestCount": str(batch.stats.failed),
            "pendingRequestCount": str(batch.stats.pending),
        },
        "state": STATES[batch.state],
    }
    if batch.stats.running is not None:  # not Google's: the pending requests a server is running now
        metadata["flashbulb"] = {"runningRequestCount": str(batch.stats.running)}
    if batch.input_file:
        metadata["inputConfig"] = {"fileName": batch.input_file}
    if batch.ended_at:
        metadata["endTime"] = timestamp(batch.ended_at)
    operation: dict[str, Any] = {"name": name, "metadata": metadata, "done": batch.ended}
    if output is not None:
        metadata["output"] = output
        operation["response"] = {"@type": _TYPE + "GenerateContentBatchOutput", **output}
    return operation


def batch_output(gateway: Gateway, batch: queue.BatchInfo, *, inline: bool = True) -> dict | None:
    """The results of a finished batch: the responses file's name, or every inline response in order."""
    if not batch.ended:
        return None
    if batch.responses_file:
        return {"responsesFile": batch.responses_file}
    if batch.input_file or not inline:
        return None
    responses = []
    for _key, labels, result in queue.results(gateway.db, batch.id):
        entry = json.loads(result)
        if labels:
            entry["metadata"] = labels
        responses.append(entry)
    return {"inlinedResponses": {"inlinedResponses": responses}}


# ---- routes ----


def build_router(gateway: Gateway, files: FileStore, runner: BatchRunner) -> APIRouter:
    router = APIRouter()
    registry = gateway.engine.registry
    db = gateway.db

    @router.post("/models/{model}:batchGenerateContent")
    async def create_batch(request: Request, caller: Authenticated, model: str) -> dict:
        entry = registry.resolve(model)
        accounts.check_scope(caller, model, entry.name)  # a key scoped to other models can't batch them either
        if not entry.installed():
            raise FlashbulbError(
                ErrorKind.FAILED_PRECONDITION, f"{entry.name} is not installed here; see `flashbulb pull {entry.name}`."
            )
        spec = await asyncio.to_thread(parse_create, await request.body())
        config = spec.input_config
        assert config is not None
        batch_id = new_id()

        def store() -> None:
            create = functools.partial(
                queue.create,
                db,
                batch_id,
                account_id=caller.account_id,
                key_id=caller.key_id,
                model=entry.name,
                display_name=spec.display_name,
                max_items=gateway.settings.max_batch_items,
                max_open=gateway.settings.max_open_batches,
            )
            if config.file_name is None:
                assert config.requests is not None
                create(input_file=None, items=inline_items(config.requests))
                return
            file_id = config.file_name.removeprefix("files/")
            _info, handle = files.open(caller.account_id, file_id)
            with handle:
                create(input_file=f"files/{file_id}", items=jsonl_items(handle, f"files/{file_id}"))

        await asyncio.to_thread(store)
        runner.wake()
        return batch_resource(await asyncio.to_thread(queue.get, db, caller.account_id, batch_id), None)

    @router.get("/batches")
    async def list_batches(request: Request, caller: Authenticated, pageSize: int | None = None, pageToken: str = "") -> dict:
        offset = page_offset(pageToken)
        found, more = await asyncio.to_thread(queue.list_batches, db, caller.account_id, offset=offset, limit=page_size(pageSize))
        # Listings leave inline responses out (they can be large): get the batch for them.
        body: dict[str, Any] = {"operations": [batch_resource(b, batch_output(gateway, b, inline=False)) for b in found]}
        if more:
            body["nextPageToken"] = str(offset + len(found))
        return body

    @router.get("/batches/{batch_id}")
    async def get_batch(request: Request, caller: Authenticated, batch_id: str) -> dict:
        batch = await asyncio.to_thread(queue.get, db, caller.account_id, batch_id)
        return batch_resource(batch, await asyncio.to_thread(batch_output, gateway, batch))

    @router.post("/batches/{batch_id}:cancel")
    async def cancel_batch(request: Request, caller: Authenticated, batch_id: str) -> dict:
        await asyncio.to_thread(queue.cancel, db, caller.account_id, batch_id)
        await runner.end_if_done(batch_id)
        return {}

    @router.delete("/batches/{batch_id}")
    async def delete_batch(request: Request, caller: Authenticated, batch_id: str) -> dict:
        await asyncio.to_thread(queue.cancel, db, caller.account_id, batch_id, delete=True)
        await runner.end_if_done(batch_id)
        return {}

    return router

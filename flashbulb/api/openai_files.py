"""The OpenAI Files API (`/v1/files`) over the one file store Gemini's Files API uses: an image
uploaded here is an `input_image` `file_id` for the Responses API, and a Gemini caller of the same
account sees it as `files/<id>`. google-genai 3.x calls Gemini's Files API under /v1 as well, so
these routes match only OpenAI callers (a bearer token, no Gemini key) and come first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from flashbulb.api.files import stream_file
from flashbulb.api.openai import OpenAIRoute
from flashbulb.api.serving import Authenticated
from flashbulb.errors import invalid
from flashbulb.gateway.gateway import Gateway
from flashbulb.jobs.files import FileInfo, FileStore, new_id

# What files are for here: the images an image call reads. OpenAI's other purposes (batch,
# fine-tune, assistants) are features flashbulb doesn't have, so they are refused by name.
PURPOSES = ("vision", "user_data")
CHUNK = 8 * 1024 * 1024
MAX_LIST = 10_000  # OpenAI's own most per page


def epoch(when: dt.datetime) -> int:
    return int(when.replace(tzinfo=dt.UTC).timestamp())


def file_object(info: FileInfo) -> dict[str, Any]:
    return {
        "id": info.name,
        "object": "file",
        "bytes": info.size_bytes,
        "created_at": epoch(info.created_at),
        "expires_at": epoch(info.expires_at),
        "filename": info.display_name or info.name,
        "purpose": "vision" if info.mime_type.startswith("image/") else "user_data",
        "status": "processed",
    }


def build_router(gateway: Gateway, files: FileStore) -> APIRouter:
    router = APIRouter(route_class=OpenAIRoute)

    @router.post("/files")
    async def create(request: Request, caller: Authenticated) -> dict:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise invalid("files.create takes multipart/form-data: a `file` and its `purpose`.", param="file")
        form = await request.form(max_files=1, max_fields=10)
        try:
            upload, purpose = form.get("file"), form.get("purpose")
            if not isinstance(upload, UploadFile):
                raise invalid("'file' is required: the file to upload.", param="file")
            if purpose not in PURPOSES:
                raise invalid(
                    f"purpose must be one of {', '.join(PURPOSES)} (files for image inputs); {purpose!r} was sent.",
                    param="purpose",
                )
            first = await upload.read(CHUNK)
            if not first:
                raise invalid("the file is empty", param="file")
            _name, token = await asyncio.to_thread(  # the file's name comes back in its object
                files.start_upload,
                caller.account_id,
                mime_type=upload.content_type or "application/octet-stream",
                size_bytes=upload.size,
                display_name=upload.filename or "",
                name=f"file-{new_id(24)}",
            )
            offset, chunk = 0, first
            while True:
                following = await upload.read(CHUNK)
                progress = await asyncio.to_thread(files.append, token, offset, chunk, finalize=not following)
                if progress.file is not None:
                    return file_object(progress.file)
                offset, chunk = offset + len(chunk), following
        finally:
            await form.close()

    @router.get("/files")
    async def list_files(request: Request, caller: Authenticated, limit: int = MAX_LIST, after: str = "") -> dict:
        if not 1 <= limit <= MAX_LIST:
            raise invalid(f"limit must be between 1 and {MAX_LIST}", param="limit")
        # Newest first, like OpenAI's; `after` is the last id of the previous page (an account's
        # files are bounded by its quota, so finding it by walking is cheap).
        infos, more = await asyncio.to_thread(files.list, caller.account_id, offset=0, limit=MAX_LIST)
        names = [info.name for info in infos]
        start = names.index(after) + 1 if after in names else 0
        page = infos[start : start + limit]
        return {
            "object": "list",
            "data": [file_object(info) for info in page],
            "has_more": more or start + limit < len(infos),
            "first_id": page[0].name if page else None,
            "last_id": page[-1].name if page else None,
        }

    @router.get("/files/{file_id}")
    async def retrieve(request: Request, caller: Authenticated, file_id: str) -> dict:
        return file_object(await asyncio.to_thread(files.get, caller.account_id, file_id))

    @router.get("/files/{file_id}/content")
    async def content(request: Request, caller: Authenticated, file_id: str) -> StreamingResponse:
        return await stream_file(files, caller.account_id, file_id, attachment=False)

    @router.delete("/files/{file_id}")
    async def delete(request: Request, caller: Authenticated, file_id: str) -> dict:
        await asyncio.to_thread(files.delete, caller.account_id, file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    return router

"""The Gemini Files API: resumable uploads (what google-genai's `client.files.upload` speaks), get,
list, delete and download. Only translation lives here; jobs/files.py keeps the bytes and rows.

The upload protocol: `POST /upload/v1beta/files` with `X-Goog-Upload-Protocol: resumable` and
`X-Goog-Upload-Command: start` answers with an `X-Goog-Upload-URL`; chunks are POSTed there with
`X-Goog-Upload-Command: upload` (the last one `upload, finalize`) and `X-Goog-Upload-Offset`, and
each answer says `X-Goog-Upload-Status: active`, or `final` with `{"file": ...}`. The upload URL
is its own credential (the SDK sends no API key with chunks), so its id is a 256-bit secret.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from flashbulb.api.errors import error_response
from flashbulb.api.serving import Authenticated, api_key_of
from flashbulb.errors import FlashbulbError, invalid
from flashbulb.gateway.gateway import Gateway
from flashbulb.jobs.files import FileInfo, FileStore, OffsetMismatch
from flashbulb.parsing import load_json, whole_number

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100


def timestamp(when: dt.datetime) -> str:
    """RFC 3339 in UTC, as Google's APIs write times (stored naive UTC)."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_resource(info: FileInfo, base_url: str, version: str) -> dict[str, Any]:
    base = base_url.rstrip("/")
    body: dict[str, Any] = {
        "name": f"files/{info.name}",
        "mimeType": info.mime_type,
        "sizeBytes": str(info.size_bytes),  # int64: a string in Google's JSON
        "createTime": timestamp(info.created_at),
        "updateTime": timestamp(info.updated_at),
        "expirationTime": timestamp(info.expires_at),
        "sha256Hash": base64.b64encode(bytes.fromhex(info.sha256)).decode(),  # proto bytes: base64
        "uri": f"{base}/{version}/files/{info.name}",
        "state": "ACTIVE",
        "source": "GENERATED" if info.source == "generated" else "UPLOADED",
    }
    if info.display_name:
        body["displayName"] = info.display_name
    if info.source == "generated":  # the SDK downloads only files that have a downloadUri
        body["downloadUri"] = f"{base}/download/{version}/files/{info.name}:download?alt=media"
    return body


def page_offset(token: str) -> int:
    return whole_number(token, "pageToken", param="pageToken") if token else 0


def page_size(size: int | None) -> int:
    return min(MAX_PAGE_SIZE, max(1, size or DEFAULT_PAGE_SIZE))


def _commands(request: Request) -> set[str]:
    header = request.headers.get("x-goog-upload-command", "")
    return {c.strip().lower() for c in header.split(",") if c.strip()}


def _int_header(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    return None if value is None else whole_number(value, f"{name} (bytes)")


def build_upload_router(gateway: Gateway, files: FileStore, version: str) -> APIRouter:
    """Routes under /upload/{version}: starting an upload and sending its chunks."""
    router = APIRouter()

    @router.post("/files")
    async def upload(request: Request, upload_id: str = "") -> Response:
        if not upload_id:
            return await start(request)
        try:
            return await chunk(request, upload_id)
        except FlashbulbError as error:
            # Every answer to a chunk says where the upload stands: the SDK retries an answer without it.
            response = error_response(error, request)
            if isinstance(error, OffsetMismatch):  # the upload goes on from where it stands
                response.headers["x-goog-upload-status"] = "active"
                response.headers["x-goog-upload-size-received"] = str(error.received)
            else:
                response.headers["x-goog-upload-status"] = "final"
            return response

    async def start(request: Request) -> Response:
        caller = await gateway.authenticate(api_key_of(request))
        protocol = request.headers.get("x-goog-upload-protocol", "").lower()
        if protocol != "resumable" or _commands(request) != {"start"}:
            raise invalid("start an upload with X-Goog-Upload-Protocol: resumable and X-Goog-Upload-Command: start")
        body = await request.body()
        payload = load_json(body) if body.strip() else {}
        meta = payload.get("file") if isinstance(payload, dict) else None
        meta = {} if meta is None else meta
        shape = 'the upload\'s body must be JSON like {"file": {"displayName": "...", "mimeType": "...", "name": "files/..."}}'
        if not isinstance(meta, dict):
            raise invalid(shape)
        for field in ("name", "displayName", "display_name", "mimeType", "mime_type"):
            if meta.get(field) is not None and not isinstance(meta[field], str):
                raise invalid(f"file.{field} must be a string; {shape}")
        size = _int_header(request, "x-goog-upload-header-content-length")
        declared = meta.get("sizeBytes", meta.get("size_bytes"))
        if size is None and declared is not None:
            size = whole_number(str(declared), "file.sizeBytes")
        mime_type = (
            request.headers.get("x-goog-upload-header-content-type") or meta.get("mimeType") or meta.get("mime_type") or ""
        )
        _, token = await asyncio.to_thread(
            files.start_upload,
            caller.account_id,
            mime_type=mime_type,
            size_bytes=size,
            display_name=str(meta.get("displayName") or meta.get("display_name") or ""),
            name=meta.get("name"),
        )
        upload_url = f"{str(request.base_url).rstrip('/')}/upload/{version}/files?upload_id={token}&upload_protocol=resumable"
        headers = {"x-goog-upload-url": upload_url, "x-goog-upload-status": "active", "x-goog-upload-size-received": "0"}
        return JSONResponse({}, headers=headers)

    async def chunk(request: Request, token: str) -> Response:
        commands = _commands(request)
        if commands == {"query"}:
            received = await asyncio.to_thread(files.received, token)
            return Response(headers={"x-goog-upload-status": "active", "x-goog-upload-size-received": str(received)})
        if commands == {"cancel"}:
            await asyncio.to_thread(files.cancel, token)
            return Response(headers={"x-goog-upload-status": "cancelled"})
        if not commands or not commands <= {"upload", "finalize"}:
            raise invalid("X-Goog-Upload-Command must be upload, 'upload, finalize', finalize, query or cancel")
        offset = _int_header(request, "x-goog-upload-offset")
        if offset is None:
            raise invalid("a chunk needs X-Goog-Upload-Offset: the number of bytes sent before it")
        data = await request.body() if "upload" in commands else b""
        progress = await asyncio.to_thread(files.append, token, offset, data, finalize="finalize" in commands)
        if progress.file is None:
            return Response(headers={"x-goog-upload-status": "active", "x-goog-upload-size-received": str(progress.received)})
        body = {"file": file_resource(progress.file, str(request.base_url), version)}
        return JSONResponse(
            body, headers={"x-goog-upload-status": "final", "x-goog-upload-size-received": str(progress.received)}
        )

    return router


async def stream_file(files: FileStore, account_id: int, name: str, *, attachment: bool) -> StreamingResponse:
    """A stored file's bytes, read a MiB at a time (Gemini's download, OpenAI's files.content)."""
    info, handle = await asyncio.to_thread(files.open, account_id, name)

    def chunks():  # a sync generator: Starlette iterates it in a thread
        with handle:
            while block := handle.read(1 << 20):
                yield block

    headers = {"content-length": str(info.size_bytes)}
    if attachment:
        headers["content-disposition"] = f'attachment; filename="{info.name}"'
    return StreamingResponse(chunks(), media_type=info.mime_type or "application/octet-stream", headers=headers)


def build_router(gateway: Gateway, files: FileStore, version: str) -> APIRouter:
    """Routes under /{version}: file metadata, listing, deletion and download."""
    router = APIRouter()

    async def download(request: Request, caller: Authenticated, file_id: str) -> StreamingResponse:
        return await stream_file(files, caller.account_id, file_id, attachment=True)

    # Before /files/{file_id}: that pattern would also match "ID:download".
    router.add_api_route("/files/{file_id}:download", download, methods=["GET"])

    @router.get("/files/{file_id}")
    async def get_file(request: Request, caller: Authenticated, file_id: str) -> dict:
        info = await asyncio.to_thread(files.get, caller.account_id, file_id)
        return file_resource(info, str(request.base_url), version)

    @router.get("/files")
    async def list_files(request: Request, caller: Authenticated, pageSize: int | None = None, pageToken: str = "") -> dict:
        offset = page_offset(pageToken)
        found, more = await asyncio.to_thread(files.list, caller.account_id, offset=offset, limit=page_size(pageSize))
        body: dict[str, Any] = {"files": [file_resource(f, str(request.base_url), version) for f in found]}
        if more:
            body["nextPageToken"] = str(offset + len(found))
        return body

    @router.delete("/files/{file_id}")
    async def delete_file(request: Request, caller: Authenticated, file_id: str) -> dict:
        await asyncio.to_thread(files.delete, caller.account_id, file_id)
        return {}

    return router


def build_download_router(gateway: Gateway, files: FileStore, version: str) -> APIRouter:
    """/download/{version}/files/ID:download, the downloadUri Google gives out: the same download."""
    router = APIRouter()
    for route in build_router(gateway, files, version).routes:
        if getattr(route, "path", "") == "/files/{file_id}:download":
            router.routes.append(route)
    return router

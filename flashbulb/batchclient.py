"""A flashbulb server's Files and Batch APIs (what `flashbulb batch` uses): the same HTTP requests
google-genai sends, over flashbulb.client, so the CLI needs no SDK. A failed call raises the
FlashbulbError the server answered (its kind's fixed_by tells the kinds of failure apart)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from flashbulb.client import Client
from flashbulb.errors import invalid

CHUNK_BYTES = 8 * 1024 * 1024  # google-genai's upload chunk; under the server's body limit
ENDED = {"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"}
API = "v1beta"


def batch_name(batch_id: str) -> str:
    return batch_id if batch_id.startswith("batches/") else f"batches/{batch_id}"


def check_jsonl(path: Path) -> int:
    """Count the requests in a batch input file; a line that is not {"key", "request"} is bad input."""
    count = 0
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise invalid(f"{path} line {number} is not JSON: {exc}") from exc
            if not isinstance(line, dict) or not isinstance(line.get("request"), dict):
                raise invalid(f'{path} line {number}: expected {{"key": ..., "request": {{"contents": ...}}}}')
            count += 1
    if count == 0:
        raise invalid(f"{path} has no requests")
    return count


def stats(batch: dict) -> tuple[int, int, int, int]:
    """(requests, succeeded, failed, pending) from a batch resource."""
    counts = batch.get("metadata", {}).get("batchStats", {})
    get = lambda name: int(counts.get(name, 0) or 0)  # noqa: E731 - int64s arrive as strings
    return get("requestCount"), get("successfulRequestCount"), get("failedRequestCount"), get("pendingRequestCount")


def running(batch: dict) -> int:
    """Of the pending requests, those a server is running now (flashbulb's, in a batch got alone)."""
    return int(batch.get("metadata", {}).get("flashbulb", {}).get("runningRequestCount", 0) or 0)


def state(batch: dict) -> str:
    return batch.get("metadata", {}).get("state", "BATCH_STATE_UNSPECIFIED")


class BatchClient:
    def __init__(self, server: str, key: str, timeout: float = 120.0, transport: httpx.BaseTransport | None = None):
        self.client = Client(server, key, timeout=timeout, transport=transport)

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, url, **kwargs)

    def upload(self, path: Path, mime_type: str = "application/jsonl") -> str:
        """The resumable protocol: start, then chunks at their offsets, the last one finalizing."""
        size = path.stat().st_size
        started = self._call(
            "POST",
            f"/upload/{API}/files",
            headers={
                "x-goog-upload-protocol": "resumable",
                "x-goog-upload-command": "start",
                "x-goog-upload-header-content-length": str(size),
                "x-goog-upload-header-content-type": mime_type,
            },
            json={"file": {"displayName": path.name, "mimeType": mime_type}},
        )
        url = started.headers["x-goog-upload-url"]
        offset = 0
        with open(path, "rb") as data:
            while True:
                chunk = data.read(CHUNK_BYTES)
                last = offset + len(chunk) >= size
                response = self._call(
                    "POST",
                    url,
                    content=chunk,
                    headers={
                        "x-goog-upload-command": "upload, finalize" if last else "upload",
                        "x-goog-upload-offset": str(offset),
                    },
                )
                offset += len(chunk)
                if last:
                    return response.json()["file"]["name"]

    def create(self, model: str, file_name: str, display_name: str = "") -> dict:
        model = model.removeprefix("models/")
        body = {"batch": {"displayName": display_name, "inputConfig": {"fileName": file_name}}}
        return self._call("POST", f"/{API}/models/{model}:batchGenerateContent", json=body).json()

    def get(self, batch_id: str) -> dict:
        return self._call("GET", f"/{API}/{batch_name(batch_id)}").json()

    def cancel(self, batch_id: str) -> None:
        self._call("POST", f"/{API}/{batch_name(batch_id)}:cancel")

    def list(self, limit: int) -> list[dict]:
        found: list[dict] = []
        token = ""
        while len(found) < limit:
            page = self._call("GET", f"/{API}/batches", params={"pageSize": min(100, limit), "pageToken": token}).json()
            found.extend(page.get("operations", []))
            token = page.get("nextPageToken", "")
            if not token:
                break
        return found[:limit]

    def results(self, batch: dict, out: BinaryIO) -> int:
        """Write a finished batch's results as JSONL ({"key", "response"} or {"key", "error"}), in input order."""
        output = batch.get("metadata", {}).get("output") or {}
        if "responsesFile" in output:
            name = output["responsesFile"].removeprefix("files/")
            lines = 0
            with self.client.stream("GET", f"/download/{API}/files/{name}:download", params={"alt": "media"}) as response:
                for block in response.iter_bytes():
                    out.write(block)
                    lines += block.count(b"\n")
            return lines
        lines = 0
        for line in _inline_lines(output.get("inlinedResponses", {}).get("inlinedResponses", [])):
            out.write(line)
            lines += 1
        return lines


def _inline_lines(responses: list[dict]) -> Iterator[bytes]:
    for index, entry in enumerate(responses):
        key = (entry.get("metadata") or {}).get("key", str(index))
        body = {k: v for k, v in entry.items() if k in ("response", "error")}
        yield json.dumps({"key": key, **body}, separators=(",", ":")).encode() + b"\n"

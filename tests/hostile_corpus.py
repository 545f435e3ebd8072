"""A generated corpus of hostile and odd requests, for tests/test_errors.py: every field of every
customer endpoint, through both wire formats, with the values an attacker or a broken client sends.
Each case must be answered with a 4xx in the caller's shape (or a free NO_IMAGE), charge nothing and
leave the server up. A case is (name, method, path, how it is sent, "google" | "openai")."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

from conftest import astronaut, png_bytes
from PIL import Image

GEN = "/v1beta/models/flashbulb-photo:generateContent"
COUNT = "/v1beta/models/flashbulb-photo:countTokens"
BATCH = "/v1beta/models/flashbulb-photo:batchGenerateContent"
OPENAI_GEN = "/v1/images/generations"
OPENAI_EDIT = "/v1/images/edits"
RESPONSES = "/v1/responses"
START_UPLOAD = {"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start"}

PHOTO = png_bytes(astronaut(32))
PHOTO_B64 = base64.b64encode(PHOTO).decode()


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header claiming a size, with a few bytes of data: a bomb read from its header."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


_small = Image.new("RGB", (32, 32), (120, 80, 60))
# Images no model may take: formats outside PNG/JPEG/WebP, broken files, bombs, too small to edit.
BAD_IMAGES: dict[str, bytes] = {
    "gif": _encoded(_small, "GIF"),
    "bmp": _encoded(_small, "BMP"),
    "tiff": _encoded(_small, "TIFF"),
    "ico": _encoded(_small, "ICO"),
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"><rect width="32" height="32"/></svg>',
    "pdf": b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF",
    "html": b"<html><body>not an image</body></html>",
    "empty": b"",
    "one-byte": b"\x89",
    "png-signature-only": b"\x89PNG\r\n\x1a\n",
    "truncated-png": PHOTO[: len(PHOTO) // 2],
    "png-bad-crc": PHOTO[:29] + bytes([PHOTO[29] ^ 0xFF]) + PHOTO[30:],
    "truncated-jpeg": _encoded(astronaut(32), "JPEG")[:300],
    "png-claiming-100000-wide": _png_claiming(100_000, 10),
    "png-claiming-30000-square": _png_claiming(30_000, 30_000),
    "png-claiming-zero-height": _png_claiming(10, 0),
    "1x1-png": png_bytes(Image.new("RGB", (1, 1))),
    "4x4-png": png_bytes(Image.new("RGB", (4, 4))),
}


def _gemini_with(image: bytes, mime: str = "image/png", text: str = "make it brighter") -> dict:
    return {
        "contents": [{"parts": [{"text": text}, {"inlineData": {"mimeType": mime, "data": base64.b64encode(image).decode()}}]}]
    }


def _gemini_config(**config) -> dict:
    return {**_gemini_with(PHOTO), "generationConfig": config}


def _responses_with(image: bytes, **tool) -> dict:
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    return {
        "input": [
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "make it brighter"}, {"type": "input_image", "image_url": url}],
            }
        ],
        "tools": [{"type": "image_generation", "model": "flashbulb-photo", **tool}],
    }


def _edit_form(image: bytes | None = PHOTO, **fields) -> dict:
    files = [("image", ("photo.png", image, "image/png"))] if image is not None else []
    return {"files": files, "data": {"prompt": "make it brighter", "model": "flashbulb-photo", **fields}}


def cases() -> list[tuple[str, str, str, dict, str]]:
    found: list[tuple[str, str, str, dict, str]] = []

    def add(name: str, method: str, path: str, send: dict, shape: str) -> None:
        found.append((name, method, path, send, shape))

    # Every bad image through each way an image arrives.
    for name, data in BAD_IMAGES.items():
        add(f"gemini-inline-{name}", "POST", GEN, {"json": _gemini_with(data)}, "google")
        add(f"openai-edit-{name}", "POST", OPENAI_EDIT, _edit_form(data), "openai")
        add(f"responses-image-{name}", "POST", RESPONSES, {"json": _responses_with(data)}, "openai")
        add(
            f"openai-json-edit-{name}",
            "POST",
            OPENAI_EDIT,
            {
                "json": {
                    "prompt": "make it brighter",
                    "model": "flashbulb-photo",
                    "images": [{"image_url": "data:image/png;base64," + base64.b64encode(data).decode()}],
                }
            },
            "openai",
        )

    # Gemini generateContent: each field with values of the wrong kind or out of range.
    for name, body in {
        "contents-missing": {},
        "contents-empty": {"contents": []},
        "contents-a-string": {"contents": "make it brighter"},
        "contents-a-number": {"contents": 5},
        "contents-null-turn": {"contents": [None]},
        "parts-a-string": {"contents": [{"parts": "x"}]},
        "parts-empty": {"contents": [{"parts": []}]},
        "part-text-a-number": {"contents": [{"parts": [{"text": 5}]}]},
        "part-text-a-list": {"contents": [{"parts": [{"text": ["a"]}]}]},
        "last-turn-is-the-model": {"contents": [{"role": "model", "parts": [{"text": "hi"}]}]},
        "last-turn-role-a-number": {"contents": [{"role": 7, "parts": [{"text": "hi"}]}]},
        "inline-data-missing-data": {"contents": [{"parts": [{"text": "x"}, {"inlineData": {"mimeType": "image/png"}}]}]},
        "inline-data-a-string": {"contents": [{"parts": [{"text": "x"}, {"inlineData": "abc"}]}]},
        "inline-data-not-base64": {
            "contents": [{"parts": [{"text": "x"}, {"inlineData": {"mimeType": "image/png", "data": "!!!!"}}]}]
        },
        "inline-data-text-mime": {
            "contents": [{"parts": [{"text": "x"}, {"inlineData": {"mimeType": "text/plain", "data": PHOTO_B64}}]}]
        },
        "inline-data-video-mime": {
            "contents": [{"parts": [{"text": "x"}, {"inlineData": {"mimeType": "video/mp4", "data": PHOTO_B64}}]}]
        },
        "file-data-empty-uri": {"contents": [{"parts": [{"text": "x"}, {"fileData": {"fileUri": ""}}]}]},
        "file-data-uri-a-number": {"contents": [{"parts": [{"text": "x"}, {"fileData": {"fileUri": 5}}]}]},
        "file-data-traversal": {"contents": [{"parts": [{"text": "x"}, {"fileData": {"fileUri": "files/../../etc/passwd"}}]}]},
        "file-data-41-chars": {"contents": [{"parts": [{"text": "x"}, {"fileData": {"fileUri": "files/" + "a" * 41}}]}]},
        "file-data-http": {"contents": [{"parts": [{"text": "x"}, {"fileData": {"fileUri": "http://169.254.169.254/x"}}]}]},
        "system-instruction-a-string": {**_gemini_with(PHOTO), "systemInstruction": "be nice"},
        "system-instruction-40k": {**_gemini_with(PHOTO), "systemInstruction": {"parts": [{"text": "x" * 40_000}]}},
        "generation-config-a-list": {**_gemini_with(PHOTO), "generationConfig": []},
        "seed-negative": _gemini_config(seed=-1),
        "seed-2-to-the-63": _gemini_config(seed=2**63),
        "seed-a-string": _gemini_config(seed="abc"),
        "seed-a-fraction": _gemini_config(seed=1.5),
        "candidate-count-5": _gemini_config(candidateCount=5),
        "candidate-count-negative": _gemini_config(candidateCount=-3),
        "candidate-count-2-on-photo": _gemini_config(candidateCount=2),
        "modalities-audio": _gemini_config(responseModalities=["AUDIO"]),
        "modalities-text-only": _gemini_config(responseModalities=["TEXT"]),
        "modalities-a-string": _gemini_config(responseModalities="IMAGE"),
        "modalities-numbers": _gemini_config(responseModalities=[5]),
        "aspect-ratio-0-0": _gemini_config(imageConfig={"aspectRatio": "0:0"}),
        "aspect-ratio-1-0": _gemini_config(imageConfig={"aspectRatio": "1:0"}),
        "aspect-ratio-99-1": _gemini_config(imageConfig={"aspectRatio": "99:1"}),
        "aspect-ratio-slash": _gemini_config(imageConfig={"aspectRatio": "16/9"}),
        "aspect-ratio-a-number": _gemini_config(imageConfig={"aspectRatio": 1.77}),
        "image-size-8K": _gemini_config(imageConfig={"imageSize": "8K"}),
        "image-size-a-number": _gemini_config(imageConfig={"imageSize": 2048}),
        "image-size-1024px": _gemini_config(imageConfig={"imageSize": "1024px"}),
        "image-config-a-string": _gemini_config(imageConfig="4K"),
        "prompt-40k": _gemini_with(PHOTO, text="brighter " * 4_500),
        "text-only-on-the-photo-model": {"contents": [{"parts": [{"text": "a cat on a skateboard"}]}]},
        "instruction-it-cannot-do": _gemini_with(PHOTO, text="turn her into a cartoon cat"),
        "upscale-9x": _gemini_with(PHOTO, text="upscale 9x"),
        "upscale-0x": _gemini_with(PHOTO, text="upscale 0x"),
        "resize-to-0x0": _gemini_with(PHOTO, text="resize to 0x0"),
        "resize-to-20000-wide": _gemini_with(PHOTO, text="resize to 20000 px wide"),
        "crop-to-0-9": _gemini_with(PHOTO, text="crop to 0:9"),
        "second-image-background-missing": _gemini_with(PHOTO, text="use the second photo as the background"),
    }.items():
        add(f"gemini-{name}", "POST", GEN, {"json": body}, "google")
        if name.startswith(("contents", "parts", "part-", "inline", "file-data", "last-turn")):
            add(f"count-tokens-{name}", "POST", COUNT, {"json": body}, "google")
    # A lone surrogate can only be sent as a JSON escape (no client can encode it as UTF-8).
    surrogate = json.dumps({**_gemini_with(PHOTO), "systemInstruction": {"parts": [{"text": "\udc00"}]}}).encode()
    add("gemini-lone-surrogate-in-system", "POST", GEN, {"content": surrogate}, "google")
    for model in ("no-such-model", "models%2F..", "flashbulb-photo%00", "x" * 300):
        add(
            f"gemini-model-name-{model[:20]}",
            "POST",
            f"/v1beta/models/{model}:generateContent",
            {"json": _gemini_with(PHOTO)},
            "google",
        )
    add("gemini-method-unknown", "POST", "/v1beta/models/flashbulb-photo:generateVideos", {"json": _gemini_with(PHOTO)}, "google")

    # OpenAI generations and edits: each option with values of the wrong kind or out of range.
    for name, options in {
        "prompt-missing": {},
        "prompt-empty": {"prompt": ""},
        "prompt-spaces": {"prompt": "   "},
        "prompt-a-number": {"prompt": 5},
        "prompt-a-list": {"prompt": ["a"]},
        "prompt-null": {"prompt": None},
        "prompt-40k": {"prompt": "x" * 40_000},
        "n-0": {"n": 0},
        "n-11": {"n": 11},
        "n-negative": {"n": -1},
        "n-a-string": {"n": "two"},
        "n-a-fraction": {"n": 1.5},
        "size-0x0": {"size": "0x0"},
        "size-16x0": {"size": "16x0"},
        "size-one-number": {"size": "1024"},
        "size-three-numbers": {"size": "1024x1024x3"},
        "size-negative": {"size": "-16x16"},
        "size-a-number": {"size": 1024},
        "size-past-3840": {"size": "4096x2304"},
        "size-past-8-megapixels": {"size": "3840x3840"},
        "size-1-to-4": {"size": "512x2048"},
        "size-not-16": {"size": "1000x1000"},
        "size-words": {"size": "large"},
        "quality-ultra": {"quality": "ultra"},
        "quality-a-number": {"quality": 5},
        "response-format-base64": {"response_format": "base64"},
        "output-format-gif": {"output_format": "gif"},
        "output-format-bmp": {"output_format": "bmp"},
        "compression-negative": {"output_compression": -1},
        "compression-101": {"output_compression": 101},
        "compression-a-string": {"output_compression": "high"},
        "background-red": {"background": "red"},
        "transparent-jpeg": {"background": "transparent", "output_format": "jpeg"},
        "moderation-off": {"moderation": "off"},
        "style-photo": {"style": "photo"},
        "partial-images-4": {"stream": True, "partial_images": 4},
        "partial-images-negative": {"stream": True, "partial_images": -1},
        "partial-images-without-stream": {"partial_images": 2},
        "stream-with-url": {"stream": True, "response_format": "url"},
        "stream-a-string": {"stream": "yes please"},
        "seed-a-string": {"seed": "abc"},
        "model-unknown": {"model": "gpt-image-9"},
        "model-a-number": {"model": 5},
    }.items():
        body = {"prompt": "a red fox", **options} if not name.startswith("prompt") else options
        add(f"openai-generate-{name}", "POST", OPENAI_GEN, {"json": body}, "openai")
    add("openai-generate-a-list-body", "POST", OPENAI_GEN, {"json": [{"prompt": "x"}]}, "openai")
    add("openai-generate-not-json", "POST", OPENAI_GEN, {"content": b"prompt=x"}, "openai")
    for name, form in {
        "no-image": _edit_form(None),
        "n-2-on-photo": _edit_form(n="2"),
        "n-0": _edit_form(n="0"),
        "size-bad": _edit_form(size="huge"),
        "quality-bad": _edit_form(quality="ultra"),
        "prompt-empty": _edit_form(prompt=""),
        "stream-and-url": _edit_form(stream="true", response_format="url"),
        "input-fidelity-max": _edit_form(input_fidelity="max"),
        "mask-on-photo": {
            **_edit_form(),
            "files": [
                ("image", ("p.png", PHOTO, "image/png")),
                ("mask", ("m.png", png_bytes(Image.new("RGBA", (32, 32))), "image/png")),
            ],
        },
        "mask-without-alpha": {
            **_edit_form(),
            "files": [("image", ("p.png", PHOTO, "image/png")), ("mask", ("m.png", PHOTO, "image/png"))],
        },
        "mask-wrong-size": {
            **_edit_form(),
            "files": [
                ("image", ("p.png", PHOTO, "image/png")),
                ("mask", ("m.png", png_bytes(Image.new("RGBA", (8, 8))), "image/png")),
            ],
        },
        "image-as-a-text-field": {
            "data": {"prompt": "x", "image": "not a file"},
            "files": [("other", ("o.txt", b"x", "text/plain"))],
        },
        "a-stray-file-field": {
            **_edit_form(),
            "files": [("image", ("p.png", PHOTO, "image/png")), ("prompt", ("p.txt", b"x", "text/plain"))],
        },
        "17-images": {**_edit_form(), "files": [("image[]", (f"{k}.png", PHOTO, "image/png")) for k in range(17)]},
        "three-images-on-photo": {**_edit_form(), "files": [("image[]", (f"{k}.png", PHOTO, "image/png")) for k in range(3)]},
    }.items():
        add(f"openai-edit-form-{name}", "POST", OPENAI_EDIT, form, "openai")
    for name, body in {
        "images-missing": {"prompt": "x"},
        "images-empty": {"prompt": "x", "images": []},
        "images-a-string": {"prompt": "x", "images": "a"},
        "image-file-id": {"prompt": "x", "images": [{"file_id": "file-123"}]},
        "image-url-http": {"prompt": "x", "images": [{"image_url": "https://x/a.png"}]},
        "image-url-a-number": {"prompt": "x", "images": [{"image_url": 5}]},
        "mask-a-string": {"prompt": "x", "images": [{"image_url": "data:image/png;base64," + PHOTO_B64}], "mask": "m"},
    }.items():
        add(f"openai-json-edit-{name}", "POST", OPENAI_EDIT, {"json": body}, "openai")

    # The Responses API's image tool.
    tool = [{"type": "image_generation", "model": "flashbulb-photo"}]
    for name, body in {
        "input-missing": {"tools": tool},
        "input-empty-list": {"input": [], "tools": tool},
        "input-a-number": {"input": 5, "tools": tool},
        "input-items-not-objects": {"input": ["hi"], "tools": tool},
        "content-a-number": {"input": [{"role": "user", "content": 5}], "tools": tool},
        "part-unknown-type": {"input": [{"role": "user", "content": [{"type": "input_audio"}]}], "tools": tool},
        "input-image-without-url": {"input": [{"role": "user", "content": [{"type": "input_image"}]}], "tools": tool},
        "input-image-file-id": {
            "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}],
            "tools": tool,
        },
        "tools-missing": {"input": "a cat"},
        "tools-empty": {"input": "a cat", "tools": []},
        "tools-web-search": {"input": "a cat", "tools": [{"type": "web_search"}]},
        "tools-a-string": {"input": "a cat", "tools": "image_generation"},
        "tool-size-bad": {"input": "a cat", "tools": [{"type": "image_generation", "size": "big"}]},
        "tool-quality-a-list": {"input": "a cat", "tools": [{"type": "image_generation", "quality": ["high"]}]},
        "tool-action-paint": {"input": "a cat", "tools": [{"type": "image_generation", "action": "paint"}]},
        "tool-model-unknown": {"input": "a cat", "tools": [{"type": "image_generation", "model": "gpt-image-9"}]},
        "tool-mask": {**_responses_with(PHOTO, input_image_mask={"image_url": "data:image/png;base64," + PHOTO_B64})},
        "tool-partial-images-9": {**_responses_with(PHOTO, partial_images=9), "stream": True},
        "previous-response-traversal": {"input": "sharper", "previous_response_id": "../../outputs/x", "tools": tool},
        "previous-response-200-chars": {"input": "sharper", "previous_response_id": "resp_" + "a" * 200, "tools": tool},
        "previous-response-a-number": {"input": "sharper", "previous_response_id": 5, "tools": tool},
        "echoed-call-not-base64": {
            "input": [{"type": "image_generation_call", "result": "!!!"}, {"role": "user", "content": "sharper"}],
            "tools": tool,
        },
        "echoed-call-not-an-image": {
            "input": [
                {"type": "image_generation_call", "result": base64.b64encode(b"hello").decode()},
                {"role": "user", "content": "sharper"},
            ],
            "tools": tool,
        },
        "text-only-on-photo": {"input": "a cat on a skateboard", "tools": tool},
        "stream-a-string": {"input": "a cat", "stream": "yes", "tools": tool},
    }.items():
        add(f"responses-{name}", "POST", RESPONSES, {"json": body}, "openai")

    # Batches, files, usage pages: shapes and page tokens.
    for name, body in {
        "empty": {},
        "batch-a-number": {"batch": 5},
        "input-config-a-string": {"batch": {"inputConfig": "x"}},
        "requests-a-string": {"batch": {"inputConfig": {"requests": {"requests": "x"}}}},
        "requests-empty": {"batch": {"inputConfig": {"requests": {"requests": []}}}},
        "request-not-an-object": {"batch": {"inputConfig": {"requests": {"requests": [5]}}}},
        "file-name-unknown": {"batch": {"inputConfig": {"fileName": "files/nope"}}},
        "file-name-a-number": {"batch": {"inputConfig": {"fileName": 5}}},
        "display-name-600": {
            "batch": {"displayName": "x" * 600, "inputConfig": {"requests": {"requests": [{"request": _gemini_with(PHOTO)}]}}}
        },
    }.items():
        add(f"batch-create-{name}", "POST", BATCH, {"json": body}, "google")
    for path in (
        "/v1beta/batches/nope",
        "/v1beta/batches/%00",
        "/v1beta/batches/" + "x" * 300,
        "/v1beta/files/nope",
        "/v1beta/files/" + "x" * 300,
        "/v1beta/files/..%2F..%2Fetc",
        "/download/v1beta/files/nope:download?alt=media",
    ):
        add(f"get-{path[:40]}", "GET", path, {}, "google")
    for path in ("/v1beta/files", "/v1beta/batches", "/flashbulb/account/usage", "/flashbulb/account/ledger", "/v1beta/models"):
        for token in ("-1", "abc", "1e9", "9" * 40, "%00", "%C2%B9"):
            param = "page_token" if path.startswith("/flashbulb/") else "pageToken"  # flashbulb's own API is snake_case
            add(f"page-token-{token[:8]}-{path}", "GET", f"{path}?{param}={token}", {}, "google")
    for query in ("limit=0", "limit=-5", "limit=abc", "limit=" + "9" * 30, "days=0", "days=-1", "days=100000", "days=x"):
        add(
            f"usage-{query[:16]}",
            "GET",
            f"/flashbulb/account/usage/summary?{query}" if query.startswith("days") else f"/flashbulb/account/usage?{query}",
            {},
            "google",
        )
    for name, body in {
        "file-a-list": {"file": []},
        "display-name-600": {"file": {"displayName": "x" * 600}},
        "size-negative": {"file": {"sizeBytes": "-5"}},
        "size-huge": {"file": {"sizeBytes": "9" * 30}},
        "size-past-the-limit": {"file": {"sizeBytes": str(3 * 1024**3)}},
        "name-upper-case": {"file": {"name": "files/ABC"}},
        "name-traversal": {"file": {"name": "files/../x"}},
        "name-41-chars": {"file": {"name": "files/" + "a" * 41}},
    }.items():
        add(f"upload-start-{name}", "POST", "/upload/v1beta/files", {"json": body, "headers": START_UPLOAD}, "google")
    add(
        "upload-chunk-unknown-id",
        "POST",
        "/upload/v1beta/files?upload_id=nope",
        {"content": b"x", "headers": {"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"}},
        "google",
    )
    add(
        "upload-command-unknown",
        "POST",
        "/upload/v1beta/files",
        {"json": {}, "headers": {"X-Goog-Upload-Command": "explode"}},
        "google",
    )
    for name, body in {
        "code-missing": {},
        "code-a-number": {"code": 5},
        "code-unknown": {"code": "FB-NOPE-NOPE"},
        "code-10k": {"code": "x" * 10_000},
        "code-a-list": {"code": ["a"]},
    }.items():
        add(f"redeem-{name}", "POST", "/flashbulb/account/redeem", {"json": body}, "google")
    for path in ("/admin/keys", "/admin/usage", "/admin/credits"):
        add(
            f"customer-on-{path}",
            "POST" if path == "/admin/credits" else "GET",
            path,
            {"json": {"account": "admin", "usd": "100"}} if path == "/admin/credits" else {},
            "google",
        )
    return found

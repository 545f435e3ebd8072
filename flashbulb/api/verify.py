"""`POST /flashbulb/verify`: was this image made by flashbulb, and by which call? Its content
credentials and its watermark (flashbulb/provenance/verify.py), for any key; the request id only
for the account that made the image, or an admin."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from flashbulb.api.gemini import decode_base64
from flashbulb.api.serving import Authenticated
from flashbulb.errors import invalid
from flashbulb.gateway.gateway import Gateway
from flashbulb.parsing import load_json
from flashbulb.provenance import verify

# The watermark decoder takes ~1 core-second a call on this machine's CPUs: two at once at most, so
# verification can't take the server's cores from the calls it serves.
_decoders = asyncio.Semaphore(2)


async def image_bytes(request: Request) -> bytes:
    """The image: multipart `image`, or JSON {"inlineData": {"mimeType", "data"}} as in a Gemini part."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise invalid("Send the image as the multipart file field 'image'.", param="image")
        return await upload.read()
    body = load_json(await request.body())
    inline = (body.get("inlineData") or body.get("inline_data")) if isinstance(body, dict) else None
    if not isinstance(inline, dict) or not isinstance(inline.get("data"), str):
        raise invalid(
            'Send {"inlineData": {"mimeType": "image/png", "data": "<base64>"}} or a multipart image.', param="inlineData"
        )
    return decode_base64(inline["data"], "inlineData")


def build_router(gateway: Gateway) -> APIRouter:
    router = APIRouter()
    anchor = gateway.provenance.identity.anchor_pem if gateway.provenance.identity else b""

    @router.post("/verify")
    async def verify_image(request: Request, caller: Authenticated) -> dict:
        data = await image_bytes(request)
        async with _decoders:
            return await asyncio.to_thread(
                verify.verify,
                data,
                db=gateway.db,
                caller=caller,
                trust_anchor_pem=anchor,
                max_pixels=gateway.settings.max_input_pixels,
            )

    return router

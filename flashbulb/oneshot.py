"""One request from the command line (`flashbulb generate | edit | restore`), run either in this
process on the local engine (no server, no credits: the operator's own machine) or against a
flashbulb server over its Gemini API with an API key (metered like any client)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import uuid
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from flashbulb.client import Client
from flashbulb.config import Settings
from flashbulb.engine.imageio import decode_image, encode
from flashbulb.engine.types import FinishReason, ImageRequest, ImageResult, JobContext
from flashbulb.errors import invalid
from flashbulb.provenance import Provenance, Sign, unsigned


@dataclasses.dataclass
class Ask:
    """What the user typed, before it becomes a request."""

    model: str
    prompt: str
    images: list[Path] = dataclasses.field(default_factory=list)
    aspect_ratio: str | None = None
    n: int = 1
    seed: int | None = None
    system: str = ""


@dataclasses.dataclass
class Answer:
    result: ImageResult
    charge_micros: int | None = None  # known only from a server
    sign: Sign = unsigned  # local runs: this data dir's content credentials
    encoded: list[bytes] = dataclasses.field(default_factory=list)  # from a server: its PNGs, signed, as sent


def read_images(paths: list[Path], max_pixels: int) -> list[Image.Image]:
    images = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise invalid(f"can't read {path}: {exc.strerror}") from exc
        images.append(decode_image(data, max_pixels=max_pixels, what=str(path)))
    return images


def run_local(ask: Ask, settings: Settings, on_progress: Callable[[float], None], on_loaded: Callable[[], None]) -> Answer:
    """Load the model in this process and run the request on it (no gateway, nothing charged)."""
    from flashbulb.engine.engine import Engine
    from flashbulb.engine.registry import Registry

    registry = Registry.default(settings)
    entry = registry.resolve(ask.model)
    provenance = Provenance(settings)
    request = ImageRequest(
        request_id=uuid.uuid4().hex,
        model=entry.name,
        prompt=ask.prompt,
        images=read_images(ask.images, settings.max_input_pixels),
        aspect_ratio=ask.aspect_ratio,
        n=ask.n,
        seed=ask.seed,
        system=ask.system,
        watermark=provenance.payload(),
    )
    entry.check(request)
    engine = Engine(registry, batch_window_s=0)
    try:
        engine.warm_up(entry.name)
        on_loaded()
        result = asyncio.run(engine.run(request, JobContext(on_progress=on_progress)))
    finally:
        engine.close()
    if result.watermark is not None:
        _record(settings, request, result)
    return Answer(result, sign=provenance.signer_for(request, result))


def _record(settings: Settings, request: ImageRequest, result: ImageResult) -> None:
    from flashbulb.billing import ledger
    from flashbulb.store import db as store

    database = store.connect(settings.database_url)
    try:
        store.migrate(database)
        usage = ledger.Usage(
            status="ok",
            finish_reason=result.finish_reason.value,
            input_images=len(request.images),
            input_pixels=request.input_pixels,
            output_images=len(result.images),
            output_pixels=result.output_pixels,
            quality=result.quality,
            watermark=result.watermark,
        )
        ledger.record_unbilled(database, request.request_id, request.model, usage)
    finally:
        database.dispose()


def run_remote(ask: Ask, server: str, key: str, max_pixels: int, timeout_s: float = 600) -> Answer:
    """The same request as a generateContent call to a flashbulb server."""
    parts: list[dict] = []
    for image in read_images(ask.images, max_pixels):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        parts.append({"inlineData": {"mimeType": "image/png", "data": base64.b64encode(buffer.getvalue()).decode()}})
    parts.append({"text": ask.prompt})
    config: dict = {"candidateCount": ask.n}
    if ask.seed is not None:
        config["seed"] = ask.seed
    if ask.aspect_ratio:
        config["imageConfig"] = {"aspectRatio": ask.aspect_ratio}
    body: dict = {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}
    if ask.system:
        body["systemInstruction"] = {"parts": [{"text": ask.system}]}
    client = Client(server, key, timeout=timeout_s)
    try:
        return _answer(client.request("POST", f"/v1beta/models/{ask.model}:generateContent", json=body).json())
    finally:
        client.close()


def _answer(body: dict) -> Answer:
    extra = body.get("flashbulb", {})
    if "candidates" not in body:  # a blocked input: promptFeedback says why
        feedback = body.get("promptFeedback", {})
        result = ImageResult(
            text=feedback.get("blockReasonMessage", ""), finish_reason=FinishReason.IMAGE_SAFETY, quality=extra.get("quality", {})
        )
        return Answer(result, charge_micros=extra.get("charge_micros"))
    candidate = body["candidates"][0]
    images: list[Image.Image] = []
    text: list[str] = []
    encoded = []
    for part in candidate["content"]["parts"]:
        if "inlineData" in part:
            encoded.append(base64.b64decode(part["inlineData"]["data"]))
            images.append(Image.open(io.BytesIO(encoded[-1])))
        elif "text" in part:
            text.append(part["text"])
    result = ImageResult(
        images=images,
        text=" ".join(text),
        finish_reason=FinishReason(candidate.get("finishReason", "STOP")),
        timings_ms=extra.get("timings_ms", {}),
        quality=extra.get("quality", {}),
    )
    return Answer(result, charge_micros=extra.get("charge_micros"), encoded=encoded)


def output_paths(output: Path, count: int) -> list[Path]:
    """out.png for one image; out-1.png, out-2.png... for several."""
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{k}{output.suffix}") for k in range(1, count + 1)]


def save(answer: Answer, output: Path) -> tuple[list[Path], bool]:
    """Write each image; returns the paths and whether the files carry content credentials. A
    server's PNG is written as it came; re-encoding it drops the server's manifest (the watermark stays)."""
    paths = output_paths(output, len(answer.result.images))
    signed = True
    for index, (image, path) in enumerate(zip(answer.result.images, paths)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}.get(path.suffix.lower(), "png")
        if answer.encoded and fmt == "png":
            path.write_bytes(answer.encoded[index])
            continue
        signed = signed and not answer.encoded and answer.sign is not unsigned
        path.write_bytes(answer.sign(encode(image, fmt, quality=95 if fmt == "jpeg" else 100), fmt))  # JPEG: on white
    return paths, signed

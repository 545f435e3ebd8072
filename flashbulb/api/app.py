"""create_app: wires settings -> database -> registry -> engine -> gateway -> HTTP routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from flashbulb import __version__
from flashbulb.api import (
    admin,
    batches,
    errors,
    files,
    gemini,
    idempotency,
    metrics,
    openai,
    openai_files,
    outputs,
    responses,
    studio,
    verify,
)
from flashbulb.api.limits import BodySizeLimit
from flashbulb.config import Settings
from flashbulb.engine import imageio
from flashbulb.engine.engine import Engine
from flashbulb.engine.executors import make_executor
from flashbulb.engine.registry import Registry
from flashbulb.gateway.gateway import Gateway
from flashbulb.jobs.files import FileStore
from flashbulb.jobs.runner import BatchRunner
from flashbulb.store import blobs, poison
from flashbulb.store import db as store

log = logging.getLogger("flashbulb")

GEMINI_VERSIONS = ("v1beta", "v1", "v1alpha")


def build_gateway(settings: Settings) -> Gateway:
    database = store.connect(settings.database_url)
    store.migrate(database)
    registry = Registry.default(settings)
    to_warm = registry.installed_names(settings.warm_models)
    engine = Engine(
        registry,
        executor=make_executor(settings, registry.worker_imports(to_warm)),
        to_warm=to_warm,
        max_queue=settings.max_queue_per_model,
        batch_window_s=settings.batch_window_ms / 1000,
        max_batch=settings.max_batch,
        on_crash=lambda fingerprints, model: poison.record(database, fingerprints, model),
    )
    return Gateway(database, engine, settings)


async def _sweep_expired(gateway: Gateway) -> None:
    """Release holds left by a crash, recount the marks (the watermark budget), take the other servers'
    poison requests, forget idempotent answers past their time."""
    while True:
        try:
            released = await gateway.release_expired()
            await asyncio.to_thread(gateway.count_marks)
            # Requests that killed workers on any server on this database are refused here too.
            gateway.engine.merge_crashes(await asyncio.to_thread(poison.counts, gateway.db))
            if released:
                log.warning("released %d expired holds", released)
            await asyncio.to_thread(idempotency.sweep_expired, gateway.db)
        except Exception:  # the sweeper must outlive a database hiccup
            log.exception("sweep of expired holds and answers failed")
        await asyncio.sleep(gateway.settings.hold_sweep_interval_s)


def _warm_up(gateway: Gateway, models: list[str], failed: dict[str, str]) -> None:
    """Load each model now so the first request doesn't wait for it; one that can't load is
    reported by /readyz and tried again on its first request."""
    for model in models:  # every model's replicas load at once, each in its own process
        gateway.engine.start(model)
    for model in models:
        try:
            gateway.engine.warm_up(model)
        except Exception as exc:  # noqa: BLE001
            log.error("warm-up of %s failed: %s", model, exc)
            failed[model] = str(getattr(exc, "message", exc))


_KEY_IN_QUERY = re.compile(r"([?&]key=)[^&\s]*")


def _hide_keys(record: logging.LogRecord) -> bool:
    """Gemini clients may send their API key as ?key=: the access log shows the path without it."""
    if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
        record.args = (*record.args[:2], _KEY_IN_QUERY.sub(r"\1<hidden>", record.args[2]), *record.args[3:])
    return True


def create_app(settings: Settings | None = None, *, warm_up: bool = True) -> FastAPI:
    settings = settings or Settings.load()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    gateway = build_gateway(settings)
    to_warm = gateway.engine.to_warm if warm_up else []  # readiness waits for them
    failed_warm: dict[str, str] = {}
    imageio.pixels_in_flight.limit = settings.max_pixels_in_flight
    # Uploads, batch result files and image URLs: in the data dir, or shared by every server.
    blob_store = blobs.open_store(settings.blob_store, settings.data_dir, gateway.db)
    result_files = outputs.OutputStore(blob_store, settings.output_url_ttl_s)

    # Batch jobs: the Files API store and the in-process runner (started and stopped with the app).
    file_store = FileStore(
        gateway.db,
        blob_store,
        max_bytes=settings.max_file_bytes,
        ttl_s=settings.file_ttl_s,
        max_account_bytes=settings.max_account_file_bytes,
    )
    batch_runner = BatchRunner(gateway, batches.GeminiItemCodec(settings), file_store)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        logging.getLogger("uvicorn.access").addFilter(_hide_keys)  # after uvicorn configured its logging
        sweeper = asyncio.create_task(_sweep_expired(gateway))
        output_sweeper = asyncio.create_task(result_files.sweep_forever())
        unclosed_releaser = asyncio.create_task(gateway.release_unclosed_forever())
        if to_warm:
            asyncio.get_running_loop().run_in_executor(None, _warm_up, gateway, to_warm, failed_warm)
        await batch_runner.start()
        yield
        await batch_runner.stop()  # before the engine closes: running items are released and put back
        sweeper.cancel()
        output_sweeper.cancel()
        unclosed_releaser.cancel()
        gateway.engine.close()

    app = FastAPI(title="flashbulb", version=__version__, lifespan=lifespan)
    app.state.gateway = gateway
    errors.install(app)
    # Inside the size limit (added later, so outside it): a retry's body is read only once it is allowed.
    app.add_middleware(
        idempotency.Idempotency, db=gateway.db, ttl_s=settings.idempotency_ttl_s, run_lease_s=settings.request_timeout_s + 60
    )
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        min_bytes_per_s=settings.body_min_bytes_per_s,
    )
    metrics.install(app, gateway)
    # /v1/models is both APIs' path: OpenAI's routes match only OpenAI callers, so they go first.
    app.include_router(openai.build_models_router(gateway), prefix="/v1")
    app.include_router(openai_files.build_router(gateway, file_store), prefix="/v1")  # OpenAI callers only, likewise
    for version in GEMINI_VERSIONS:
        app.include_router(gemini.build_router(gateway, file_store), prefix=f"/{version}")
    app.include_router(openai.build_router(gateway, result_files, file_store), prefix="/v1")
    app.include_router(responses.build_router(gateway, result_files, file_store), prefix="/v1")
    app.include_router(outputs.build_router(result_files), prefix="/v1/files/images")
    for version in GEMINI_VERSIONS:  # google-genai 3.x calls /v1, older SDKs /v1beta
        app.include_router(files.build_router(gateway, file_store, version), prefix=f"/{version}")
        app.include_router(files.build_upload_router(gateway, file_store, version), prefix=f"/upload/{version}")
        app.include_router(files.build_download_router(gateway, file_store, version), prefix=f"/download/{version}")
        app.include_router(batches.build_router(gateway, file_store, batch_runner), prefix=f"/{version}")
    app.include_router(admin.build_router(gateway), prefix="/admin")
    app.include_router(admin.build_account_router(gateway), prefix="/flashbulb")
    app.include_router(verify.build_router(gateway), prefix="/flashbulb")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """503 until the models to warm are loaded (or failed to): a load balancer's readiness probe."""
        ready = all(m in gateway.engine.warm or m in failed_warm for m in to_warm)
        body = {
            "ready": ready,
            "warm_models": sorted(gateway.engine.warm),
            "failed_models": failed_warm,
            "replicas": gateway.engine.replicas(),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    studio.install(app)  # the web studio at / (static files; after the API routes, shadowing none)
    return app

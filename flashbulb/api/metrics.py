"""GET /metrics for Prometheus. HTTP traffic is measured in this process; calls, images, charges
and open holds are read from the database at scrape time, so every server sharing one database
reports the same, exact totals (nothing is lost when a process restarts)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flashbulb.billing.usage import RunningTotals, Spend
from flashbulb.engine import imageio
from flashbulb.engine.engine import Engine
from flashbulb.gateway.gateway import Gateway
from flashbulb.store.tables import Hold

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _DatabaseCollector:
    """Totals that must be exact across processes: from the ledger's tables (billing.usage.RunningTotals
    sums each usage record once, not the whole table at every scrape)."""

    def __init__(self, gateway: Gateway):
        self.db = gateway.db
        self.engine: Engine = gateway.engine
        self.totals = RunningTotals()

    def collect(self) -> Iterator[Metric]:  # prometheus_client's collector protocol
        calls = CounterMetricFamily("flashbulb_calls", "Finished calls by model and outcome.", labels=["model", "status"])
        images = CounterMetricFamily("flashbulb_images", "Images returned to callers.", labels=["model"])
        charges = CounterMetricFamily("flashbulb_charged_micros", "Micro-USD charged.", labels=["model"])
        per_model: dict[str, Spend] = {}
        for (model, status), counted in self.totals.read(self.db).items():
            calls.add_metric([model, status], counted.calls)
            per_model[model] = per_model.get(model, Spend()) + counted
        for model, counted in per_model.items():
            images.add_metric([model], counted.images)
            charges.add_metric([model], counted.charge_micros)
        yield from (calls, images, charges)
        with self.db.connect() as conn:  # the open holds: few rows, on an index
            open_holds, held = conn.execute(select(func.count(), func.sum(Hold.amount_micros)).where(Hold.state == "held")).one()
        yield GaugeMetricFamily("flashbulb_holds_open", "Holds not yet settled or released.", value=open_holds)
        yield GaugeMetricFamily("flashbulb_holds_open_micros", "Micro-USD reserved by open holds.", value=int(held or 0))
        queued = GaugeMetricFamily("flashbulb_queue_depth", "Jobs waiting per model worker.", labels=["model"])
        for model, waiting in self.engine.queue_depths().items():
            queued.add_metric([model], waiting)
        yield queued
        yield GaugeMetricFamily(
            "flashbulb_pixels_in_flight",
            f"Decoded input pixels held by calls in progress (the limit: {imageio.pixels_in_flight.limit}).",
            value=imageio.pixels_in_flight.used,
        )


class HttpMetrics:
    """ASGI middleware: requests and latency by route template (not raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter("flashbulb_http_requests", "HTTP requests.", ["method", "route", "status"], registry=registry)
        self.latency = Histogram(
            "flashbulb_http_request_seconds", "HTTP latency.", ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = _route_template(scope)
            self.requests.labels(scope["method"], route, str(status)).inc()
            self.latency.labels(scope["method"], route).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    """The matched path with its parameters named ("/v1beta/models/{model}:generateContent"):
    bounded label values, whatever ids callers send. Unmatched paths share one label."""
    if scope.get("route") is None:
        return "unmatched"
    path = scope.get("path", "")
    for name, value in scope.get("path_params", {}).items():
        path = path.replace(str(value), "{" + name + "}", 1)
    return path


def install(app, gateway: Gateway) -> None:
    registry = CollectorRegistry()
    registry.register(_DatabaseCollector(gateway))
    app.add_middleware(HttpMetrics, registry=registry)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(_request: Request) -> Response:
        import asyncio

        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

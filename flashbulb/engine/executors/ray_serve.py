"""Replicas as Ray Serve deployments: `[cluster] engine = "ray"`, for several GPUs and several hosts.

Each model is one Serve application (`flashbulb-<model>`) whose replicas each load the backend once;
Ray places them (one GPU each by default, `[models.NAME] gpus_per_replica`), restarts one that dies
and, with `min_replicas`/`max_replicas`, adds and removes them as requests wait. `ray_address = ""`
starts a Ray instance on this machine; "auto" or "ray://head:10001" joins a running cluster.

The API process keeps its own queue per model (live traffic ahead of batch jobs, batching of like
requests) and hands Serve at most one call per replica slot (two per replica an autoscaled model may
grow to, so Serve sees calls wait), so priorities hold and Serve's router
sends each call to a free replica. A replica that dies fails the calls it was running (503, free)
like a local worker. A call is a Serve stream: the replica sends its progress fractions and partial
images as the backend makes them, then the results; cancelling the stream (every caller of the run
went away) makes the backend stop at its next step, as in a local worker.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

from PIL import Image

from flashbulb.config import Settings
from flashbulb.engine.executors import WorkerDied, for_backend, preview_png, replica_count, run_backend
from flashbulb.engine.registry import ModelEntry
from flashbulb.engine.types import Cancelled, ImageRequest, ImageResult, JobContext

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

log = logging.getLogger("flashbulb.engine")

CANCEL_POLL_S = 0.1
DEPLOY_POLL_S = 0.2  # how often a deploying application's status is read
# Serve's autoscaling metrics: each replica reports its own running calls, every second (10 s by
# default; an image call takes seconds), and this process's handle the calls waiting for one. Counted
# at the handle alone (Ray 2.60's default), the running calls of flashbulb's handle were missed: 4 of
# 4 runs of 4 slow calls stayed on one replica, against 2 of 2 scaled up with these (measured).
AUTOSCALING_METRICS_ENV = {
    "RAY_SERVE_COLLECT_AUTOSCALING_METRICS_ON_HANDLE": "0",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
}


class ModelReplica:
    """One Serve replica: a loaded backend (constructed by Ray, in the Ray worker process)."""

    def __init__(self, settings: Settings, model: str):
        import ray
        from ray import serve

        from flashbulb.engine.registry import Registry

        self.backend = Registry.default(settings).resolve(model).make_backend()
        replica = serve.get_replica_context().replica_id
        node = ray.get_runtime_context().get_node_id()  # several Ray nodes may share one host name
        self.info = {"id": f"{model}/{replica.unique_id}", "host": socket.gethostname(), "pid": os.getpid(), "node": node}

    async def run(self, requests: list[ImageRequest]) -> AsyncIterator[tuple]:
        """Stream ("progress", index, fraction) and ("preview", index, png) as the backend makes them,
        then ("done", results). Cancelled (the caller cancelled the stream), the backend is told to stop
        and this replica takes no other call until it has (max_ongoing_requests = 1)."""
        loop = asyncio.get_running_loop()
        shown: asyncio.Queue = asyncio.Queue()

        def show(item: tuple) -> None:  # from the backend's thread
            loop.call_soon_threadsafe(shown.put_nowait, item)

        def context(index: int) -> JobContext:
            return JobContext(
                on_progress=lambda fraction: show(("progress", index, fraction)),
                on_preview=lambda image: show(("preview", index, preview_png(image))),
            )

        jobs = [context(i) for i in range(len(requests))]
        work = loop.run_in_executor(None, run_backend, self.backend, requests, jobs)
        try:
            while not work.done() or not shown.empty():
                item = asyncio.ensure_future(shown.get())
                await asyncio.wait({work, item}, return_when=asyncio.FIRST_COMPLETED)
                if item.done():
                    yield item.result()
                else:
                    item.cancel()
            results = work.result()
            for result in results:
                result.replica = dict(self.info)
            yield ("done", results)
        finally:
            if not work.done():
                for job in jobs:
                    job.cancel.set()
                await asyncio.gather(work, return_exceptions=True)  # it stops at its next step


class _Application:
    """One model's Serve application, deployed once for all of its slots."""

    def __init__(self, executor: RayServeExecutor, entry: ModelEntry):
        self.executor = executor
        self.entry = entry
        self.handle: DeploymentHandle | None = None  # set by deploy
        self.lock = threading.Lock()
        deployment = executor.settings.deployments.get(entry.name, {})
        self.autoscaling = "min_replicas" in deployment or "max_replicas" in deployment
        self.deployment = deployment

    @property
    def name(self) -> str:
        return f"flashbulb-{self.entry.name}"

    def deploy(self) -> None:
        with self.lock:
            if self.handle is not None:
                return
            # One application is submitted at a time: Serve's deployment options register modules with
            # cloudpickle and unregister them after, which failed in a second thread ("not registered
            # for pickle by value"). Its replicas then start alongside the other models': tests/test_ray.py's
            # four applications came up in 35-38 s, against 43.5 s waiting for each in turn (same box).
            with self.executor.deploying:
                handle = self._submit()
            if handle is None:
                handle = self._wait_running()
            self.handle = handle

    def _wait_running(self) -> DeploymentHandle:
        from ray import serve

        while (status := serve.status().applications[self.name]).status != "RUNNING":
            if status.status == "DEPLOY_FAILED":
                raise RuntimeError(f"Ray Serve could not deploy {self.name}: {status.message}")
            time.sleep(DEPLOY_POLL_S)
        log.info("%s: Ray Serve application %s running", self.entry.name, self.name)
        return serve.get_app_handle(self.name)

    def _submit(self) -> DeploymentHandle | None:
        """Submit the application (its replicas start on their own); its handle already if another
        API server on the cluster runs it."""
        from ray import serve
        from ray.serve.api import RunTarget

        self.executor.connect()
        if self.executor.joined and (running := serve.status().applications.get(self.name)) and running.status == "RUNNING":
            # Another API server deployed it: use its replicas as they are (deploying again
            # replaced every replica, in the middle of that server's calls).
            log.info("%s: using the running Ray Serve application %s", self.entry.name, self.name)
            return serve.get_app_handle(self.name)
        options: dict = {"num_cpus": self.deployment.get("cpus_per_replica", 1)}
        if self.autoscaling:
            options["runtime_env"] = {"env_vars": AUTOSCALING_METRICS_ENV}
        if self.entry.uses_gpu and self.executor.cluster_gpus():
            options["num_gpus"] = self.deployment.get("gpus_per_replica", 1)
        scale = (
            {
                "autoscaling_config": {
                    "min_replicas": self.deployment.get("min_replicas", 1),
                    "max_replicas": self.replicas,
                    "target_ongoing_requests": 1,
                    # An image call takes seconds: look at the last 5 s of waiting calls, each
                    # second (Serve's defaults, 30 s and 10 s, are for millisecond calls), add a
                    # replica once calls have waited 2 s and remove one after 5 idle minutes.
                    "metrics_interval_s": 1.0,
                    "look_back_period_s": 5.0,
                    "upscale_delay_s": 2.0,
                    "downscale_delay_s": 300.0,
                }
            }
            if self.autoscaling
            else {"num_replicas": self.replicas}
        )
        # deployment(options)(cls), the same as deployment(cls, options): ray annotates only this form's type
        app = serve.deployment(
            name=self.entry.name,
            ray_actor_options=options,
            max_ongoing_requests=1,
            health_check_period_s=2,
            **scale,
        )(ModelReplica).bind(self.executor.settings, self.entry.name)
        serve.run_many([RunTarget(app, name=self.name, route_prefix=None)], wait_for_applications_running=False)
        log.info("%s: Ray Serve application %s submitted (%s)", self.entry.name, self.name, scale)
        return None

    @property
    def slots(self) -> int:
        """The most calls in flight at once: one per replica, or, autoscaled, two per replica it may
        grow to, so a busy replica has a call waiting at Serve for Serve to scale on (with one, the
        wait was one call deep and Serve's metrics often missed it)."""
        return 2 * self.replicas if self.autoscaling else self.replicas

    @property
    def replicas(self) -> int:
        """Replicas at most."""
        return replica_count(self.deployment, self.executor.cluster_gpus() if self.entry.uses_gpu else 0)


class RaySlot:
    """A place for one call in flight to a model's Serve application."""

    def __init__(self, app: _Application, index: int):
        self.app = app
        self.info = {"id": f"{app.entry.name}/ray", "host": socket.gethostname(), "pid": None}

    def start(self) -> None:
        self.app.deploy()

    def alive(self) -> bool:
        return True  # Serve restarts its replicas itself

    def run(self, requests: list[ImageRequest], jobs: list[JobContext]) -> list[ImageResult]:
        import ray.exceptions

        handle = self.app.handle
        assert handle is not None  # the engine runs a replica only once its start() has deployed the app
        stream = cast("DeploymentResponseGenerator", handle.options(stream=True).run.remote(for_backend(requests)))
        # Read on a thread of its own, so this one can watch for a cancel while it waits.
        items: queue.Queue = queue.Queue()

        def pump() -> None:
            try:
                for item in stream:
                    items.put(item)
            except BaseException as error:  # noqa: BLE001 - handed to the waiting thread below
                items.put(("raised", error))

        threading.Thread(target=pump, daemon=True, name=f"ray-{self.app.entry.name}").start()
        while True:
            if all(job.cancel.is_set() for job in jobs):  # every turn: progress may come without a pause
                stream.cancel()  # the replica's backend stops at its next step
                raise Cancelled()
            try:
                kind, *payload = items.get(timeout=CANCEL_POLL_S)
            except queue.Empty:
                continue
            if kind == "progress":
                jobs[payload[0]].on_progress(payload[1])
            elif kind == "preview":
                jobs[payload[0]].on_preview(Image.open(io.BytesIO(payload[1])))
            elif kind == "done":
                return payload[0]
            else:
                error = payload[0]
                if isinstance(error, ray.exceptions.RayTaskError):  # the backend raised: the caller hears its error
                    raise error.cause from None
                if isinstance(error, (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)):
                    raise WorkerDied(f"a Ray Serve replica of {self.app.entry.name} died: {error.__class__.__name__}") from error
                raise error

    def close(self) -> None:
        self.app.executor.close_app(self.app)


class RayServeExecutor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self.deploying = threading.Lock()  # one model's application deployed at a time
        self._connected = False
        self._started_ray = False  # a Ray instance of our own ends with us; a cluster we joined does not
        self._apps: list[_Application] = []

    def connect(self) -> None:
        with self._lock:
            if self._connected:
                return
            # Read when Serve is imported, here and (runtime_env, below) in each replica.
            for name, value in AUTOSCALING_METRICS_ENV.items():
                os.environ.setdefault(name, value)
            import ray
            from ray import serve

            if not ray.is_initialized():
                self._started_ray = not self.settings.ray_address
                # "" starts a Ray instance of our own (it ends with this process): "local", since
                # None would join whatever cluster `ray start` left running on this machine.
                ray.init(
                    address=self.settings.ray_address or "local",
                    namespace="flashbulb",
                    include_dashboard=False,
                    ignore_reinit_error=True,
                    log_to_driver=True,
                )
            serve.start(proxy_location="Disabled")  # calls come through flashbulb's API, not Serve's HTTP
            self._connected = True

    @property
    def joined(self) -> bool:
        """Connected to a cluster this process did not start (other API servers may use it)."""
        return self._connected and not self._started_ray

    def cluster_gpus(self) -> float:
        import ray

        self.connect()
        return ray.cluster_resources().get("GPU", 0)

    def replicas(self, entry: ModelEntry) -> list[RaySlot]:
        app = _Application(self, entry)
        self._apps.append(app)
        return [RaySlot(app, i) for i in range(app.slots)]

    def close(self) -> None:
        if self._started_ray:
            import ray

            ray.shutdown()

    def close_app(self, app: _Application) -> None:
        with app.lock:
            if app.handle is None:
                return
            app.handle = None
        if not self._started_ray:
            # A cluster we joined: other API servers may be calling this application. It stays; the
            # next server to start redeploys it with its flashbulb.toml (`serve delete` removes it).
            return
        from ray import serve

        try:
            serve.delete(app.name)
        except Exception:  # noqa: BLE001 - shutting down: Ray may be gone already
            log.warning("could not delete Ray Serve application %s", app.name)

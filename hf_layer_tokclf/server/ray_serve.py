"""Past one process: the entity server as a Ray Serve deployment, replicated (``pip install "hf-layer-tokclf[ray]"``).

Each replica is a whole entity server: it loads the model once, then runs the same ASGI application as
``hf-layer-tokclf serve`` (`app.build_app`), with its own `batcher.Batcher`, so concurrent requests routed to
one replica are batched there. Ray Serve's proxy takes the HTTP requests and spreads them over the replicas;
the requests, answers, errors and routes are those of the single-process server.

A replica turns ready once its model is loaded (Serve routes nothing to it before, and `serve.run` returns
once every replica is ready); Serve then checks the application's state every few seconds and replaces a
replica whose batcher failed. Serve runs the application's lifespan in the replica: its startup starts the
batcher, its shutdown (when Serve stops the replica, after the requests in flight are answered) closes it.

On a cluster every node needs this package, its dependencies and the same Ray version, and the model must be
readable on every node (a shared filesystem, or a Hub id)::

    ray start --head                       # on the head node
    ray start --address=HEAD_IP:6379       # on each worker node
    hf-layer-tokclf serve MODEL --engine ray --ray-address auto --replicas 4 --ray-num-gpus 1
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray import serve

from ..base.code_consent import caller_consent
from .app import ModelLoadError, build_app, load
from .settings import ServerSettings

__all__ = ["APP_NAME", "DEPLOYMENT", "EntityServer", "ray_application", "replica_settings", "run_ray_serve"]

logger = logging.getLogger(__name__)

APP_NAME = "hf-layer-tokclf"
"""The Serve application's name on the cluster (`serve.status`, `serve delete`)."""
DEPLOYMENT = "EntityServer"
"""Its one deployment's name: the replicas of the entity server."""


class _EntityServer:
    """One replica: the model loaded once (in a thread, so that the replica's event loop keeps answering Serve),
    then the entity server's application around it."""

    async def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.loaded = await asyncio.to_thread(load, settings)

    def __serve_build_asgi_app__(self) -> Any:
        self.asgi_app = build_app(self.settings, loaded=self.loaded)
        return self.asgi_app

    def check_health(self) -> None:
        """Serve's health check, every few seconds: a replica whose batcher could not start fails it (Serve then
        replaces the replica); one still starting it (the few milliseconds after its lifespan began) passes."""
        state = self.asgi_app.state.server
        if state.status == "failed":
            raise RuntimeError(f"{self.settings.model}: {state.error}")


EntityServer = serve.ingress()(_EntityServer)
"""The replica's class as Serve runs it: its ASGI application is `app.build_app`'s, built in the replica."""


def replica_settings(settings: ServerSettings, num_gpus: float) -> ServerSettings:
    """``settings`` as a replica gets them: the consent to run the model's code resolved here, where the person is
    (a replica on another node must not answer from its own environment), and, without a GPU reserved, the CPU."""
    device = "cpu" if not num_gpus and settings.device in (None, "auto") else settings.device
    return dataclasses.replace(settings, trust_remote_code=caller_consent(settings.trust_remote_code), device=device)


def ray_application(
    settings: ServerSettings, *, replicas: int = 1, num_cpus: float | None = None, num_gpus: float = 0
) -> serve.Application:
    """The entity server as a Ray Serve application of ``replicas`` replicas, each with ``num_cpus`` CPUs (Serve's
    default: 1) and ``num_gpus`` GPUs (a fraction shares one; with any, the model runs on the GPU).

    A replica takes up to ``settings.batching.max_concurrent_requests`` requests at once, so that its batcher can
    gather them; past that on every replica, Serve queues as many more, then answers 503.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, not {replicas}.")
    if num_gpus < 0 or (num_cpus is not None and num_cpus < 0):
        raise ValueError(f"num_cpus and num_gpus must not be negative (num_cpus={num_cpus}, num_gpus={num_gpus}).")
    resources: dict[str, float] = {"num_gpus": num_gpus}
    if num_cpus is not None:
        resources["num_cpus"] = num_cpus
    limit = settings.batching.max_concurrent_requests
    deployment = serve.deployment(
        EntityServer,
        name=DEPLOYMENT,
        num_replicas=replicas,
        ray_actor_options=resources,
        max_ongoing_requests=limit,
        max_queued_requests=limit,
    )
    return deployment.bind(replica_settings(settings, num_gpus))


def _deploy(application: serve.Application, model: str) -> None:
    """Runs ``application`` on Serve, returning once every replica is ready; a model no replica could load (Serve
    tries each a few times) is a `app.ModelLoadError`, as on the single-process server."""
    try:
        serve.run(application, name=APP_NAME, route_prefix="/", blocking=False)
    except RuntimeError as error:
        if f"Deploying application {APP_NAME} failed" not in str(error):
            raise
        # The application's message says only that its deployment failed; the deployment's (the replica's
        # traceback, logged by Serve's controller) ends with why.
        deployment = serve.status().applications[APP_NAME].deployments.get(DEPLOYMENT)
        lines = (deployment.message if deployment is not None else "").strip().splitlines() or [str(error)]
        raise ModelLoadError(f"{model} could not load on Ray Serve: {lines[-1]}") from None


@contextmanager
def _until_signal() -> Iterator[threading.Event]:
    """An event SIGTERM and SIGINT set (instead of Ray's handler, which exits at once), the old handlers given
    back afterwards."""
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def run_ray_serve(
    settings: ServerSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    replicas: int = 1,
    address: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float = 0,
) -> None:
    """``serve --engine ray``: the entity server on Ray Serve at ``http://host:port/``, until SIGTERM or SIGINT.

    ``address``: the Ray cluster (``"auto"``, ``HEAD_IP:6379``); None: as ``ray.init()`` finds one (RAY_ADDRESS,
    else a cluster `ray start` began on this machine, else a new local instance). Ray already initialized is used
    as it is. Returns once every replica is stopped: Serve stops routing to them, answers the requests in flight,
    then closes each replica's application. Only this application is deleted: the other applications of a cluster
    go on.
    """
    if port == 0:
        raise ValueError("Ray Serve listens on the port it is given: name one (--port 0 asks for any free one).")
    application = ray_application(settings, replicas=replicas, num_cpus=num_cpus, num_gpus=num_gpus)
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False)
    try:
        with _until_signal() as stop:
            serve.start(http_options={"host": host, "port": port})
            try:
                _deploy(application, settings.model)
                address_ = f"[{host}]" if ":" in host else host
                print(
                    f"serving {settings.model} on http://{address_}:{port} ({replicas} Ray Serve replicas)", flush=True
                )
                stop.wait()
                logger.info("stopping: answering the requests in flight")
            finally:
                serve.delete(APP_NAME)  # blocks until every replica has answered its requests and closed
    finally:
        if started:
            ray.shutdown()  # a local instance ends here; from a cluster, the driver disconnects

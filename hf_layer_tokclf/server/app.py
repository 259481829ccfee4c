"""The entity server's ASGI application (FastAPI), and `run_local`, which serves it with uvicorn.

``POST /`` and ``POST /predict`` answer the Inference API's token-classification task (what
``huggingface_hub.InferenceClient.token_classification`` posts) with predict's entities; ``GET /health`` says whether
the model is loaded, ``GET /info`` what is served, ``GET /metrics`` the Prometheus metrics (`metrics.ServerMetrics`).
The model loads in a thread once the application starts, so that the port answers ``/health`` (503 ``loading``)
meanwhile; a model that cannot load is logged, ``/health`` says ``failed`` and why, and `run_local` stops the server
and raises `ModelLoadError`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .batcher import Batcher, QueueFullError, ShuttingDownError
from .metrics import CONTENT_TYPE, ServerMetrics
from .requests import RequestError, parse_request, payload_too_large
from .settings import ServerSettings

__all__ = ["GRACEFUL_SHUTDOWN_SECONDS", "ModelLoadError", "ServerState", "build_app", "read_body", "run_local"]

logger = logging.getLogger(__name__)

# How long SIGTERM waits for the requests in flight before the connections are cut: under Kubernetes' default grace
# period (30 s, then SIGKILL), so that the batcher still closes in order.
GRACEFUL_SHUTDOWN_SECONDS = 25
# What a 503 asks a client to wait, in seconds, while the model loads.
LOADING_RETRY_AFTER = 5


class ModelLoadError(RuntimeError):
    """The model could not load: the server answered ``/health`` with ``failed`` and stopped."""


@dataclass
class ServerState:
    """What one application knows: its settings and metrics, whether the model is loaded, and its batcher."""

    settings: ServerSettings
    metrics: ServerMetrics
    status: str = "loading"
    """``loading``, ``ok`` (the batcher answers requests) or ``failed`` (`error` says why)."""
    error: str | None = None
    batcher: Any = None
    config: Any = None
    """The loaded model's configuration (``/info``)."""
    on_ready: list[Callable[[], Any]] = field(default_factory=list)
    """Called in the event loop once the model is loaded and the batcher started (`run_local` prints a line)."""
    on_failure: list[Callable[[], Any]] = field(default_factory=list)
    """Called in the event loop when the model could not load (`run_local` stops the server)."""


def build_app(settings: ServerSettings, *, loaded: tuple[Any, Any] | None = None) -> FastAPI:
    """The entity server of ``settings`` as a FastAPI application; its state is ``app.state.server`` (`ServerState`).

    The model loads once the application starts (its lifespan), in a thread, through `loading.load_model` with
    ``settings``' device, precision and consent to run the model's code; ``loaded`` (a model and its tokenizer)
    skips the load. Stopping the application closes the batcher, which answers every request it admitted first.
    """
    state = ServerState(settings, ServerMetrics())
    if settings.num_threads is not None:  # here, in the thread that builds the app: torch's setting is global
        import torch

        torch.set_num_threads(settings.num_threads)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        starting = asyncio.create_task(_start(state, loaded))
        try:
            yield
        finally:
            starting.cancel()  # a load still running is left to its thread; the process is ending
            with suppress(asyncio.CancelledError):
                await starting
            if state.batcher is not None:
                await state.batcher.close()

    app = FastAPI(title="hf-layer-tokclf", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.server = state
    app.add_middleware(Measured, metrics=state.metrics)

    async def entities(request: Request) -> Response:
        return await answer_entities(state, request)

    app.add_api_route("/", entities, methods=["POST"])
    app.add_api_route("/predict", entities, methods=["POST"])
    app.add_api_route("/health", lambda: health(state), methods=["GET"])
    app.add_api_route("/info", lambda: info(state), methods=["GET"])
    app.add_api_route("/metrics", lambda: Response(state.metrics.render(), media_type=CONTENT_TYPE), methods=["GET"])
    return app


async def _start(state: ServerState, loaded: tuple[Any, Any] | None) -> None:
    """Loads the model (in a thread) and starts its batcher; a failure is logged and said by ``/health``."""
    settings = state.settings
    try:
        if loaded is None:
            loaded = await asyncio.to_thread(load, settings)
        model, tokenizer = loaded
        batcher = Batcher(model, tokenizer, settings, metrics=state.metrics)
        await batcher.start()
    except Exception as error:  # anything: the server must say it failed, not answer 503 "loading" forever
        logger.exception("hf-layer-tokclf serve: %s could not load", settings.model)
        state.status, state.error = "failed", f"{type(error).__name__}: {error}"
        await _call(state.on_failure)
        return
    state.batcher, state.config, state.status = batcher, model.config, "ok"
    state.metrics.watch_queue(lambda: batcher.queue_depth, lambda: batcher.in_flight)
    state.metrics.ready.set(1)
    await _call(state.on_ready)


async def _call(hooks: list[Callable[[], Any]]) -> None:
    for hook in hooks:
        result = hook()
        if asyncio.iscoroutine(result):
            await result


def load(settings: ServerSettings) -> tuple[Any, Any]:
    """The model and tokenizer ``settings`` name, as predict loads them (`loading.load_model`)."""
    from ..running.loading import load_model

    return load_model(
        settings.model, device=settings.device, dtype=settings.dtype, trust_remote_code=settings.trust_remote_code
    )


def error_response(status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"error": message, "error_type": ...}``, the Inference API's error body (InferenceClient shows ``error``)."""
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status, headers=headers)


async def answer_entities(state: ServerState, request: Request) -> Response:
    """A token-classification request answered: the entities of its text (or of each of its texts), or the error."""
    batcher = state.batcher
    if batcher is None:
        return _not_ready(state)
    try:
        entity_request = parse_request(await read_body(request, state.settings.payload_limit), state.settings)
        results = await batcher.submit(entity_request)
    except RequestError as error:
        return error_response(error.status, str(error), error.error_type)
    except QueueFullError as error:
        return error_response(503, str(error), "overloaded", headers={"Retry-After": str(error.retry_after)})
    except ShuttingDownError as error:  # after SIGTERM: another replica (or this one, restarted) will answer
        return error_response(503, str(error), "unavailable", headers={"Retry-After": "1"})
    except ValueError as error:  # `Batcher.check`: a parameter this model cannot take (a stride too large)
        return error_response(422, str(error), "validation")
    except Exception:  # a bug: logged here with its traceback, never sent to the client
        logger.exception("hf-layer-tokclf serve: a request failed")
        return error_response(500, "the server failed on this request; its log says why", "internal")
    return JSONResponse(results[0] if entity_request.single else results)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (`requests.payload_too_large`) as soon as it is known to exceed ``limit`` bytes:
    by its Content-Length before a byte is kept, else while it streams in, so that no large body is ever held."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        if int(declared) <= DRAIN_BYTES:
            await _discard(request.stream(), DRAIN_BYTES)
        raise payload_too_large(int(declared), limit)
    chunks, size, stream = [], 0, request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            await _discard(stream, DRAIN_BYTES - size)
            raise payload_too_large(None, limit)
        chunks.append(chunk)
    return b"".join(chunks)


# A body over the limit is still read, and thrown away, up to DRAIN_BYTES (for at most DRAIN_SECONDS) before the 413
# goes out: a client that sends its whole body before it reads the answer (urllib, requests) would otherwise find
# the connection reset instead of the 413. A larger one is answered at once (nginx's lingering close, bounded).
DRAIN_BYTES = 64 * 2**20
DRAIN_SECONDS = 10


async def _discard(stream: AsyncIterator[bytes], budget: int) -> None:
    async def drain() -> None:
        left = budget
        async for chunk in stream:
            left -= len(chunk)
            if left < 0:
                return

    with suppress(asyncio.TimeoutError):
        await asyncio.wait_for(drain(), DRAIN_SECONDS)


def _not_ready(state: ServerState) -> JSONResponse:
    if state.status == "failed":
        return error_response(503, f"the model could not load: {state.error}", "unavailable")
    return error_response(
        503, "the model is loading; retry shortly", "loading", headers={"Retry-After": str(LOADING_RETRY_AFTER)}
    )


def health(state: ServerState) -> JSONResponse:
    """200 ``{"status": "ok"}`` once the model answers; 503 ``loading``, or ``failed`` with the error."""
    if state.status == "ok":
        return JSONResponse({"status": "ok"})
    body = {"status": state.status} | ({"error": state.error} if state.error else {})
    return JSONResponse(body, status_code=503)


def info(state: ServerState) -> JSONResponse:
    """What is served: the model, its layer and labels (or tasks), decoding, engine, limits, batching, versions."""
    if state.status != "ok":
        return _not_ready(state)
    settings, config = state.settings, state.config
    return JSONResponse(
        {
            "model": settings.model,
            "model_type": getattr(config, "model_type", None),
            "hidden_layer": getattr(config, "hidden_layer", None),
            "num_hidden_layers": getattr(config, "num_hidden_layers", None),
            "aggregation_strategy": settings.aggregation_strategy,
            "min_score": settings.min_score,
            **state.batcher.info(),
            "limits": {
                "payload_limit": settings.payload_limit,
                "max_client_batch_size": settings.max_client_batch_size,
            },
            "versions": versions(),
        }
    )


def versions() -> dict[str, str | None]:
    """The installed versions of what answers a request (``None``: not installed)."""
    found = {}
    for name in ("hf-layer-tokclf", "transformers", "torch", "onnxruntime", "fastapi", "uvicorn"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


class Measured:
    """ASGI middleware: each HTTP answer's route, status and latency into the metrics (`ServerMetrics.observe_request`).

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which would add a task and a stream per request."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]  # 500: an answer never started is a failure

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe_request(scope["path"], status[0], time.perf_counter() - started)


def run_local(settings: ServerSettings, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serves ``settings``' model on ``host:port`` with uvicorn until SIGTERM or Ctrl-C; prints one line once ready.

    On the signal the server stops taking connections, finishes the requests in flight (at most
    `GRACEFUL_SHUTDOWN_SECONDS`), closes the batcher (which answers every request it admitted) and returns. A model
    that cannot load stops the server: `ModelLoadError`.
    """
    import uvicorn

    app = build_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS, access_log=False,
            log_level="info",
        )
    )  # fmt: skip
    state: ServerState = app.state.server
    state.on_failure.append(lambda: setattr(server, "should_exit", True))
    state.on_ready.append(lambda: _announce(server, settings.model, host))
    with _signals_end_quietly():
        server.run()
    if state.status == "failed":
        raise ModelLoadError(f"{settings.model} could not load: {state.error}")


async def _announce(server: Any, model: str, host: str) -> None:
    """``serving MODEL on http://HOST:PORT``, once the socket is bound (the model may load before uvicorn binds)."""
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]  # the bound one: --port 0 asks the system for a free port
    address = f"[{host}]" if ":" in host else host
    print(f"serving {model} on http://{address}:{port}", flush=True)


@contextmanager
def _signals_end_quietly() -> Iterator[None]:
    """SIGTERM and SIGINT, once uvicorn has drained on them, end the process normally (status 0).

    uvicorn raises the signal it shut down on again once it is done, for the handler that was there before it; that
    handler is, here, one that does nothing: the server has stopped as asked."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in before:
        signal.signal(sig, lambda *args: None)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)

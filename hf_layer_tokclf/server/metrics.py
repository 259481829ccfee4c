"""The Prometheus metrics of an entity server: requests by route and status, their latency, the batches the model
ran (requests, texts and tokens in each, and how long each took), and the queue's depth.

Each application holds its own `prometheus_client.CollectorRegistry` (`ServerMetrics.registry`), not the process's
global one: two applications in one process (the tests, a Ray replica beside another) count apart, and building a
second one does not fail on names registered twice.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "PREFIX", "ROUTES", "ServerMetrics"]

PREFIX = "hf_layer_tokclf"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# The routes counted by name; any other path counts as "other", so that a scan of random paths cannot grow the
# metrics without bound (a label value per path).
ROUTES = ("/", "/predict", "/health", "/info", "/metrics")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class ServerMetrics:
    """The metrics of one server, in a registry of its own; a `batcher.BatchObserver` (`observe_batch`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            f"{PREFIX}_requests", "HTTP requests answered, by route and status.", ["route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds", "Time from a request's arrival to its answer, by route.", ["route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.texts = Counter(f"{PREFIX}_texts", "Texts answered with their entities.", registry=self.registry)
        self.batch_requests = Histogram(
            f"{PREFIX}_batch_requests", "Requests in one run of the model.", buckets=COUNT_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.batch_texts = Histogram(
            f"{PREFIX}_batch_texts", "Texts in one run of the model.", buckets=COUNT_BUCKETS, registry=self.registry
        )
        self.batch_tokens = Histogram(
            f"{PREFIX}_batch_tokens", "Tokens (subwords of the windows) in one run of the model.",
            buckets=TOKEN_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            f"{PREFIX}_batch_duration_seconds", "Time the model took on one batch.", buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth", "Requests admitted and waiting for a batch.", registry=self.registry
        )
        self.in_flight = Gauge(
            f"{PREFIX}_requests_in_flight", "Requests admitted and not yet answered.", registry=self.registry
        )
        self.ready = Gauge(f"{PREFIX}_ready", "1 once the model is loaded, else 0.", registry=self.registry)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        """One HTTP answer: its route (`ROUTES`, else ``other``), status and latency."""
        route = path if path in ROUTES else "other"
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def observe_batch(self, requests: int, texts: int, tokens: int, seconds: float) -> None:
        """One run of the model (`batcher.BatchObserver`): how many requests, texts and tokens it held, and its time."""
        self.batch_requests.observe(requests)
        self.batch_texts.observe(texts)
        self.batch_tokens.observe(tokens)
        self.batch_seconds.observe(seconds)
        self.texts.inc(texts)

    def watch_queue(self, queue_depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        """Reads the queue's depth and the requests in flight from the batcher whenever the metrics are scraped."""
        self.queue_depth.set_function(queue_depth)
        self.in_flight.set_function(in_flight)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

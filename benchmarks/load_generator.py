"""A load generator for an entity server on this machine: ``clients`` concurrent clients, each sending its next
request as soon as its previous one is answered (a closed loop, as users waiting on answers do), until
``max_requests`` are sent or ``max_duration_s`` has passed, whichever comes first. It talks to loopback hosts only:
it is a benchmark, never a way to flood someone else's server.

    from benchmarks.load_generator import run_load
    result = run_load("http://127.0.0.1:8080/", [{"inputs": "text"}, ...], clients=8, max_requests=500)
    result.summary()   # requests/s, sentences/s, p50/p99 latency, failed and lost requests
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

__all__ = ["LoadResult", "Reply", "check_loopback", "generate_load", "run_load"]

LOOPBACK_NAMES = ("localhost",)
GRACE_S = 30.0  # after the duration, how long answers of requests already sent are awaited before counting them lost


def check_loopback(url: str) -> str:
    """The host of `url`, checked to be this machine (``localhost``, 127.0.0.0/8 or ``::1``); a ValueError naming
    the URL and its host otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: the load generator speaks http:// or https://, not {parts.scheme or 'no scheme'!r}")
    host = parts.hostname or ""
    try:
        loopback = host.lower() in LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: never resolved, since it may point anywhere
        loopback = False
    if not loopback:
        raise ValueError(
            f"{url!r}: host {host!r} is not a loopback address; the load generator only sends to this machine "
            "(localhost, 127.0.0.0/8, ::1)"
        )
    return host


@dataclass
class Reply:
    """One request as it went: which payload, when it was sent (s after the start), its latency, the HTTP status
    (None when no answer came: `error` says why) and the answer's JSON (None when it was not JSON)."""

    payload: int
    sent_s: float
    latency_s: float
    status: int | None
    answer: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class LoadResult:
    """Every reply of one load run, with the counts of requests sent and the wall time."""

    clients: int
    sent: int
    wall_s: float
    replies: list[Reply] = field(default_factory=list)
    texts_per_payload: list[int] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Requests sent and never answered nor failed (still pending when the run's grace time ran out)."""
        return self.sent - len(self.replies)

    def summary(self) -> dict[str, Any]:
        """Requests/s and sentences/s (answered with 200, over the run's wall time), latency percentiles (ms, of
        every reply), and the failed (non-200 or no answer) and lost requests."""
        ok = [r for r in self.replies if r.ok]
        latencies = np.array([r.latency_s for r in self.replies]) * 1e3
        p50, p99 = np.percentile(latencies, [50, 99]) if len(latencies) else (None, None)
        sentences = sum(self.texts_per_payload[r.payload % len(self.texts_per_payload)] for r in ok) if ok else 0
        statuses: dict[str, int] = {}
        for reply in self.replies:
            key = str(reply.status) if reply.error is None else f"{reply.status or 'no answer'}: {reply.error}"
            statuses[key] = statuses.get(key, 0) + 1
        found = {"clients": self.clients, "requests": self.sent, "answered": len(ok), "wall_s": self.wall_s}
        found |= {"requests_per_s": len(ok) / self.wall_s, "sentences_per_s": sentences / self.wall_s}
        found |= {"p50_ms": p50 and float(p50), "p99_ms": p99 and float(p99)}
        return found | {"failed": len(self.replies) - len(ok), "lost": self.lost, "statuses": statuses}


async def one_request(session: Any, url: str, payload: dict[str, Any], index: int, began: float) -> Reply:
    """Sends one payload and waits for its answer; a connection error or a timeout is a reply with no status."""
    import aiohttp

    start = time.perf_counter()
    status, answer, error = None, None, None
    try:
        async with session.post(url, json=payload) as response:
            status, body = response.status, await response.read()
        try:
            answer = json.loads(body)
        except ValueError:
            error = f"not JSON: {body[:80]!r}"
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as failure:
        error = f"{type(failure).__name__}: {failure}"
    return Reply(index, start - began, time.perf_counter() - start, status, answer, error)


async def generate_load(
    url: str,
    payloads: Sequence[dict[str, Any]],
    *,
    clients: int,
    max_requests: int,
    max_duration_s: float = math.inf,
    timeout_s: float = 60.0,
) -> LoadResult:
    """`clients` closed-loop clients POSTing JSON `payloads` (in turn, from the first, cycling) to `url` until
    `max_requests` are sent or `max_duration_s` has passed; answers of requests already sent are awaited
    `GRACE_S` more, after which those unanswered count as lost. One keep-alive connection per client."""
    import aiohttp

    check_loopback(url)
    if clients < 1 or max_requests < 1 or not payloads:
        raise ValueError(f"clients ({clients}) and max_requests ({max_requests}) must be >= 1, with payloads")
    texts = [len(p["inputs"]) if isinstance(p.get("inputs"), list) else 1 for p in payloads]
    result = LoadResult(clients, 0, 0.0, texts_per_payload=texts)
    began = time.perf_counter()
    deadline = began + max_duration_s

    async def client(session: aiohttp.ClientSession) -> None:
        while result.sent < max_requests and time.perf_counter() < deadline:
            index, result.sent = result.sent, result.sent + 1  # one event loop: no lock needed
            result.replies.append(await one_request(session, url, payloads[index % len(payloads)], index, began))

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.ensure_future(client(session)) for _ in range(clients)]
        grace = max_duration_s + GRACE_S if math.isfinite(max_duration_s) else None
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    result.wall_s = time.perf_counter() - began
    return result


def run_load(url: str, payloads: Sequence[dict[str, Any]], **options: Any) -> LoadResult:
    """`generate_load` in an event loop of its own (for callers outside one)."""
    return asyncio.run(generate_load(url, payloads, **options))

"""The server benchmark's plumbing (`python -m benchmarks.server`): the load generator against a small aiohttp echo
server (bounded count and duration, closed-loop clients, loopback only, failed and lost requests counted), the
per-request pipeline server, and the quick run end to end. Timings are never asserted."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from benchmarks import load_generator
from benchmarks.load_generator import check_loopback, generate_load


class Echo:
    """An aiohttp server answering each POST with its body after `delay_s`; it counts the requests it is answering
    at once. A payload ``{"fail": true}`` gets 500, ``{"hang": true}`` no answer for an hour."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s, self.now, self.most, self.seen = delay_s, 0, 0, []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append(body)
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(3600 if body.get("hang") else self.delay_s)
        finally:
            self.now -= 1
        return web.json_response({"echo": body["inputs"]}, status=500 if body.get("fail") else 200)

    async def load(self, payloads: list[dict], **options) -> load_generator.LoadResult:
        app = web.Application()
        app.router.add_post("/", self.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            return await generate_load(f"http://127.0.0.1:{port}/", payloads, **options)
        finally:
            await runner.cleanup()


def test_clients_each_wait_for_their_answer_and_the_count_bounds_the_run():
    echo = Echo(delay_s=0.01)
    payloads = [{"inputs": f"text {i}"} for i in range(5)]
    result = asyncio.run(echo.load(payloads, clients=4, max_requests=23))
    summary = result.summary()
    assert (result.sent, len(result.replies), echo.most) == (23, 23, 4)  # never more in flight than clients
    assert [body["inputs"] for body in echo.seen] == [f"text {i % 5}" for i in range(23)]  # in turn, cycling
    assert sorted(r.payload for r in result.replies) == list(range(23))
    assert all(r.answer == {"echo": payloads[r.payload % 5]["inputs"]} for r in result.replies)
    assert (summary["answered"], summary["failed"], summary["lost"], summary["statuses"]) == (23, 0, 0, {"200": 23})
    assert summary["p50_ms"] >= 10 and summary["p99_ms"] >= summary["p50_ms"]
    assert summary["requests_per_s"] == summary["sentences_per_s"] == pytest.approx(23 / result.wall_s)


def test_duration_bounds_the_run_and_a_list_counts_its_sentences():
    result = asyncio.run(Echo(delay_s=0.05).load([{"inputs": ["a", "b", "c"]}], clients=2, max_requests=10**6,
                                                 max_duration_s=0.3))  # fmt: skip
    summary = result.summary()
    assert 4 <= result.sent <= 16 and result.wall_s < 1.0
    assert summary["sentences_per_s"] == pytest.approx(3 * summary["requests_per_s"])


def test_failed_and_lost_requests_are_counted():
    payloads = [{"inputs": "x"}, {"inputs": "y", "fail": True}, {"inputs": "z", "hang": True}]
    load_generator.GRACE_S, grace = 0.2, load_generator.GRACE_S
    try:
        result = asyncio.run(Echo().load(payloads, clients=1, max_requests=3, max_duration_s=0.1))
    finally:
        load_generator.GRACE_S = grace
    summary = result.summary()
    assert (summary["requests"], summary["answered"], summary["failed"], summary["lost"]) == (3, 1, 1, 1)
    assert summary["statuses"] == {"200": 1, "500": 1}


def test_a_timeout_is_a_failed_request_with_its_reason():
    result = asyncio.run(Echo().load([{"inputs": "z", "hang": True}], clients=1, max_requests=1, timeout_s=0.2))
    (reply,) = result.replies
    assert reply.status is None and "Timeout" in reply.error
    assert result.summary()["failed"] == 1


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/", "http://localhost/predict", "http://[::1]:9/", "http://127.3.2.1/"]
)
def test_loopback_hosts_are_accepted(url):
    assert check_loopback(url)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://example.com/", "'example.com' is not a loopback address"),
        ("http://10.0.0.1:8080/", "'10.0.0.1' is not a loopback address"),
        ("http://0.0.0.0:8080/", "'0.0.0.0' is not a loopback address"),
        ("ftp://127.0.0.1/", "not 'ftp'"),
    ],
)
def test_other_hosts_are_refused_before_any_request(url, named):
    with pytest.raises(ValueError, match=named):
        asyncio.run(generate_load(url, [{"inputs": "x"}], clients=1, max_requests=1))

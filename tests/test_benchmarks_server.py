"""The server benchmark's plumbing (`python -m benchmarks.server`): the load generator against a small aiohttp echo
server (bounded count and duration, closed-loop clients, loopback only, failed and lost requests counted), the
per-request pipeline server, and the quick run end to end. Timings are never asserted."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from benchmarks import load_generator, server
from benchmarks.common import RESULTS_DIR, render
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


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, trained) -> tuple:
    """``--quick`` on conftest's trained MiniLM: three servers, 1, 8 and 64 clients, once for the module."""
    folder = tmp_path_factory.mktemp("server")
    argv = ["--quick", "--model-dir", str(trained[0]), "--output-dir", str(folder), "--threads", "1"]
    return folder, server.main(argv)


def test_quick_run_loads_every_server_and_every_answer_is_predicts(quick_run):
    folder, data = quick_run
    plan = server.PLANS["quick"]
    assert [(r["clients"], r["contender"]) for r in data["rows"]] == [
        (clients, name) for clients in (1, 8, 64) for name in server.CONTENDERS
    ]
    for row in data["rows"]:
        assert row["requests"] == row["answered"] == plan["requests"][row["clients"]], row
        assert (row["failed"], row["lost"], row["statuses"]) == (0, 0, {"200": row["requests"]}), row
        assert row["equal"] == row["answers"] == row["requests"], row  # the pipeline decodes as predict, too
    assert set(data["servers"]) == set(server.CONTENDERS)
    assert all(s["startup_s"] > 0 and s["exit_code"] is not None for s in data["servers"].values())
    assert data["servers"]["unbatched"]["command"].endswith(" --max-batch-requests 1")
    assert data["reference"]["offline_sentences_per_s"] > 0 and data["reference"]["forward_calls"] == 8
    texts = [v["text"] for v in data["verdicts"]]
    assert texts[0].startswith("64 clients: ") and "x predict's offline rate" in texts[0]
    assert texts[3] == "our server, batching on and off: 0 failed and 0 lost of 176 requests (target 0)"
    assert texts[4] == "our server: 176/176 answers equal to predict's entities for their text (target all)"
    report = (folder / "server.md").read_text()
    assert report == render(server.report, json.loads((folder / "server.json").read_text()))
    assert "**quick**" in report and "| batched (64) |" in server.readme_table(data)


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path):
    started = server.Server("pipeline", str(tmp_path / "no-model"), 1, tmp_path)
    try:
        with pytest.raises(RuntimeError, match=r"(?s)pipeline server exited with 1:.*no-model"):
            started.wait_healthy(timeout_s=120)
    finally:
        started.stop()


def test_verdicts_judge_the_targets_on_given_figures():
    def row(contender, clients, rate, p99=10.0, failed=0, unequal=0):
        row = {"contender": contender, "clients": clients, "sentences_per_s": rate, "p99_ms": p99, "lost": 0}
        answers = 100 - failed
        return row | {"failed": failed, "requests": 100, "answers": answers, "equal": answers - unequal,
                      "cpu_during_timing": None}  # fmt: skip

    data = {"reference": {"offline_sentences_per_s": 100.0, "forward_ms": 6.0, "forward_p99_ms": 8.0}}
    data["rows"] = [row("batched", 1, 50, p99=12.5), row("pipeline", 1, 20), row("batched", 64, 79, failed=1),
                    row("unbatched", 64, 30, unequal=2), row("pipeline", 64, 26)]  # fmt: skip
    found = server.verdicts(data)
    assert [v["pass"] for v in found] == [False, True, False, False, False]
    assert [round(v["value"], 4) for v in found] == [0.79, round(79 / 26, 4), 1.5625, 1, 2]
    data["rows"][0]["p99_ms"] = 12.0
    assert server.verdicts(data)[2]["pass"]


def test_the_committed_report_is_its_json_rendered():
    """Every figure of results/server.md comes from results/server.json (byte for byte), as for the other
    benchmarks (`test_benchmarks.test_each_committed_report_is_its_json_rendered`)."""
    data = json.loads((RESULTS_DIR / "server.json").read_text(encoding="utf-8"))
    assert render(server.report, data) == (RESULTS_DIR / "server.md").read_text(encoding="utf-8")
    assert not data["quick"] and [r["clients"] for r in data["rows"]] == [1, 1, 1, 8, 8, 8, 64, 64, 64]

"""Serving over HTTP (issue 31): ``hf-layer-tokclf serve`` under load from 1, 8 and 64 concurrent clients sending NCBI
test sentences, against the same server with batching off and against a plain token-classification pipeline called
per request behind the same HTTP stack; predict's offline rate and one forward pass in this process are the yardsticks.

    python -m benchmarks.server        # trains the MiniLM to serve (~10 minutes here), then ~10 minutes of load
    python -m benchmarks.server --model-dir runs/server-minilm   # trains into it once, serves it from then on
    python -m benchmarks.server --quick --model-dir runs/ncbi-disease-minilm   # under a minute: a smoke run

Every server runs in a subprocess of its own on a free loopback port (uvicorn, one worker); the load generator
(`benchmarks.load_generator`) runs in this process, so on a small machine it takes some of the cores the server
would have. Each load level runs every contender in a shuffled order, so that a drift of the machine hits all alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks import common, serving
from benchmarks.common import SEED, log, md_table, verdict, verdict_items
from benchmarks.load_generator import LoadResult, run_load
from hf_layer_tokclf.base.files import write_json

MODULE = "benchmarks.server"
STRATEGY = "first"
TARGET_OFFLINE_SHARE = 0.8  # sentences/s at the most clients / predict's offline rate
TARGET_PIPELINE_SPEEDUP = 3.0  # sentences/s at the most clients / the per-request pipeline's
TARGET_P99_FORWARDS = 1.5  # p99 latency at 1 client / one forward pass
STARTUP_TIMEOUT_S = 300.0
TRAINED_NOTE = "server_benchmark_training.json"  # beside the model this benchmark trained: how
CONTENDERS = {
    "batched": "hf-layer-tokclf serve (batching on, the defaults)",
    "unbatched": "hf-layer-tokclf serve --max-batch-requests 1 (batching off)",
    "pipeline": 'pipeline("token-classification") per request, FastAPI + uvicorn, one worker thread',
}
# Every option's value in a full run and in a quick one (an option given on the command line wins).
PLANS: dict[str, dict[str, Any]] = {
    "full": {
        "train": {"steps": 300, "batch": 32, "train": None, "dev": 200},
        "sentences": None,
        "clients": [1, 8, 64],
        "requests": {1: 400, 8: 1500, 64: 3000},
        "warmup": 64,
        "duration_s": 45.0,
        "offline_rounds": 5,
        "offline_budget_s": 120.0,
        "forward_calls": 400,  # the sentences the 1-client level sends
    },
    "quick": {
        "train": {"steps": 8, "batch": 8, "train": 64, "dev": 16},
        "sentences": 16,
        "clients": [1, 8, 64],
        "requests": {1: 8, 8: 16, 64: 64},
        "warmup": 8,
        "duration_s": 20.0,
        "offline_rounds": 3,
        "offline_budget_s": 10.0,
        "forward_calls": 8,
    },
}
OPTIONS: dict[str, dict[str, Any]] = {
    "--model-dir": {
        "default": None,
        "help": "the model to serve; a folder not there yet gets the MiniLM fine-tuned here (default: a temporary one)",
    },
    "--threads": {"type": int, "default": 2, "help": "torch threads, here and in every server (default: 2)"},
    "--sentences": {"type": int, "help": "the first N NCBI test sentences (default: all)"},
    "--duration": {"type": float, "dest": "duration_s", "help": "the longest one load level runs, in s (45)"},
}


# The servers


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_command(name: str, model_dir: str, port: int, threads: int) -> list[str]:
    """How each contender is started: our CLI, or this module's per-request pipeline app."""
    if name == "pipeline":
        code = "import sys; from benchmarks.server import serve_pipeline; serve_pipeline(*sys.argv[1:])"
        return [sys.executable, "-c", code, model_dir, str(port), str(threads)]
    ours = [sys.executable, "-m", "hf_layer_tokclf", "serve", model_dir, "--port", str(port)]
    ours += ["--num-threads", str(threads), "--aggregation-strategy", STRATEGY]
    return ours + ["--max-batch-requests", "1"] * (name == "unbatched")


class Server:
    """One contender's server process on a free loopback port, its output in a log file."""

    def __init__(self, name: str, model_dir: str, threads: int, logs: Path) -> None:
        self.name, self.port, self.log = name, free_port(), logs / f"{name}.log"
        self.command = server_command(name, model_dir, self.port, threads)
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(
                self.command, stdout=output, stderr=subprocess.STDOUT, cwd=common.REPO, env=env
            )
        self.began, self.startup_s, self.exit_code = time.perf_counter(), None, None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_healthy(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Polls ``GET /health`` until it answers 200; a RuntimeError with the server's log if it exits first."""
        while time.perf_counter() - self.began < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} server exited with {self.process.returncode}:\n{self.tail()}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(self.url + "health", timeout=5) as answer,
            ):
                if answer.status == 200:
                    self.startup_s = time.perf_counter() - self.began
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} server not healthy after {timeout_s:.0f} s:\n{self.tail()}")

    def cpu_s(self) -> float:
        """The process's CPU seconds so far (/proc), 0 where it cannot be read."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM (the server finishes what is in flight), then a kill after 60 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.exit_code = self.process.returncode

    def describe(self) -> dict[str, Any]:
        return {
            "command": shlex.join(["python", *self.command[1:]]),
            "startup_s": self.startup_s,
            "exit_code": self.exit_code,
        }


def plain(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A pipeline's entities with numpy numbers made JSON's."""
    kinds = {"score": float, "start": int, "end": int, "index": int}
    return [{key: kinds.get(key, lambda v: v)(value) for key, value in e.items()} for e in entities]


def pipeline_app(model_dir: str) -> Any:
    """What a team writes by hand today: FastAPI calling ``pipeline("token-classification")`` once per request, in
    one worker thread (a pipeline is not safe to call from several at once), the event loop free meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from hf_layer_tokclf.running.loading import load_model

    model, tokenizer = load_model(model_dir, device="auto")
    ner, worker = serving.token_pipeline(model, tokenizer), ThreadPoolExecutor(1)

    async def predict(request: Any) -> JSONResponse:
        inputs = (await request.json())["inputs"]
        found = await asyncio.get_running_loop().run_in_executor(worker, ner, inputs)
        return JSONResponse(plain(found) if isinstance(inputs, str) else [plain(one) for one in found])

    async def health(request: Any) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = FastAPI()
    app.add_route("/", predict, methods=["POST"])  # plain Starlette routes: the handler reads the request itself
    app.add_route("/health", health, methods=["GET"])
    return app


def serve_pipeline(model_dir: str, port: str, threads: str) -> None:
    """The pipeline contender's process: `pipeline_app` under uvicorn at 127.0.0.1:`port`."""
    import torch
    import uvicorn

    torch.set_num_threads(int(threads))
    uvicorn.run(pipeline_app(model_dir), host="127.0.0.1", port=int(port), log_level="warning")


# The yardsticks, in this process


def references(model_dir: str, texts: list[str], plan: dict[str, Any]) -> dict[str, Any]:
    """predict's entities for every text, its offline rate on all of them (sentences/s, median of interleaved
    rounds) and one forward pass: `predict_texts` on one sentence, median over `forward_calls` sentences in turn."""
    from hf_layer_tokclf.running.loading import load_model
    from hf_layer_tokclf.running.texts import predict_texts

    model, tokenizer = load_model(model_dir, device="auto")
    offline = {"predict": lambda: list(predict_texts(model, tokenizer, texts, aggregation_strategy=STRATEGY))}
    offline["predict"]()  # warm-up
    timings, cpu = common.interleaved(
        offline, plan["offline_rounds"], budget_s=plan["offline_budget_s"], label="predict offline"
    )
    calls = [texts[i % len(texts)] for i in range(plan["forward_calls"])]
    for text in calls[:8]:  # warm-up
        list(predict_texts(model, tokenizer, [text], aggregation_strategy=STRATEGY))
    start, samples = common.cpu_times(), []
    for text in calls:
        began = time.perf_counter()
        list(predict_texts(model, tokenizer, [text], aggregation_strategy=STRATEGY))
        samples.append(time.perf_counter() - began)
    timing = timings["predict"]
    found = {"expected": timing.output, "offline_sentences_per_s": len(texts) / timing.median}
    found |= {"offline": timing.spread("s"), "offline_cpu_during_timing": cpu}
    found |= {"forward_ms": 1e3 * statistics.median(samples), "forward_p99_ms": 1e3 * percentile(samples, 99)}
    return found | {"forward_calls": len(samples), "forward_cpu_during_timing": common.cpu_share(start)}


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


# The load


def agreement(result: LoadResult, expected: list[list[dict]]) -> dict[str, Any]:
    """How many answers (200s) are predict's entities for their text: labels, offsets and words equal, scores
    within `serving.SCORE_TOLERANCE`."""
    equal, worst = 0, 0.0
    for reply in result.replies:
        if not reply.ok:
            continue
        wanted = expected[reply.payload % len(expected)]
        answer = reply.answer if isinstance(reply.answer, list) else []
        try:
            same = serving.compare_entities([wanted], [answer])
        except (KeyError, TypeError, ValueError):  # not entity dicts: unequal
            continue
        equal += same["identical"]
        worst = max(worst, same["max_score_diff"])
    return {"answers": sum(r.ok for r in result.replies), "equal": equal, "max_score_diff": worst}


def load_level(
    servers: dict[str, Server],
    clients: int,
    payloads: list[dict],
    plan: dict[str, Any],
    expected: list[list[dict]],
    rng: random.Random,
) -> list[dict[str, Any]]:
    """Every contender under `clients` closed-loop clients, in a shuffled order; one row each."""
    rows, order = {}, list(servers)
    rng.shuffle(order)
    for name in order:
        children, start = sum(s.cpu_s() for s in servers.values()), common.cpu_times()
        result = run_load(
            servers[name].url,
            payloads,
            clients=clients,
            max_requests=plan["requests"][clients],
            max_duration_s=plan["duration_s"],
        )
        cpu = common.cpu_share(start)
        if cpu is not None:  # the servers are ours: their CPU is not another process's
            theirs = (sum(s.cpu_s() for s in servers.values()) - children) / result.wall_s
            cpu |= {"other_processes_cores": max(0.0, cpu["other_processes_cores"] - theirs)}
            cpu |= {"client_cores": cpu["own_cores"], "own_cores": cpu["own_cores"] + theirs}
        rows[name] = {"contender": name, "title": CONTENDERS[name], **result.summary()}
        rows[name] |= agreement(result, expected) | {"cpu_during_timing": cpu}
        row = rows[name]
        log(
            f"  {clients:>3} clients, {name}: {row['sentences_per_s']:.1f} sentences/s, p99 {row['p99_ms'] or 0:.0f} "
            f"ms, {row['failed']} failed, {row['lost']} lost"
        )
    return [rows[name] for name in servers]


def serve_and_load(
    model_dir: str, texts: list[str], expected: list[list[dict]], plan: dict[str, Any], threads: int
) -> dict[str, Any]:
    """Starts every contender (all at once: idle, they take no CPU), warms each up, runs every load level."""
    payloads, rng = [{"inputs": text} for text in texts], random.Random(SEED)
    with tempfile.TemporaryDirectory(prefix="server-bench-") as logs:
        servers = {name: Server(name, model_dir, threads, Path(logs)) for name in CONTENDERS}
        try:
            for server in servers.values():
                server.wait_healthy()
                log(f"  {server.name} server healthy after {server.startup_s:.1f} s")
                run_load(server.url, payloads, clients=4, max_requests=plan["warmup"])  # warm-up
            rows = [
                row
                for clients in plan["clients"]
                for row in load_level(servers, clients, payloads, plan, expected, rng)
            ]
        finally:
            for server in servers.values():
                server.stop()
    return {"rows": rows, "servers": {name: server.describe() for name, server in servers.items()}}


def measure(args: Any) -> dict[str, Any]:
    plan = dict(PLANS["quick" if args.quick else "full"])
    plan |= {key: getattr(args, key) for key in plan if getattr(args, key, None) is not None}
    started, load = time.strftime("%Y-%m-%d %H:%M:%S %z"), common.load_average()
    with tempfile.TemporaryDirectory(prefix="server-model-") as tmp, common.benchmark_settings(args.threads):
        model_dir = args.model_dir or str(Path(tmp) / "model")
        trained = model_to_serve(Path(model_dir), plan["train"])
        sentences = common.ncbi_sentences("test.tsv")[: plan["sentences"]]
        texts = [" ".join(s.tokens) for s in sentences]
        log(f"predict on {len(texts)} NCBI test sentences in this process ...")
        reference = references(model_dir, texts, plan)
        log("the servers ...")
        served = serve_and_load(model_dir, texts, reference.pop("expected"), plan, args.threads)
    facts = {"quick": args.quick, "started": started, "load_average_at_start": load, "threads": args.threads}
    facts |= {"model": model_line(model_dir, trained), "trained": trained}
    facts |= {"sentences": len(texts), "words": sum(len(s.tokens) for s in sentences), "plan": plan}
    data = facts | {"reference": reference, **served, "load_average_at_end": common.load_average()}
    return data | {"verdicts": verdicts(data)}


def model_to_serve(model_dir: Path, plan: dict[str, Any]) -> dict[str, Any] | None:
    """How the model in `model_dir` was trained: a folder that does not exist yet gets the packaged MiniLM fine-tuned on
    NCBI-disease (`serving.train_model`), with a note of how (`TRAINED_NOTE`) so that a later run can serve it again;
    None for a model trained elsewhere."""
    note = model_dir / TRAINED_NOTE
    if model_dir.exists():
        return json.loads(note.read_text()) if note.is_file() else None
    log(f"training a MiniLM for {plan['steps']} steps into {model_dir} (--model-dir DIR keeps it for the next run) ...")
    trained = serving.train_model(model_dir, plan, hidden_layer=-1)
    write_json(note, trained)
    return trained


def model_line(model_dir: str, trained: dict[str, Any] | None) -> str:
    if trained is None:
        return f"`{model_dir}`"
    return (
        f"packaged MiniLM fine-tuned by this benchmark for {trained['steps']} steps on NCBI-disease train "
        f"(hidden_layer=-1; dev F1 {100 * (trained['dev_f1'] or 0):.2f}, {trained['wall_s']:.0f} s)"
    )


# Verdicts and reports


def row_of(data: dict[str, Any], contender: str, clients: int) -> dict[str, Any]:
    return next(r for r in data["rows"] if r["contender"] == contender and r["clients"] == clients)


def verdicts(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, judged on the most clients measured (64 in a full run) and on 1 client."""
    reference, most = data["reference"], max(r["clients"] for r in data["rows"])
    ours, pipeline, alone = (
        row_of(data, name, n) for name, n in (("batched", most), ("pipeline", most), ("batched", 1))
    )
    offline = ours["sentences_per_s"] / reference["offline_sentences_per_s"]
    speedup = ours["sentences_per_s"] / pipeline["sentences_per_s"] if pipeline["sentences_per_s"] else float("inf")
    # Like for like: the p99 of the answers' latency against the p99 of one forward pass over the same sentences (the
    # tail of both is the longest sentences'); the median forward pass is said beside it.
    p99 = alone["p99_ms"] / reference["forward_p99_ms"]
    served = [r for r in data["rows"] if r["contender"] != "pipeline"]
    failed, lost = sum(r["failed"] for r in served), sum(r["lost"] for r in served)
    unequal = sum(r["answers"] - r["equal"] for r in served)
    return [
        verdict(
            offline >= TARGET_OFFLINE_SHARE,
            f"{most} clients: {ours['sentences_per_s']:.1f} sentences/s = "
            f"{offline:.2f} x predict's offline rate ({reference['offline_sentences_per_s']:.1f}; target >= "
            f"{TARGET_OFFLINE_SHARE})",
            ours["cpu_during_timing"],
            value=offline,
        ),
        verdict(
            speedup >= TARGET_PIPELINE_SPEEDUP,
            f"{most} clients: {speedup:.2f} x the sentences/s of the "
            f"per-request pipeline ({pipeline['sentences_per_s']:.1f}; target >= {TARGET_PIPELINE_SPEEDUP})",
            ours["cpu_during_timing"],
            value=speedup,
        ),
        verdict(
            p99 <= TARGET_P99_FORWARDS,
            f"1 client: p99 latency {alone['p99_ms']:.1f} ms = {p99:.2f} x the p99 of one forward pass over the same "
            f"sentences ({reference['forward_p99_ms']:.1f} ms, predict_texts on one sentence; median "
            f"{reference['forward_ms']:.1f} ms; target <= {TARGET_P99_FORWARDS})",
            alone["cpu_during_timing"],
            value=p99,
        ),
        verdict(
            failed == lost == 0,
            f"our server, batching on and off: {failed} failed and {lost} lost of "
            f"{sum(r['requests'] for r in served)} requests (target 0)",
            value=failed + lost,
        ),
        verdict(
            unequal == 0,
            f"our server: {sum(r['equal'] for r in served)}/{sum(r['answers'] for r in served)} "
            f"answers equal to predict's entities for their text (target all)",
            value=unequal,
        ),
    ]


def rows_table(data: dict[str, Any]) -> list[str]:
    rows = [r | {"name": f"{r['contender']} ({r['clients']})"} for r in data["rows"]]
    return md_table(
        "server (clients) | requests/s | sentences/s | p50 ms | p99 ms | failed | lost | equal to predict",
        "| {name} | {requests_per_s:.1f} | {sentences_per_s:.1f} | {p50_ms:.1f} | {p99_ms:.1f} | {failed} | {lost} "
        "| {equal}/{answers} |",
        rows,
    )


def contention_table(data: dict[str, Any]) -> list[str]:
    """What other processes took while each level ran (the servers and the clients count as this benchmark's)."""
    rows = [r | (r["cpu_during_timing"] or {}) | {"name": f"{r['contender']} ({r['clients']})"} for r in data["rows"]]
    shared = [r["name"] for r in rows if common.shared_machine(r["cpu_during_timing"])]
    warning = f"**The machine was shared during {', '.join(shared)}: absolute rates are inflated; rerun when idle.**"
    table = md_table(
        "server (clients) | other processes | hypervisor steal | the servers and the clients | the clients alone",
        "| {name} | {other_processes_cores:.2f} | {steal_cores:.2f} | {own_cores:.2f} | {client_cores:.2f} |",
        rows,
    )
    return [
        "Cores busy on average while each level ran (the clients: the load generator, in this process):",
        "",
        *table,
        *(["", warning] if shared else []),
    ]


def reference_line(data: dict[str, Any]) -> str:
    reference = data["reference"]
    return (
        f"In this process: predict_texts on all {data['sentences']} sentences, "
        f"**{reference['offline_sentences_per_s']:.1f} sentences/s** (median of "
        f"{len(reference['offline']['samples_s'])} rounds); one forward pass (predict_texts on one sentence, median of "
        f"{reference['forward_calls']}): "
        f"**{reference['forward_ms']:.1f} ms** (p99 {reference['forward_p99_ms']:.1f} ms)."
    )


def report(data: dict[str, Any]) -> str:
    quick = " (**quick**: a smoke run, not a measurement)" if data["quick"] else ""
    lines = [
        "# Serving over HTTP: the entity server under load",
        "",
        f"Command: `{data['command']}`{quick}; started "
        f"{data['started']}, load average {data['load_average_at_start']} then, {data['load_average_at_end']} "
        "at the end.",
        "",
    ]
    lines += ["## Verdicts", "", *verdict_items(data["verdicts"]), ""]
    lines += [
        f"Model: {data['model']}; {data['sentences']} NCBI-disease test sentences ({data['words']} words), one "
        f"per request, detokenized by spaces; aggregation_strategy={STRATEGY!r}; {data['threads']} torch "
        "threads in each server and here.",
        "",
        reference_line(data),
        "",
    ]
    lines += ["## The servers", ""]
    lines += md_table(
        "name | what | command | ready after s | exit code",
        "| {name} | {title} | `{command}` | {startup_s:.1f} | {exit_code} |",
        [s | {"name": n, "title": CONTENDERS[n]} for n, s in data["servers"].items()],
        left=3,
    )
    lines += ["", "## Under load", ""]
    lines += [
        "Closed-loop clients (each sends its next request when its previous one is answered) from this process; "
        "a level stops after its request count or its duration, whichever comes first. failed: an answer "
        "other than 200 or none; lost: sent and never answered.",
        "",
    ]
    return "\n".join([*lines, *rows_table(data), "", *contention_table(data)])


def readme_table(data: dict[str, Any]) -> str:
    """The README's table: every contender at every load level, the yardsticks, the verdicts."""
    return "\n".join(
        [
            f"{data['sentences']} NCBI test sentences, one per request, {data['machine']['device']}, "
            f"{data['machine']['os_cpu_count']} cores (load average {data['load_average_at_start']} at the start); "
            f"model: {data['model']}.",
            "",
            *rows_table(data),
            "",
            reference_line(data),
            "",
            *verdict_items(data["verdicts"]),
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return common.run_and_publish(
        MODULE,
        __doc__,
        measure,
        report,
        argv,
        OPTIONS,
        quick="under a minute: 16 sentences, a few dozen requests per level",
    )


if __name__ == "__main__":
    main()

"""What every benchmark shares: interleaved timing rounds, the machine it ran on, Markdown tables,
verdicts, child processes and writing Markdown + JSON atomically."""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers

from hf_layer_tokclf.base.files import atomic_writer, write_json

REPO = Path(__file__).resolve().parent.parent
NCBI = REPO / "data" / "ncbi-disease"
RESULTS_DIR = REPO / "benchmarks" / "results"
SEED = 0
MIN_ROUNDS = 3  # a time budget never stops a benchmark before this many rounds
CONTENDED_CORES = 0.15  # other processes' average CPU use above which a table is flagged


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries the report."""
    print(message, file=sys.stderr, flush=True)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(device: torch.device | None) -> None:
    """Waits for queued GPU work, so that a timer measures it."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def ncbi_sentences(name: str) -> list[Any]:
    """The sentences of one NCBI-disease file (``train.tsv``, ``devel.tsv``, ``test.tsv``), labels in IOB2."""
    from hf_layer_tokclf.formats.labels import normalize_labels
    from hf_layer_tokclf.formats.loading import load_sentences

    return normalize_labels(load_sentences(str(NCBI / name)))[0]


@dataclass
class Timing:
    """One contender's samples: seconds per call, and what the kernel saw meanwhile (per call)."""

    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # this process's CPU seconds
    faults: list[float] = field(default_factory=list)  # minor page faults: memory mapped afresh
    kernel: list[float] = field(default_factory=list)  # system time's share of this process's CPU time
    inner: int = 1  # calls per sample
    output: Any = None  # what the first timed call returned

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def spread(self, unit: str = "ms") -> dict[str, Any]:
        """Median, minimum, interquartile range (% of the median) and every sample, in ``unit``."""
        scale = {"ms": 1e3, "s": 1.0}[unit]
        median = self.median
        p25, _, p75 = statistics.quantiles(self.samples, n=4) if len(self.samples) > 1 else (median,) * 3
        return {
            f"median_{unit}": median * scale,
            f"min_{unit}": min(self.samples) * scale,
            "iqr_pct": (p75 - p25) / median * 100 if median else 0.0,
            f"samples_{unit}": [s * scale for s in self.samples],
        }


def _measure(timing: Timing, fn: Callable[[], Any], device: torch.device | None) -> None:
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(timing.inner):
        output = fn()
    sync(device)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    system, user = after.ru_stime - before.ru_stime, after.ru_utime - before.ru_utime
    timing.samples.append(wall / timing.inner)
    timing.cpu.append((system + user) / timing.inner)
    timing.faults.append((after.ru_minflt - before.ru_minflt) / timing.inner)
    timing.kernel.append(system / max(system + user, 1e-9))
    if len(timing.samples) == 1:
        timing.output = output


def interleaved(
    fns: dict[Hashable, Callable[[], Any]],
    rounds: int,
    *,
    warmup: int = 0,
    budget_s: float = math.inf,
    min_sample_s: float = 0.0,
    label: str = "",
    device: torch.device | None = None,
    alternate: bool = False,
) -> tuple[dict[Hashable, Timing], dict[str, float] | None]:
    """Times every contender once per round, in a fresh random order (or alternating, for two), so that
    a drift of the machine hits all alike; medians over rounds are then comparable as ratios.

    Calls shorter than `min_sample_s` repeat inside one sample. Stops after the round that exceeds
    `budget_s`, once MIN_ROUNDS are done. Returns the timings and the CPU other processes used.
    """
    timings = {name: Timing() for name in fns}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    for name, fn in fns.items() if min_sample_s else ():
        start = time.perf_counter()
        fn()
        sync(device)
        timings[name].inner = max(1, math.ceil(min_sample_s / max(time.perf_counter() - start, 1e-9)))
    rng, order, began, share = random.Random(SEED), list(fns), time.perf_counter(), CpuShare()
    for number in range(1, rounds + 1):
        if alternate:
            order = list(fns) if number % 2 else list(fns)[::-1]
        else:
            rng.shuffle(order)
        gc.collect()
        gc.disable()  # a collection inside one sample would charge it to one contender
        try:
            for name in order:
                _measure(timings[name], fns[name], device)
        finally:
            gc.enable()
        elapsed = time.perf_counter() - began
        over_budget = elapsed > budget_s and number >= MIN_ROUNDS
        if label and (number == 1 or number % 5 == 0 or number == rounds or over_budget):
            log(f"  [{label}] round {number}/{rounds}, {elapsed:.0f} s")
        if over_budget and number < rounds:
            log(f"  [{label}] time budget of {budget_s:.0f} s spent: stopping after {number} rounds")
            break
    return timings, share.stop()


@contextmanager
def competing_load(cores: int = 1, timeout_s: float = 3600.0) -> Iterator[list[subprocess.Popen]]:
    """``cores`` processes that each keep a core busy while the ``with`` block runs (a user's machine is rarely
    idle): a busy loop in a fresh interpreter, killed at the block's end, and ending by itself after ``timeout_s``
    so that a crash of ours never leaves one spinning."""
    spin = f"import time\nend = time.monotonic() + {float(timeout_s)}\nwhile time.monotonic() < end:\n    pass\n"
    children = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(cores)]
    try:
        yield children
    finally:
        for child in children:
            child.kill()
            child.wait()


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    except OSError:
        return platform.processor() or None


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def machine_facts() -> dict[str, Any]:
    """The facts a timing needs beside it: processor, threads, library versions, load."""
    return {
        "device": "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu_model": cpu_model(),
        "os_cpu_count": os.cpu_count(),
        "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load_average(),
    }


def machine_line(facts: dict[str, Any]) -> str:
    return "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items())


def write_results(output_dir: Path, name: str, markdown: str, data: dict[str, Any]) -> None:
    """Writes ``name.md`` and ``name.json`` under ``output_dir``, each atomically."""
    with atomic_writer(output_dir / f"{name}.md") as f:
        f.write(markdown)
    write_json(output_dir / f"{name}.json", data)
    print(f"wrote {output_dir / name}.md and .json")


def run_child(module: str, job: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs ``python -m module JOB`` in a fresh interpreter (its own allocator state and peak memory) and
    returns the JSON it printed last; its progress shares our stderr."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error", **(env or {})}
    command = [sys.executable, "-m", module, json.dumps(job)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{module} child exited with {done.returncode} (its errors are above)")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_main(measure: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """The child side of `run_child`: the job from argv, its result as the last line of stdout."""
    job = json.loads(sys.argv[1])
    torch.set_num_threads(job["threads"])
    transformers.logging.set_verbosity_error()
    print(json.dumps(measure(job)))
    return 0


class CpuShare:
    """CPU used by *other* processes (and stolen by the hypervisor) while timing, in cores: busy time
    of the whole machine from /proc/stat minus this process's own CPU time, over wall time."""

    def __init__(self) -> None:
        self.start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float, float] | None:
        try:
            with open("/proc/stat", encoding="utf-8") as handle:
                values = [int(v) for v in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        steal = values[7] if len(values) > 7 else 0
        own = os.times()
        return time.perf_counter(), (sum(values[:8]) - idle) / hz, steal / hz, own.user + own.system

    def stop(self) -> dict[str, float] | None:
        end = self._snapshot()
        if self.start is None or end is None:
            return None
        wall = end[0] - self.start[0]
        busy, steal, own = (end[i] - self.start[i] for i in (1, 2, 3))
        return {
            "other_processes_cores": max(0.0, busy - own) / wall,
            "steal_cores": steal / wall,
            "own_cores": own / wall,
        }


def shared_machine(cpu: dict[str, float] | None) -> bool:
    return cpu is not None and cpu["other_processes_cores"] + cpu["steal_cores"] > CONTENDED_CORES


def contention_lines(cpu: dict[str, float] | None) -> list[str]:
    if cpu is None:
        return []
    text = (
        f"While timing, other processes used {cpu['other_processes_cores']:.2f} cores on average "
        f"(hypervisor steal {cpu['steal_cores']:.2f}; this benchmark {cpu['own_cores']:.2f})."
    )
    if shared_machine(cpu):
        text += " **The machine was shared: absolute times are inflated and ratios noisier; rerun when idle.**"
    return [text, ""]


def verdict(ok: bool, text: str, cpu: dict[str, float] | None = None, **values: Any) -> dict[str, Any]:
    """A PASS/FAIL line on a target; a timing taken on a shared machine says so."""
    if shared_machine(cpu):
        text += f"; machine shared ({cpu['other_processes_cores']:.2f} other cores), rerun when idle"
    return {"pass": bool(ok), "text": text, **values}


def verdict_line(verdict: dict[str, Any]) -> str:
    """A verdict as the benchmarks print it: ``VERDICT PASS: ...`` or ``VERDICT FAIL: ...``."""
    return f"VERDICT {'PASS' if verdict['pass'] else 'FAIL'}: {verdict['text']}"


def ratio(value: float, baseline: float) -> float | None:
    """None where the baseline is not above zero (e.g. a tiny model's activations read 0 MiB)."""
    return value / baseline if baseline > 0 else None


def ratio_cell(value: float | None, fmt: str = "{:.3f}") -> str:
    """A ratio to three decimals, or a dash where none exists."""
    return "—" if value is None else fmt.format(value)


class _Cell:
    """A table cell: a dash for a missing value, ``p`` at the end of a format spec for points (x 100)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        if self.value is None:
            return "—"
        return format(100 * self.value, spec[:-1]) if spec.endswith("p") else format(self.value, spec)


class _Cells(dict):
    def __missing__(self, key: str) -> _Cell:
        return _Cell(None)


def md_row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def md_header(header: str, left: int = 1) -> list[str]:
    """The column names (joined by " | ") and the alignment row: `left` columns left, the others right."""
    names = header.split(" | ")
    return [md_row(names), "|" + "---|" * left + "---:|" * (len(names) - left)]


def md_table(header: str, template: str, rows: Iterable[dict[str, Any]], left: int = 1) -> list[str]:
    """A Markdown table: `header` is the column names joined by " | ", `template` a row's format string
    over the keys of each of `rows`; the first `left` columns aligned left, the others (numbers) right."""
    return md_header(header, left) + [
        template.format_map(_Cells({k: _Cell(v) for k, v in row.items()})) for row in rows
    ]

"""The harness every benchmark shares: interleaved timing rounds with warm-up and repeats, the machine it
ran on, a competing load, Markdown tables, verdicts, the command line, training on NCBI-disease, child
processes, and writing Markdown + JSON under ``benchmarks/results/`` atomically."""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers

from hf_layer_tokclf.base.files import atomic_writer, write_json

REPO = Path(__file__).resolve().parent.parent
NCBI = REPO / "data" / "ncbi-disease"
SHARED_DATA = REPO.parent / "shared" / "data"  # the corpora beside the repository: NCBI-disease, BioNLP13CG
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
    return sentences_of(NCBI / name)


def sentences_of(path: Path) -> list[Any]:
    """The labeled sentences of one data file, labels in IOB2."""
    from hf_layer_tokclf.formats.labels import normalize_labels
    from hf_layer_tokclf.formats.loading import load_sentences

    return normalize_labels(load_sentences(str(path)))[0]


def ncbi_files(test: bool = True) -> dict[str, str]:
    """NCBI-disease's files as `arguments.DataArguments` names them (train, dev and, with `test`, test)."""
    files = {"train_file": "train.tsv", "validation_file": "devel.tsv", "test_file": "test.tsv"}
    return {key: str(NCBI / name) for key, name in files.items() if test or key != "test_file"}


# Timing


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
        scale, median = {"ms": 1e3, "s": 1.0}[unit], self.median
        p25, _, p75 = statistics.quantiles(self.samples, n=4) if len(self.samples) > 1 else (median,) * 3
        return {
            f"median_{unit}": median * scale,
            f"min_{unit}": min(self.samples) * scale,
            "iqr_pct": (p75 - p25) / median * 100 if median else 0.0,
            f"samples_{unit}": [s * scale for s in self.samples],
        }

    def measure(self, fn: Callable[[], Any], device: torch.device | None) -> None:
        """One sample: `inner` calls of `fn`, with the wall time, CPU time and page faults they took."""
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(self.inner):
            output = fn()
        sync(device)
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
        system, user = after.ru_stime - before.ru_stime, after.ru_utime - before.ru_utime
        self.samples.append(wall / self.inner)
        self.cpu.append((system + user) / self.inner)
        self.faults.append((after.ru_minflt - before.ru_minflt) / self.inner)
        self.kernel.append(system / max(system + user, 1e-9))
        if len(self.samples) == 1:
            self.output = output


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
    rng, order, began, cpu = random.Random(SEED), list(fns), time.perf_counter(), cpu_times()
    for number in range(1, rounds + 1):
        if alternate:
            order = list(fns) if number % 2 else list(fns)[::-1]
        else:
            rng.shuffle(order)
        gc.collect()
        gc.disable()  # a collection inside one sample would charge it to one contender
        try:
            for name in order:
                timings[name].measure(fns[name], device)
        finally:
            gc.enable()
        elapsed = time.perf_counter() - began
        over_budget = elapsed > budget_s and number >= MIN_ROUNDS
        if label and (number == 1 or number % 5 == 0 or number == rounds or over_budget):
            log(f"  [{label}] round {number}/{rounds}, {elapsed:.0f} s")
        if over_budget and number < rounds:
            log(f"  [{label}] time budget of {budget_s:.0f} s spent: stopping after {number} rounds")
            break
    return timings, cpu_share(cpu)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """What one call of `fn` returned, and its wall seconds (for what runs once: a fine-tune, an export)."""
    began = time.perf_counter()
    return fn(), time.perf_counter() - began


@contextlib.contextmanager
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


def cpu_times() -> tuple[float, float, float, float] | None:
    """Now, the machine's busy and hypervisor-stolen CPU seconds (/proc/stat), and this process's own."""
    try:
        with open("/proc/stat", encoding="utf-8") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz, own = os.sysconf("SC_CLK_TCK"), os.times()
    idle, steal = values[3] + (values[4] if len(values) > 4 else 0), values[7] if len(values) > 7 else 0
    return time.perf_counter(), (sum(values[:8]) - idle) / hz, steal / hz, own.user + own.system


def cpu_share(start: tuple[float, float, float, float] | None) -> dict[str, float] | None:
    """CPU used by *other* processes (and stolen) since `start` (a `cpu_times`), in cores on average."""
    end = cpu_times()
    if start is None or end is None:
        return None
    wall, busy, steal, own = (e - s for e, s in zip(end, start, strict=True))
    return {"other_processes_cores": max(0.0, busy - own) / wall, "steal_cores": steal / wall, "own_cores": own / wall}


def shared_machine(cpu: dict[str, float] | None) -> bool:
    return cpu is not None and cpu["other_processes_cores"] + cpu["steal_cores"] > CONTENDED_CORES


def contention_lines(cpu: dict[str, float] | None) -> list[str]:
    """What other processes took while timing, and a warning where the machine was shared."""
    if cpu is None:
        return []
    text = (
        f"While timing, other processes used {cpu['other_processes_cores']:.2f} cores on average "
        f"(hypervisor steal {cpu['steal_cores']:.2f}; this benchmark {cpu['own_cores']:.2f})."
    )
    if shared_machine(cpu):
        text += " **The machine was shared: absolute times are inflated and ratios noisier; rerun when idle.**"
    return [text, ""]


# The machine


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    except OSError:
        return platform.processor() or None


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


@contextlib.contextmanager
def benchmark_settings(threads: int) -> Iterator[None]:
    """`threads` torch threads and transformers quiet for the block, the caller's settings back after it."""
    verbosity, bars = transformers.logging.get_verbosity(), transformers.utils.logging.is_progress_bar_enabled()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()  # load reports of random heads and skipped layers
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        torch.set_num_threads(before)
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.logging.enable_progress_bar()


# Verdicts and Markdown


def verdict(ok: bool, text: str, cpu: dict[str, float] | None = None, **values: Any) -> dict[str, Any]:
    """A PASS/FAIL line on a target; a timing taken on a shared machine says so."""
    if shared_machine(cpu):
        text += f"; machine shared ({cpu['other_processes_cores']:.2f} other cores), rerun when idle"
    return {"pass": bool(ok), "text": text, **values}


def pass_fail(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def verdict_line(verdict: dict[str, Any]) -> str:
    """A verdict as the benchmarks print it: ``VERDICT PASS: ...`` or ``VERDICT FAIL: ...``."""
    return f"VERDICT {pass_fail(verdict['pass'])}: {verdict['text']}"


def verdict_items(verdicts: Iterable[dict[str, Any]]) -> list[str]:
    """Verdicts as a Markdown list, ``- PASS: ...``."""
    return [f"- {pass_fail(v['pass'])}: {v['text']}" for v in verdicts]


def ratio(value: float, baseline: float) -> float | None:
    """None where the baseline is not above zero (e.g. a tiny model's activations read 0 MiB)."""
    return value / baseline if baseline > 0 else None


class Cell:
    """A table cell: a dash for a missing value, ``p`` at the end of a format spec for points (x 100)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        if self.value is None:
            return "—"
        return format(100 * self.value, spec[:-1]) if spec.endswith("p") else format(self.value, spec)


class Cells(dict):
    """A row's cells by key, a dash for a key the row lacks."""

    def __missing__(self, key: str) -> Cell:
        return Cell(None)


def md_row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def md_header(header: str, left: int = 1) -> list[str]:
    """The column names (joined by " | ") and the alignment row: `left` columns left, the others right."""
    names = header.split(" | ")
    return [md_row(names), "|" + "---|" * left + "---:|" * (len(names) - left)]


def md_table(header: str, template: str, rows: Iterable[dict[str, Any]], left: int = 1) -> list[str]:
    """A Markdown table: `header` is the column names joined by " | ", `template` a row's format string
    over the keys of each of `rows`; the first `left` columns aligned left, the others (numbers) right."""
    return md_header(header, left) + [template.format_map(Cells({k: Cell(v) for k, v in r.items()})) for r in rows]


# The command line and the results files


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that ran, as one would type it again."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def parser_of(module: str, doc: str, quick: str | None = None) -> argparse.ArgumentParser:
    """A benchmark's command line: its name, its docstring's first line, ``--output-dir`` and (with the help
    text `quick`) ``--quick``."""
    parser = argparse.ArgumentParser(allow_abbrev=False, prog=f"python -m {module}", description=doc.split("\n")[0])
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR, help=f"default: {RESULTS_DIR}")
    if quick:
        parser.add_argument("--quick", action="store_true", help=quick)
    return parser


def run_and_publish(
    module: str, doc: str, measure: Callable[[argparse.Namespace], dict], report: Callable, argv: list[str] | None,
    options: dict[str, dict[str, Any]] | None = None, quick: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A stand-alone benchmark's main: its command line (`options`: flag -> add_argument's keywords), `measure`
    of the parsed arguments, the command that ran and the machine added, the report written and printed."""
    parser = parser_of(module, doc, quick)
    for flag, keywords in (options or {}).items():
        parser.add_argument(flag, **keywords)
    args = parser.parse_args(argv)
    data = {"command": command_line(module, argv), **measure(args)}
    return publish(args.output_dir, module.rsplit(".", 1)[1], data, report)


def write_results(output_dir: Path, name: str, markdown: str, data: dict[str, Any]) -> None:
    """Writes ``name.md`` and ``name.json`` under ``output_dir``, each atomically."""
    with atomic_writer(Path(output_dir) / f"{name}.md") as f:
        f.write(markdown)
    write_json(Path(output_dir) / f"{name}.json", data)
    print(f"wrote {Path(output_dir) / name}.md and .json")


def render(report: Callable[[dict[str, Any]], str], data: dict[str, Any]) -> str:
    """A results file's Markdown: the report of `data`, then the machine it ran on."""
    return "\n".join([report(data), "", machine_line(data["machine"])]) + "\n"


def publish(output_dir: Path, name: str, data: dict[str, Any], report: Callable[[dict[str, Any]], str]) -> dict:
    """The machine's facts added to `data`, its report written beside it and printed; returns `data`."""
    data.setdefault("machine", machine_facts())
    markdown = render(report, data)
    write_results(output_dir, name, markdown, data)
    print(markdown)
    return data


# Training on NCBI-disease


def main_job_argv(quick: bool = False) -> list[str]:
    """The README's main-job `train` options, read from the README itself so the two cannot drift (`quick`:
    500 training sentences, one epoch); they name data/ relative to the repository."""
    readme = (REPO / "README.md").read_text()
    line = next(line for line in readme.splitlines() if "hf-layer-tokclf train --train-file" in line)
    argv = shlex.split(line.split("hf-layer-tokclf train", 1)[1])
    output = argv.index("--output-dir")
    return argv[:output] + argv[output + 2 :] + (["--max-train-samples", "500", "--num-train-epochs", "1"] * quick)


def train_cli(argv: list[str], output_dir: Path, model_class: type | None = None) -> dict[str, Any]:
    """Trains as ``hf-layer-tokclf train ARGV`` would into ``output_dir``: its metrics and wall time."""
    from hf_layer_tokclf.cli.train import train_parser
    from hf_layer_tokclf.training.train import train

    options = [*argv, "--output-dir", str(output_dir), "--disable-tqdm", "true"]
    model_args, data_args, run_args, training_args = train_parser().parse_args_into_dataclasses(options)
    with contextlib.redirect_stdout(io.StringIO()):
        metrics, wall = timed(lambda: train(model_args, data_args, training_args, run_args, model_class=model_class))
    return {"wall_s": round(wall, 1), **metrics}


# Child processes


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
    with benchmark_settings(job["threads"]), contextlib.redirect_stdout(io.StringIO()):  # stdout: the JSON only
        result = measure(job)
    print(json.dumps(result))
    return 0

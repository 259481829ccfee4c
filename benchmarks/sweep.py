"""The layer sweep's promise, measured: probing all 7 layers costs about as much as probing one.

    python -m benchmarks.sweep [--quick] [--rounds N] [--threads N] [--output-dir benchmarks/results]

`sweep(layers=0..6)` against `sweep(layers=[6])` on NCBI-disease with the packaged MiniLM, in alternating order;
writes ``sweep.md``, ``sweep.json`` and ``sweep.png``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from typing import Any

import torch

from benchmarks import common

TARGET = 1.5
LAYERS = {"all": list(range(7)), "one": [6]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = common.parser_of("benchmarks.sweep", __doc__, quick="1000 training and 300 dev sentences.")
    parser.add_argument("--rounds", type=int, default=1, help="Timed rounds, alternating the order (default: 1).")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice).")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from hf_layer_tokclf.training.arguments import DataArguments, default_backbone
    from hf_layer_tokclf.training.splits import read_splits
    from hf_layer_tokclf.training.sweep import sweep

    limits = {"max_train_samples": 1000, "max_eval_samples": 300} if args.quick else {}
    splits, _ = read_splits(DataArguments(**common.ncbi_files(test=False), **limits))
    train, dev, model = splits["train"], splits["validation"], default_backbone()
    load_start = common.load_average()
    print("warm-up sweep (50 sentences) ...", flush=True)
    sweep(model, train[:50], dev[:20], layers=[6], progress=False)
    phases: dict[str, list[dict[str, float]]] = {"all": [], "one": []}

    def timed(name: str) -> Any:
        print(f"sweeping layers {LAYERS[name]} ...", flush=True)
        result = sweep(model, train, dev, layers=LAYERS[name], progress=False)
        phases[name].append(result.timings)
        return result

    timings, _ = common.interleaved({name: (lambda n=name: timed(n)) for name in LAYERS}, args.rounds, alternate=True)
    return {"train": train, "dev": dev, "timings": timings, "phases": phases, "load_start": load_start}


def _rounded(seconds: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 2) for name, value in seconds.items()}


def results(args: argparse.Namespace, m: dict[str, Any], command: str, total: float) -> dict[str, Any]:
    """What sweep.json holds: every timing, the medians and their ratio, the sweep's F1 and the machine."""
    timings, full, single = m["timings"], m["timings"]["all"].output, m["timings"]["one"].output
    wall = {name: t.median for name, t in timings.items()}
    cpu = {name: statistics.median(t.cpu) for name, t in timings.items()}
    ratio, cpu_ratio = wall["all"] / wall["one"], cpu["all"] / cpu["one"]
    pairs = {name: zip(t.samples, t.cpu, strict=True) for name, t in timings.items()}
    times = {name: [{"wall_s": round(w, 2), "cpu_s": round(c, 2)} for w, c in runs] for name, runs in pairs.items()}
    data = {"command": command, "data": {"train_sentences": len(m["train"]), "dev_sentences": len(m["dev"])}}
    data["data"]["quick"] = args.quick
    data |= {"rounds": args.rounds, "times": times, "phases": m["phases"], "median_wall_s": _rounded(wall)}
    data |= {"median_cpu_s": _rounded(cpu), "ratio_wall": round(ratio, 3), "ratio_cpu": round(cpu_ratio, 3)}
    data |= {"target": TARGET, "verdict": "PASS" if ratio <= TARGET else "FAIL", "sweep": full.to_json()}
    data["one_layer_f1"] = single.f1[6]
    data |= {"load_average_start": m["load_start"], "load_average_end": common.load_average()}
    return data | {"total_wall_s": round(total, 1), "machine": common.machine_facts()}


def report(args: argparse.Namespace, m: dict[str, Any], data: dict[str, Any]) -> str:
    from hf_layer_tokclf.training.sweep import SWEEP_DEFAULTS

    full, single, phases = m["timings"]["all"].output, m["timings"]["one"].output, data["phases"]
    rows = [
        {"sweep": name, "layers": ", ".join(map(str, LAYERS[key])), "wall": data["median_wall_s"][key]}
        | {"cpu": data["median_cpu_s"][key], "extract": statistics.median(t["extract_s"] for t in phases[key])}
        | {"probes": statistics.median(t["probe_train_s"] for t in phases[key])}
        for key, name in (("all", "all layers"), ("one", "one layer"))
    ]
    sentences = f"{len(m['train'])} training sentences ({full.settings['train_words']} words), "
    sentences += f"{len(m['dev'])} dev sentences ({full.settings['dev_words']} words)"
    lines = [
        "# Layer sweep: all layers vs one layer (packaged MiniLM, 6 x 384, NCBI-disease)",
        "",
        f"- command: `{data['command']}`; total wall time {data['total_wall_s']:.0f} s",
        f"- data: {sentences}" + (" (--quick subset)" if args.quick else " (all of train and devel)"),
        f"- probes: {full.settings['epochs']} epochs (automatic), learning rate {SWEEP_DEFAULTS['learning_rate']}, "
        f"{SWEEP_DEFAULTS['probe_batch_size']} words per step, float16 feature cache in memory",
        f"- timing: medians of {args.rounds} round(s) after a warm-up, alternating; {torch.get_num_threads()} "
        "torch thread(s)",
        f"- load average (1, 5, 15 min) at start {[round(x, 2) for x in data['load_average_start']]}, "
        f"at end {[round(x, 2) for x in data['load_average_end']]} (2 cores, shared)",
        "",
        *common.md_table(
            "sweep | layers | wall s | CPU s | encoder pass s | probe training s",
            "| {sweep} | {layers} | {wall:.1f} | {cpu:.1f} | {extract:.1f} | {probes:.1f} |",
            rows,
            left=2,
        ),
        "",
        f"**all / one = {data['ratio_wall']:.2f} (wall), {data['ratio_cpu']:.2f} (CPU): {data['verdict']}** "
        f"(target <= {TARGET}).",
        "",
        "Dev F1 of the probe at every layer (the all-layers sweep):",
        "",
        full.table(),
        "",
        f"The one-layer sweep's probe at layer 6: dev F1 {100 * single.f1[6]:.2f} "
        f"(all-layers sweep: {100 * full.f1[6]:.2f}; the probes train independently).",
        "",
        "Plot: `sweep.png`.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from hf_layer_tokclf.training.sweep import write_sweep

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    measured = measure(args)
    full = measured["timings"]["all"].output
    output_dir = args.output_dir
    with tempfile.TemporaryDirectory() as tmp:
        full.train_command = f"hf-layer-tokclf train --hidden-layer {full.recommended_layer} ..."
        paths = write_sweep(full, tmp, overwrite=True)
        output_dir.mkdir(parents=True, exist_ok=True)
        if "plot" in paths:
            shutil.copyfile(paths["plot"], output_dir / "sweep.png")
    command = common.command_line("benchmarks.sweep", argv)
    data = results(args, measured, command, time.perf_counter() - started)
    common.publish(output_dir, "sweep", data, lambda data: report(args, measured, data))


if __name__ == "__main__":
    main()

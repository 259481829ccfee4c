"""The main job, measured: fine-tune on NCBI-disease at several layers and with the stock head.

python -m benchmarks.train_ncbi [--quick] [--layers 2 4 6] [--output-dir benchmarks/results]
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import common

# The main job gives no --hidden-layer: the default, -1, is layer 6 of the packaged 6-layer MiniLM.
MAIN_JOB_LAYER = 6


def readme_time(results: dict[str, Any]) -> str:
    """The README's sentence on how long the main job takes: its run in ``train_ncbi.json``, and where it ran."""
    run = next((r for r in results["runs"] if r["layer"] == MAIN_JOB_LAYER), None)
    if run is None:
        raise ValueError(
            f"train_ncbi.json has no hidden_layer={MAIN_JOB_LAYER} run: run python -m benchmarks.train_ncbi"
        )
    machine = results["machine"]
    cores, load = machine["os_cpu_count"], machine["load_average"][0]
    where = f"{cores} CPU cores ({machine['cpu_model']})" if machine["device"] == "cpu" else machine["device"]
    # The run itself keeps torch_num_threads cores busy: a load beyond that is other work.
    busy = load > machine.get("torch_num_threads", cores) + 0.5
    shared = f" while other work shared them (load average {load:.1f})" if busy else ""
    return (
        f"It takes about {max(1, round(run['wall_s'] / 60))} minutes: {run['wall_s']:.0f} s on {where}{shared}, "
        "as `python -m benchmarks.train_ncbi`, which runs this line's options, timed it "
        f"([`train_ncbi.md`](benchmarks/results/train_ncbi.md), the `hidden_layer={MAIN_JOB_LAYER}` row)."
    )


def readme_table(results: dict[str, Any]) -> str:
    """The README's table of every run in ``train_ncbi.json``, and the machine it ran on."""
    rows = []
    for run in results["runs"]:
        name = f"ours, `hidden_layer={run['layer']}`" if run["layer"] else "`BertForTokenClassification`"
        rows.append({**run, "name": name + (" (the main job)" if run["layer"] == MAIN_JOB_LAYER else "")})
    machine = results["machine"]
    lines = common.md_table(
        "model | dev F1 | test F1 | wall time (s)", "| {name} | {eval_f1:.2fp} | {test_f1:.2fp} | {wall_s:.0f} |", rows
    )
    load = f", load average {machine['load_average'][0]:.1f} at the end" if machine.get("load_average") else ""
    return "\n".join(lines) + f"\n\nOn {machine['os_cpu_count']} CPU cores ({machine['cpu_model']}){load}."


def report(data: dict[str, Any]) -> str:
    verdict = data["verdict"]
    lines = [
        "# Fine-tuning on NCBI-disease (packaged MiniLM, 6 x 384)",
        "",
        f"Command: `{data['command'].strip()}`. Options of every run (the README's main job): "
        f"`{shlex.join(data['options'])}`.",
        "",
        *common.md_table(
            "model | wall time (s) | dev F1 | test F1",
            "| {model} | {wall_s:.0f} | {eval_f1:.2fp} | {test_f1:.2fp} |",
            data["runs"],
        ),
    ]
    if verdict:
        lines += [
            "",
            f"Layer 6 vs stock head: stock - ours = {verdict['gap_test_f1_points']:+.2f} test F1 points "
            f"({'PASS' if verdict['within_0.5'] else 'FAIL'}: target within 0.5).",
        ]
    return "\n".join(lines)


def measure(args: Any) -> dict[str, Any]:
    from transformers import BertForTokenClassification

    os.chdir(common.REPO)  # the main-job options name data/ relative to the repository
    base, runs = common.main_job_argv(args.quick), []
    models = [(f"BertForLayerTokenClassification, hidden_layer={layer}", layer) for layer in args.layers]
    for model, layer in [*models, ("BertForTokenClassification (stock head)", None)]:
        print(f"training {model} ...", flush=True)
        argv_of = [*base, "--hidden-layer", str(layer)] if layer else base
        with tempfile.TemporaryDirectory() as tmp:
            trained = common.train_cli(argv_of, Path(tmp), None if layer else BertForTokenClassification)
        runs.append({"model": model, "layer": layer, **{k: trained[k] for k in ("wall_s", "eval_f1", "test_f1")}})
        print(runs[-1], flush=True)
    stock, last = runs[-1], next((r for r in runs if r["layer"] == MAIN_JOB_LAYER), None)
    gap = 100 * (stock["test_f1"] - last["test_f1"]) if last else None
    verdict = {"gap_test_f1_points": round(gap, 2), "within_0.5": abs(gap) <= 0.5 or gap < 0} if last else None
    return {"options": base, "runs": runs, "verdict": verdict}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    layers = {"--layers": {"type": int, "nargs": "+", "default": [2, 4, 6]}}
    quick = "500 training sentences, 1 epoch: a smoke run."
    return common.run_and_publish("benchmarks.train_ncbi", __doc__, measure, report, argv, layers, quick)


if __name__ == "__main__":
    main()

"""Many entity types, one pass: one multi-task model (a head per corpus, each on its own layer) against single-task
models, in cost and in quality (issue 30). Tasks: ``disease`` = NCBI-disease at layer 4, ``cg`` = BioNLP13CG (16
types) at layer 6, from ``../shared/data``.

    python -m benchmarks.multitask                   # both sections: cost ~10 minutes, quality ~25 on 2 idle CPU cores
    python -m benchmarks.multitask --only cost       # one section keeps the other's results from the file it replaces
    python -m benchmarks.multitask --only quality --steps 250 --seeds 0 1 2
    python -m benchmarks.multitask --quick           # about a minute: slices, a few steps, one seed, MiniLM's cost
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import common, multitask_cost, multitask_quality
from benchmarks.common import md_table, verdict_items
from benchmarks.models import FAMILIES

MODULE = "benchmarks.multitask"
TASKS = {"disease": ("ncbi-disease", 4), "cg": ("bionlp13cg", 6)}  # name -> (corpus folder, layer of its head)
SECTIONS = ("cost", "quality")
# Every option's value in a full run and in a quick one (an option given on the command line wins).
PLANS: dict[str, dict[str, Any]] = {
    "full": {
        "families": ["bert-base", "minilm"],
        "cost_sentences": 256,
        "cost_batch": 32,
        "rounds": {"bert-base": (5, 300.0), "minilm": (9, 150.0)},  # rounds, time budget in s
        "steps": 250,
        "batch_size": 16,
        "seeds": [0, 1, 2],
        "sentences": None,
    },
    "quick": {
        "families": ["minilm"],
        "cost_sentences": 16,
        "cost_batch": 8,
        "rounds": {},
        "steps": 2,
        "batch_size": 8,
        "seeds": [0],
        "sentences": 24,
    },
}
QUICK_ROUNDS = (3, 10.0)


def sections_of(text: str) -> list[str]:
    sections = [part.strip() for part in text.split(",") if part.strip()]
    if not sections or set(sections) - set(SECTIONS):
        raise argparse.ArgumentTypeError(f"{text!r}: choose among {', '.join(SECTIONS)} (comma-separated)")
    return sections


OPTIONS: dict[str, dict[str, Any]] = {
    "--only": {"type": sections_of, "default": list(SECTIONS), "help": "cost, quality or both (default)"},
    "--data-dir": {"type": Path, "default": common.SHARED_DATA, "help": f"the corpora (default: {common.SHARED_DATA})"},
    "--threads": {"type": int, "default": 2, "help": "torch intra-op threads (default: 2)"},
    "--families": {"nargs": "+", "choices": sorted(FAMILIES), "help": "cost: backbones (bert-base minilm)"},
    "--cost-sentences": {"type": int, "help": "cost: test sentences, half from each corpus (256)"},
    "--steps": {"type": int, "help": "quality: training steps per task (250)"},
    "--batch-size": {"type": int, "help": "quality: training batch size (16)"},
    "--seeds": {"type": int, "nargs": "+", "help": "quality: seeds (0 1 2)"},
    "--sentences": {"type": int, "help": "quality: the first N sentences of every split (default: all)"},
}


def task_folders(data_dir: Path) -> dict[str, Path]:
    """Each task's corpus folder, checked to hold its three splits."""
    folders = {name: Path(data_dir) / corpus for name, (corpus, _) in TASKS.items()}
    for folder in folders.values():
        missing = [name for name in multitask_quality.SPLITS.values() if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: no {', '.join(missing)} (--data-dir names the corpora's folder)")
    return folders


def cost_section(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any]:
    from hf_layer_tokclf.formats.labels import label_list

    tasks = {
        name: {"test": str(folder / "test.tsv"), "layer": TASKS[name][1], "labels": label_list(
            common.sentences_of(folder / "train.tsv"))}
        for name, folder in task_folders(args.data_dir).items()
    }  # fmt: skip
    tables = []
    for name in plan["families"]:
        rounds, budget = plan["rounds"].get(name, QUICK_ROUNDS)
        family_plan = {"sentences": plan["cost_sentences"], "batch": plan["cost_batch"], "rounds": rounds}
        tables.append(multitask_cost.run(FAMILIES[name](), tasks, family_plan | {"budget_s": budget}, args.threads))
        common.log(multitask_cost.table_markdown(tables[-1]))
    return {"tables": tables}


def quality_section(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any]:
    tasks = {
        name: {"folder": str(folder), "layer": TASKS[name][1]} for name, folder in task_folders(args.data_dir).items()
    }
    keys = ("steps", "seeds", "sentences")
    return multitask_quality.run(tasks, {key: plan[key] for key in keys} | {"batch": plan["batch_size"]})


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """The sections asked for, each with the command, start time and load it ran under; the others kept from the
    results file this run replaces."""
    plan = dict(PLANS["quick" if args.quick else "full"])
    plan |= {key: getattr(args, key) for key in plan if getattr(args, key, None) is not None}
    earlier = args.output_dir / "multitask.json"
    data = {key: value for key, value in (json.loads(earlier.read_text()) if earlier.is_file() else {}).items()}
    command = common.command_line(MODULE, args.argv)
    with common.benchmark_settings(args.threads):
        for section in args.only:
            started, began = time.strftime("%Y-%m-%d %H:%M:%S %z"), time.perf_counter()
            measured = (cost_section if section == "cost" else quality_section)(args, plan)
            facts = {"command": command, "quick": args.quick, "started": started, "load_average": common.load_average()}
            data[section] = facts | measured | {"wall_s": round(time.perf_counter() - began)}
    return {"command": command, **judged(data)}


def judged(data: dict[str, Any]) -> dict[str, Any]:
    """The sections of `data`, each with its verdicts made afresh from its figures (a kept section's too)."""
    judges = {
        "cost": lambda section: multitask_cost.verdicts(section["tables"]),
        "quality": lambda section: multitask_quality.verdicts(section["rows"]),
    }
    return {name: data[name] | {"verdicts": judges[name](data[name])} for name in SECTIONS if name in data}


def verdicts(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for section in SECTIONS for v in data.get(section, {}).get("verdicts", [])]


def ran_line(section: dict[str, Any]) -> str:
    quick = " (**quick**: a smoke run, not a measurement)" if section["quick"] else ""
    return (
        f"Command: `{section['command']}`{quick}; started {section['started']}, {section['wall_s']} s, load average "
        f"{section['load_average']} at the end."
    )


def report(data: dict[str, Any]) -> str:
    lines = ["# Many entity types, one pass: one multi-task model against single-task models", ""]
    lines += ["## Verdicts", "", *verdict_items(verdicts(data)), ""]
    lines += ["## 1. Cost: one joint pass against the single-task models one after the other", ""]
    if "cost" in data:
        cost = data["cost"]
        lines += [ran_line(cost), "", multitask_cost.__doc__.split("\n\n")[1].replace("\n", " "), ""]
        lines += [x for table in cost["tables"] for x in (multitask_cost.table_markdown(table), "")]
    else:
        lines += ["Not measured yet: `python -m benchmarks.multitask --only cost`.", ""]
    lines += ["## 2. Quality: each task's test F1, joint against single-task and against one union head", ""]
    if "quality" in data:
        quality = data["quality"]
        lines += [ran_line(quality), "", multitask_quality.settings_line(quality), ""]
        lines += [*multitask_quality.table_lines(quality), "", "Every run:", ""]
        names = {**multitask_quality.CONTENDERS, "single": "single-task model"}
        runs = [{**run, "name": names[run["contender"]]} for run in quality["runs"]]
        lines += md_table("seed | model | task | test F1 | wall s", "| {seed} | {name} | {task} | {test_f1:.2fp} "
                          "| {wall_s:.0f} |", runs, left=3)  # fmt: skip
    else:
        lines += ["Not measured yet: `python -m benchmarks.multitask --only quality`."]
    return "\n".join(lines)


def readme_table(data: dict[str, Any]) -> str:
    """The README's tables: each backbone's cost ratios, each task's F1 by contender, and the verdicts."""
    lines, cost = [], data.get("cost", {})
    for table in cost.get("tables", []):
        joint = next(row for row in table["rows"] if row["contender"] == multitask_cost.JOINT)
        lines.append({"name": f"{table['title']} ({table['num_layers']} x {table['hidden_size']})", **joint})
    text = ["Cost: not measured yet."]
    if lines:
        table = cost["tables"][0]
        text = [
            f"Cost, {table['sentences']} test sentences of both corpora in batches of {table['batch']}, "
            f"{data['machine']['device']}; the joint model / the single-task models one after the other:",
            "",
            *md_table(
                "backbone | time | peak memory | weights",
                "| {name} | {time_vs_singles:.3f} | {peak_vs_singles:.3f} | {weights_vs_singles:.3f} |",
                lines,
            ),
        ]
    if quality := data.get("quality"):
        text += ["", multitask_quality.settings_line(quality), "", *multitask_quality.table_lines(quality)]
    else:
        text += ["", "Quality: not measured yet."]
    return "\n".join([*text, "", *verdict_items(verdicts(data))])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = common.parser_of(MODULE, __doc__, quick="about a minute: data slices, 2 steps, one seed, MiniLM's cost")
    for flag, keywords in OPTIONS.items():
        parser.add_argument(flag, **keywords)
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    return common.publish(args.output_dir, "multitask", measure(args), report)


if __name__ == "__main__":
    main()

"""The quality of one multi-task model: each task's test F1 of the joint model against the single-task model of the
same layer trained on that task's corpus alone, and against the naive baseline, one head over the union of the
corpora's labels trained on the corpora concatenated (each corpus's missing types are ``O`` there), scored on each
corpus's own types. Every model is the packaged MiniLM trained by `hf-layer-tokclf train` (`common.train_cli`)."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import md_header, md_row, sentences_of

# No dev set: with a few hundred steps there is one evaluation to choose from; every model is the one after its steps.
SPLITS = {"train": "train.tsv", "test": "test.tsv"}
JOINT, SINGLE, NAIVE = "joint", "single", "naive"
CONTENDERS = {
    JOINT: "one multi-task model (a head per task)",
    SINGLE: "single-task model, its corpus alone",
    NAIVE: "naive: one head over the union of labels",
}
TARGET_GAP = 1.0  # F1 points: joint >= single - 1.0 on each task
# Nearly uniform task sampling: each task gets about half of the joint run's batches, as many as its single-task run.
SAMPLING = ["--task-sampling", "temperature", "--sampling-temperature", "1000"]
# Tasks as this section takes them: name -> {"folder": the corpus's folder, "layer": the layer its head reads}
Tasks = dict[str, dict[str, Any]]


def write_conll(path: Path, sentences: list[Any]) -> Path:
    """``token<TAB>label`` lines, a blank line after each sentence."""
    with common.atomic_writer(path) as handle:
        for sentence in sentences:
            handle.writelines(
                f"{token}\t{label}\n" for token, label in zip(sentence.tokens, sentence.labels, strict=True)
            )
            handle.write("\n")
    return path


def types(labels: list[str]) -> set[str]:
    """The entity types of IOB2 labels."""
    return {label[2:] for label in labels if label != "O"}


def prepare(tasks: Tasks, folder: Path, sentences: int | None) -> dict[str, dict[str, Path]]:
    """Each task's splits and the naive baseline's: every task's split concatenated, in task order, into one file
    under ``folder``. Returns name -> split -> path, ``naive`` included.

    ``sentences``: a slice of each corpus instead of all of it, written under ``folder``: the first ``sentences``
    training sentences, and the first ``sentences`` test sentences whose types those have (`train` refuses a
    label its training data lacks)."""
    files: dict[str, dict[str, Path]] = {name: {} for name in [*tasks, NAIVE]}
    union: dict[str, list[Any]] = {split: [] for split in SPLITS}
    for name, task in tasks.items():
        known: set[str] = set()
        for split, filename in SPLITS.items():
            source = Path(task["folder"]) / filename
            read = sentences_of(source)
            if sentences is None:
                files[name][split] = source
            else:
                read = [s for s in read if split == "train" or known.issuperset(types(s.labels))][:sentences]
                known |= {kind for s in read for kind in types(s.labels)} if split == "train" else set()
                files[name][split] = write_conll(folder / f"{name}-{filename}", read)
            union[split] += read
    for split, filename in SPLITS.items():
        files[NAIVE][split] = write_conll(folder / f"{NAIVE}-{filename}", union[split])
    return files


def split_options(files: dict[str, Path], task: str | None = None) -> list[str]:
    """``--train-file`` and ``--test-file``, each ``NAME=PATH`` with a task's name."""
    option = {"train": "--train-file", "test": "--test-file"}
    return [word for split, path in files.items() for word in (option[split], f"{task}={path}" if task else str(path))]


def joint_argv(tasks: Tasks, files: dict[str, dict[str, Path]]) -> list[str]:
    """`train`'s options of the joint model: every task's splits and layer."""
    argv = [word for name in tasks for word in split_options(files[name], name)]
    return argv + [word for name, task in tasks.items() for word in ("--hidden-layer", f"{name}={task['layer']}")]


def training_options(steps: int, batch: int, seed: int) -> list[str]:
    """A run's steps, batch size and seed."""
    return ["--max-steps", str(steps), "--per-device-train-batch-size", str(batch), "--seed", str(seed)]


def restricted(labels: list[str], types: set[str]) -> list[str]:
    """``labels`` with every entity type outside ``types`` made ``O``."""
    return [label if label == "O" or label[2:] in types else "O" for label in labels]


def naive_scores(tasks: Tasks, files: dict[str, dict[str, Path]], predictions: Path) -> dict[str, float]:
    """Each task's test F1 of the naive model: its predictions on the concatenated test file cut back into the
    corpora, each scored on its own corpus's types only (a Disease found in BioNLP13CG is not counted against it)."""
    from hf_layer_tokclf.running.metrics import entity_scores

    predicted = [s.labels for s in sentences_of(predictions)]
    scores, start = {}, 0
    for name in tasks:
        gold = [s.labels for s in sentences_of(files[name]["test"])]
        own = {kind for sentence in sentences_of(files[name]["train"]) for kind in types(sentence.labels)}
        mine = [restricted(labels, own) for labels in predicted[start : start + len(gold)]]
        scores[name], start = entity_scores(gold, mine)["f1"], start + len(gold)
    if start != len(predicted):
        raise ValueError(f"{predictions}: {len(predicted)} sentences, the test files have {start}")
    return scores


def run_one(contender: str, tasks: Tasks, files: dict[str, dict[str, Path]], plan: dict[str, Any], seed: int) -> list:
    """One training run (per task for the single-task contender): a row per task with its test F1."""
    steps, batch, tasks_n = plan["steps"], plan["batch"], len(tasks)
    rows = []
    with tempfile.TemporaryDirectory(prefix="multitask-") as tmp:
        if contender == JOINT:
            argv = [*joint_argv(tasks, files), *SAMPLING, *training_options(steps * tasks_n, batch, seed)]
            metrics = common.train_cli(argv, Path(tmp))
            f1 = {name: metrics[f"test_{name}_f1"] for name in tasks}
            rows = [{"task": name, "test_f1": f1[name], "wall_s": metrics["wall_s"]} for name in tasks]
        elif contender == NAIVE:
            layer = max(task["layer"] for task in tasks.values())
            argv = [*split_options(files[NAIVE]), "--hidden-layer", str(layer)]
            metrics = common.train_cli([*argv, *training_options(steps * tasks_n, batch, seed)], Path(tmp))
            f1 = naive_scores(tasks, files, Path(tmp) / "test_predictions.conll")
            rows = [{"task": name, "test_f1": f1[name], "wall_s": metrics["wall_s"], "layer": layer} for name in tasks]
        else:
            for name, task in tasks.items():
                argv = [*split_options(files[name]), "--hidden-layer", str(task["layer"])]
                metrics = common.train_cli([*argv, *training_options(steps, batch, seed)], Path(tmp) / name)
                rows.append({"task": name, "test_f1": metrics["test_f1"], "wall_s": metrics["wall_s"]})
    return [{"contender": contender, "seed": seed, **row} for row in rows]


def run(tasks: Tasks, plan: dict[str, Any]) -> dict[str, Any]:
    """Every contender once per seed, seed by seed; every run, and a row per (task, contender)."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="multitask-data-") as tmp:
        files = prepare(tasks, Path(tmp), plan["sentences"])
        for seed in plan["seeds"]:
            for contender in CONTENDERS:
                common.log(f"quality: {CONTENDERS[contender]}, seed {seed} ...")
                found = run_one(contender, tasks, files, plan, seed)
                common.log("  " + ", ".join(f"{r['task']} test F1 {100 * r['test_f1']:.2f}" for r in found))
                runs += found
    layers = {name: task["layer"] for name, task in tasks.items()}
    corpora = {name: Path(task["folder"]).name for name, task in tasks.items()}
    rows = summarize(runs)
    return {**plan, "layers": layers, "corpora": corpora, "runs": runs, "rows": rows}


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A row per (task, contender): the test F1's mean and sample sd over the seeds, in points."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["task"], run["contender"]), []).append(run)
    rows = []
    for (task, contender), group in groups.items():
        f1 = [100 * r["test_f1"] for r in group]
        sd = statistics.stdev(f1) if len(f1) > 1 else None
        row = {"task": task, "contender": contender, "seeds": [r["seed"] for r in group]}
        row |= {"test_f1_mean": statistics.mean(f1), "test_f1_sd": sd}
        rows.append(row | {"wall_s_mean": statistics.mean(r["wall_s"] for r in group)})
    return rows


def verdicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task: the joint model's mean test F1 >= the single-task model's - 1.0 point."""
    by = {(row["task"], row["contender"]): row for row in rows}
    found = []
    for task in dict.fromkeys(row["task"] for row in rows):
        joint, single, naive = (by.get((task, contender)) for contender in (JOINT, SINGLE, NAIVE))
        if joint is None or single is None:
            continue
        gap = joint["test_f1_mean"] - single["test_f1_mean"]
        text = f"{task}: joint - single-task test F1 = {gap:+.2f} points (target >= -{TARGET_GAP})"
        if naive is not None:
            text += f"; naive union head - single-task = {naive['test_f1_mean'] - single['test_f1_mean']:+.2f}"
        found.append(common.verdict(gap >= -TARGET_GAP, text, task=task, value=gap))
    return found


def points(row: dict[str, Any] | None) -> str:
    if row is None:
        return "—"
    return f"{row['test_f1_mean']:.2f}" + (f" ± {row['test_f1_sd']:.2f}" if row["test_f1_sd"] is not None else "")


def table_lines(section: dict[str, Any]) -> list[str]:
    """Per task: the mean ± sd test F1 of each contender, and the joint model's gap to the single-task one."""
    by = {(row["task"], row["contender"]): row for row in section["rows"]}
    header = "task (corpus) | layer | " + " | ".join(CONTENDERS.values()) + " | joint - single"
    lines = md_header(header, left=1)
    for task, layer in section["layers"].items():
        joint, single = by.get((task, JOINT)), by.get((task, SINGLE))
        gap = f"{joint['test_f1_mean'] - single['test_f1_mean']:+.2f}" if joint and single else "—"
        cells = [points(by.get((task, c))) for c in CONTENDERS]
        lines.append(md_row([f"{task} ({section['corpora'][task]})", layer, *cells, gap]))
    return lines


def settings_line(section: dict[str, Any]) -> str:
    """How the models were trained: steps, batch, seeds, data, the naive head's layer."""
    steps, both = section["steps"], len(section["layers"]) * section["steps"]
    data = (
        "whole splits" if section["sentences"] is None else f"the first {section['sentences']} sentences of each split"
    )
    return (
        f"Packaged MiniLM (6 x 384), trained by `hf-layer-tokclf train` ({data}; batch {section['batch']}; the other "
        "options `train`'s defaults; no dev set, so each model is the one its last step left): a single-task model "
        f"{steps} steps on its corpus; the joint model {both} steps, each batch of one task drawn nearly uniformly "
        f"(`{' '.join(SAMPLING)}`), so about {steps} per task; the naive baseline {both} steps at layer "
        f"{max(section['layers'].values())}. Test F1 mean ± sd over seeds {', '.join(map(str, section['seeds']))}."
    )

"""The score tables of a model card (`model_card`): from a run's ``metrics.json`` (Trainer-style flat keys, ``eval_f1``,
``test_Disease_f1``) to the template's ready-formatted tables, and the Hub's ``EvalResult`` entries (model-index).

A multi-task model (``config.tasks``) gets a table with a row per task (its entity types, layer, CRF, dev F1 and test
precision, recall and F1: `task_score_tables`), its scores read from the task's own keys (``test_NAME_f1``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from huggingface_hub import EvalResult

SPLITS = (("eval", "Dev"), ("test", "Test"))
OVERALL_STATS = (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"), ("accuracy", "Token accuracy"))
TYPE_STATS = (("precision", "P"), ("recall", "R"), ("f1", "F1"))
TASK_HEADER = ["Task", "Entity types", "Layer", "CRF", "Dev F1", "Test P", "Test R", "Test F1"]


def score_tables(
    metrics: Mapping[str, Any], dataset: Mapping[str, Any], entity_types: list[str]
) -> tuple[list[EvalResult] | None, dict[str, Any]]:
    """The model-index results (from the test scores) and the template's score tables: ``has_test``, ``overall``,
    ``per_type``."""
    scores = {split: _split_scores(metrics, split) for split, _ in SPLITS}
    tables = {
        "has_test": bool(scores["test"][0]),
        "overall": _overall_table(scores),
        "per_type": _per_type_table(scores, entity_types),
        "tasks": {"header": [], "rows": []},
    }
    return _eval_results(scores["test"][0], dataset), tables


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _split_scores(metrics: Mapping[str, Any], split: str) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """``(overall, per_type)`` scores of one split from Trainer-style flat keys (``eval_f1``, ``eval_Disease_f1``)."""
    overall: dict[str, float] = {}
    per_type: dict[str, dict[str, float]] = {}
    for key, raw in metrics.items():
        value = _number(raw)
        if value is None or not key.startswith(f"{split}_"):
            continue
        rest = key[len(split) + 1 :]
        if rest in ("precision", "recall", "f1", "accuracy"):
            overall[rest] = value
            continue
        name, sep, stat = rest.rpartition("_")
        stat = "support" if stat == "number" else stat  # seqeval's name for the support
        if not (sep and name) or stat not in ("precision", "recall", "f1", "support"):
            continue
        if name == "overall":  # evaluate's seqeval: overall_precision, ...
            overall.setdefault(stat, value)
        else:
            per_type.setdefault(name, {})[stat] = value
    return overall, per_type


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _overall_table(scores: Mapping[str, tuple[dict, dict]]) -> dict[str, list]:
    stats = [(key, label) for key, label in OVERALL_STATS if any(key in scores[s][0] for s, _ in SPLITS)]
    rows = [
        [split_label, *(_pct(scores[split][0].get(key)) for key, _ in stats)]
        for split, split_label in SPLITS
        if scores[split][0]
    ]
    return {"header": ["Split", *(label for _, label in stats)], "rows": rows}


def _per_type_table(scores: Mapping[str, tuple[dict, dict]], entity_types: list[str]) -> dict[str, list]:
    splits = [(split, label) for split, label in SPLITS if scores[split][1]]
    seen = {name for split, _ in splits for name in scores[split][1]}
    names = [name for name in entity_types if name in seen] + sorted(seen - set(entity_types))
    header = ["Entity type"]
    for split, label in splits:
        header += [f"{label} {stat}" for _, stat in TYPE_STATS]
        if any("support" in type_scores for type_scores in scores[split][1].values()):
            header.append(f"{label} support")
    rows = []
    for name in names:
        row = [name]
        for split, _ in splits:
            type_scores = scores[split][1].get(name, {})
            row += [_pct(type_scores.get(key)) for key, _ in TYPE_STATS]
            if any("support" in s for s in scores[split][1].values()):
                support = type_scores.get("support")
                row.append("–" if support is None else str(round(support)))
        rows.append(row)
    return {"header": header, "rows": rows}


def _eval_results(test: Mapping[str, float], dataset: Mapping[str, Any]) -> list[EvalResult] | None:
    """The test scores as Hub eval results (fractions, as the Trainer reports them), or None."""
    dataset_type = dataset["hub_id"] or re.sub(r"[^a-z0-9]+", "-", (dataset["name"] or "custom").lower()).strip("-")
    results = [
        EvalResult(
            task_type="token-classification",
            task_name="Token Classification",
            dataset_type=dataset_type or "custom",
            dataset_name=dataset["name"] or "custom data",
            dataset_split="test",
            metric_type=key,
            metric_name=f"Test {label.lower() if key != 'f1' else label} (entity-level)",
            metric_value=round(test[key], 4),
        )
        for key, label in OVERALL_STATS[:3]
        if key in test
    ]
    return results or None


def task_score_tables(
    metrics: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]], datasets: Mapping[str, Mapping[str, Any]]
) -> tuple[list[EvalResult] | None, dict[str, Any]]:
    """`score_tables` of a multi-task model: ``tasks`` (a row per task, each scored on its own data), ``per_type``
    (rows ``task / type``), no overall table (the tasks' mean is no score of any corpus), and each task's test
    scores as eval results on its own dataset (``datasets``: the task's, as `model_card` describes one)."""
    rows, per_type, results = [], {"header": [], "rows": []}, []
    for name, task in tasks.items():
        own = {split: _split_scores(task_metrics(metrics, name), split) for split, _ in SPLITS}
        types = entity_types(task["labels"])
        dev, test = own["eval"][0], own["test"][0]
        rows.append(
            [
                name,
                ", ".join(types),
                str(task["hidden_layer"]),
                "yes" if task.get("use_crf") else "no",
                _pct(dev.get("f1")),
            ]
            + [_pct(test.get(key)) for key in ("precision", "recall", "f1")]
        )
        table = _per_type_table(own, types)
        per_type["header"] = table["header"] if len(table["header"]) > len(per_type["header"]) else per_type["header"]
        per_type["rows"] += [[f"{name} / {row[0]}", *row[1:]] for row in table["rows"]]
        results += _eval_results(test, datasets[name]) or []
    tables = {
        "has_test": any(key.startswith("test_") for key in metrics),
        "overall": {"header": [], "rows": []},
        "per_type": {"header": ["Task / entity type", *per_type["header"][1:]], "rows": per_type["rows"]},
        "tasks": {"header": TASK_HEADER, "rows": rows},
    }
    return results or None, tables


def task_metrics(metrics: Mapping[str, Any], task: str) -> dict[str, Any]:
    """One task's scores with its name taken out of the keys (``test_disease_f1`` -> ``test_f1``)."""
    own = {}
    for split, _ in SPLITS:
        prefix = f"{split}_{task}_"
        own.update({f"{split}_{key[len(prefix) :]}": value for key, value in metrics.items() if key.startswith(prefix)})
    return own


def entity_types(labels: Any) -> list[str]:
    """The entity types of IOB-style labels (``B-Disease`` -> ``Disease``), in the order first seen."""
    types: list[str] = []
    for label in labels:
        prefix, sep, name = str(label).partition("-")
        if sep and name and prefix in ("B", "I", "E", "S", "L", "U") and name not in types:
            types.append(name)
    return types

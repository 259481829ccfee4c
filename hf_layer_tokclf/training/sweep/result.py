"""What a sweep found: `SweepResult` (one corpus) and `TaskSweepResult` (one per task), the layer rules
(`resolve_layers`, `recommend_layer`, `best_layer`) and which layers to fine-tune (`finetune_candidates`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class SweepResult:
    """Dev scores of one linear probe per layer, their costs and the recommended layer.

    ``f1``, ``scores`` and ``relative_cost`` are keyed by layer (an index into ``hidden_states``:
    0 = embeddings, ``num_hidden_layers`` = last). ``probe_weight[i]`` / ``probe_bias[i]`` are
    the probe of ``layers[i]`` as it acts on the raw hidden state:
    ``logits = hidden @ probe_weight[i] + probe_bias[i]``.
    """

    model_name_or_path: str
    layers: list[int]
    num_hidden_layers: int
    labels: list[str]
    f1: dict[int, float]
    scores: dict[int, dict[str, Any]]
    relative_cost: dict[int, float]
    tolerance: float
    recommended_layer: int
    best_layer: int
    probe_weight: torch.Tensor
    probe_bias: torch.Tensor
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    finetune: dict[int, dict[str, Any]] = field(default_factory=dict)  # layer -> {"f1", "output_dir"}
    train_command: str | None = None

    def probe_model(self, layer: int) -> Any:
        """The probe of ``layer`` as the family's layer classifier (eval mode), ready to save or score."""
        from ...model.auto import AutoModelForLayerTokenClassification
        from ..head import load_with_new_head

        if layer not in self.layers:
            raise ValueError(f"layer {layer} was not swept (swept: {self.layers})")
        index = self.layers.index(layer)
        model = load_with_new_head(  # the new head's load report, unsaid: the probe fills it
            AutoModelForLayerTokenClassification,
            self.model_name_or_path,
            announce=False,
            hidden_layer=layer,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id={label: i for i, label in enumerate(self.labels)},
        )
        with torch.no_grad():
            model.classifier.weight.copy_(self.probe_weight[index].T)
            model.classifier.bias.copy_(self.probe_bias[index])
        return model.eval()

    def to_json(self) -> dict[str, Any]:
        """What `write_sweep` puts in ``sweep.json``: F1 and costs as fractions in 0..1."""
        rows = []
        for layer in self.layers:
            row = {
                "layer": layer,
                "f1": self.f1[layer],
                "relative_cost": self.relative_cost[layer],
                "precision": self.scores[layer]["precision"],
                "recall": self.scores[layer]["recall"],
            }
            if layer in self.finetune:
                row["finetune_f1"] = self.finetune[layer]["f1"]
                row["finetune_output_dir"] = self.finetune[layer].get("output_dir")
            rows.append(row)
        return {
            "layers": rows,
            "recommended_layer": self.recommended_layer,
            "best_layer": self.best_layer,
            "tolerance": self.tolerance,
            "model": self.model_name_or_path,
            "num_hidden_layers": self.num_hidden_layers,
            "labels": self.labels,
            "train_command": self.train_command,
            "settings": self.settings,
            "timings": self.timings,
        }

    def table(self) -> str:
        """A Markdown table: layer, probe dev F1, fine-tuned dev F1 (if any), relative cost."""
        tuned = bool(self.finetune)
        header = "| layer | dev F1 (probe) |" + (" dev F1 (fine-tuned) |" if tuned else "") + " relative cost | |"
        rule = "|---:|---:|" + ("---:|" if tuned else "") + "---:|---|"
        lines = [header, rule]
        for layer in self.layers:
            notes = []
            if layer == self.recommended_layer:
                notes.append(f"**recommended** (shallowest within {self.tolerance:g} F1 of the best)")
            if layer == self.best_layer:
                notes.append("best probe")
            tuned_cell = ""
            if tuned:
                tuned_cell = f" {100 * self.finetune[layer]['f1']:.2f} |" if layer in self.finetune else " |"
            lines.append(
                f"| {layer} | {100 * self.f1[layer]:.2f} |{tuned_cell} {self.relative_cost[layer]:.3f} | "
                f"{'; '.join(notes)} |"
            )
        return "\n".join(lines)


@dataclass
class TaskSweepResult:
    """A multi-task sweep: each task's `SweepResult` (its corpus's probes on the one frozen encoder), by task.

    ``train_command`` trains the joint model with each task at its recommended layer; ``finetune`` records the
    joint model fine-tuned so (``output_dir``, ``layers``, ``command``, ``seconds``; each task's dev F1 is in its
    result's ``finetune``), or is ``None``.
    """

    results: dict[str, SweepResult]
    train_command: str | None = None
    finetune: dict[str, Any] | None = None

    @property
    def recommended_layers(self) -> dict[str, int]:
        """Task -> its recommended layer."""
        return {task: result.recommended_layer for task, result in self.results.items()}

    def to_json(self) -> dict[str, Any]:
        """``sweep.json`` of several tasks: the tasks' layers, the joint train command, each task's `SweepResult`."""
        first = next(iter(self.results.values()))
        return {
            "recommended_layers": self.recommended_layers,
            "best_layers": {task: result.best_layer for task, result in self.results.items()},
            "model": first.model_name_or_path,
            "num_hidden_layers": first.num_hidden_layers,
            "train_command": self.train_command,
            "finetune": self.finetune,
            "tasks": {task: result.to_json() for task, result in self.results.items()},
        }

    def table(self) -> str:
        """A Markdown table per task (`SweepResult.table`), under the task's name."""
        return "\n\n".join(f"### Task `{task}`\n\n{result.table()}" for task, result in self.results.items())


def resolve_layers(layers: Sequence[int] | None, num_hidden_layers: int) -> list[int]:
    """Layers as sorted, distinct, non-negative ``hidden_states`` indices; `None` = all of 0..L.

    Raises:
        ValueError: naming the allowed range, for a layer out of range or not an int.
    """
    n = num_hidden_layers
    if layers is None:
        return list(range(n + 1))
    layers = list(layers)
    if not layers:
        raise ValueError(f"no layers to sweep; give layers from 0 to {n} (or none for all)")
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int) or not -(n + 1) <= layer <= n:
            raise ValueError(
                f"layer {layer!r} is out of range: the model has {n} layers, so layers are ints from 0 "
                f"(embeddings) to {n} (last), or -1 .. -{n + 1} counted from the end"
            )
    return sorted({layer % (n + 1) for layer in layers})


def recommend_layer(f1: Mapping[int, float], tolerance: float = 1.0) -> int:
    """The shallowest layer whose F1 is within ``tolerance`` F1 points (F1 in 0..1, points in 0..100) of the best."""
    if not f1:
        raise ValueError("no scores to recommend a layer from")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 F1 points, got {tolerance}")
    best = max(f1.values())
    return min(layer for layer, score in f1.items() if score >= best - tolerance / 100 - 1e-12)


def best_layer(f1: Mapping[int, float]) -> int:
    """The layer of the best F1; a tie goes to the shallower layer."""
    return min(f1, key=lambda k: (-f1[k], k))


def finetune_candidates(result: SweepResult, n: int) -> list[int]:
    """The ``n`` best-value layers to fine-tune: the recommended one, then the others by probe F1.

    Ties in F1 go to the shallower (cheaper) layer.
    """
    others = sorted(
        (layer for layer in result.layers if layer != result.recommended_layer), key=lambda k: (-result.f1[k], k)
    )
    return [result.recommended_layer, *others][: max(n, 0)]

"""Training on several corpora at once, a task each: batches of one task drawn by `TaskBatchSampler`
(proportional or temperature sampling), ``task_ids`` added by `TaskCollator`, each task's dev F1 from its own head
on its own dev data (`task_metrics`).

Every batch holds one task's windows: a head learns only from its own corpus (the model's loss masks the other
rows anyway), and a batch's labels are all in one label set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ..formats.sentence import Sentence
from ..running.decoding import token_predictions
from ..running.features import encode
from .arguments import DEFAULT_SAMPLING_TEMPERATURE, DataArguments, ModelArguments, RunArguments
from .trainer import NerTrainer, dev_metrics, model_input_rows, ner_trainer

# As transformers' LengthGroupedSampler: windows are sorted by length within shuffled groups of this many batches.
_MEGABATCH = 50


def task_probabilities(sizes: Sequence[int], sampling: str = "proportional", temperature: float | None = None) -> list:
    """The probability of drawing each task's batch: ``n_t ** (1 / T)`` normalised, ``n_t`` the task's training
    windows; ``proportional`` is T = 1, a large T nears uniform. A task without windows is never drawn."""
    if sampling not in ("proportional", "temperature"):
        raise ValueError(f"task sampling {sampling!r} is unknown; expected proportional or temperature.")
    power = 1.0 if sampling == "proportional" else 1.0 / (temperature or DEFAULT_SAMPLING_TEMPERATURE)
    weights = np.array([float(n) ** power if n else 0.0 for n in sizes])
    if not weights.sum():
        raise ValueError("no task has training data.")
    return (weights / weights.sum()).tolist()


class TaskBatchSampler:
    """Batches of dataset indices, each of ONE task's windows, as the Trainer's ``batch_sampler``.

    An epoch is as many batches as the tasks' windows make (``ceil(n_t / batch_size)`` summed). ``proportional``:
    every batch of every task once, in a random order, so each task is drawn in proportion to its size.
    ``temperature``: each batch's task is drawn with `task_probabilities`, and is that task's next batch; a task
    whose batches are used up starts again, reshuffled (a small corpus is seen several times an epoch).
    Within a task, windows are shuffled, then (``lengths``) sorted by length within groups of 50 batches, as
    the Trainer's ``group_by_length`` does. Seeded by ``seed`` and the epoch (`set_epoch`, which the Trainer calls):
    the same run sees the same batches, resumed or not.

    Args:
        task_indices: For each task, the dataset indices of its training windows.
        batch_size: Windows per batch.
        lengths: Every window's length (by dataset index), to group windows of similar length; None: no grouping.
        sampling, temperature: as `task_probabilities`.
        seed: The run's seed.
    """

    def __init__(
        self,
        task_indices: Sequence[Sequence[int]],
        batch_size: int,
        *,
        lengths: Sequence[int] | None = None,
        sampling: str = "proportional",
        temperature: float | None = None,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.task_indices = [np.asarray(indices, dtype=np.int64) for indices in task_indices]
        self.batch_size = batch_size
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.sampling = sampling
        self.probabilities = task_probabilities([len(i) for i in self.task_indices], sampling, temperature)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose batches `__iter__` gives (accelerate's data loader passes the Trainer's on)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(math.ceil(len(indices) / self.batch_size) for indices in self.task_indices)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.sampling == "proportional":
            batches = [batch for task in range(len(self.task_indices)) for batch in self._batches(task, rng)]
            for i in rng.permutation(len(batches)):
                yield batches[i]
            return
        queues: list[list[list[int]]] = [[] for _ in self.task_indices]
        for _ in range(len(self)):
            task = int(rng.choice(len(queues), p=self.probabilities))
            if not queues[task]:
                queues[task] = self._batches(task, rng)[::-1]
            yield queues[task].pop()

    def _batches(self, task: int, rng: np.random.Generator) -> list[list[int]]:
        """One task's windows shuffled into batches (by length within groups of `_MEGABATCH` batches)."""
        order = rng.permutation(self.task_indices[task])
        if self.lengths is not None:
            size = _MEGABATCH * self.batch_size
            groups = [order[i : i + size] for i in range(0, len(order), size)]
            order = np.concatenate([g[np.argsort(-self.lengths[g], kind="stable")] for g in groups])
        return [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]


class TaskCollator:
    """Pads a batch with ``collator`` (the single-task one), then adds each row's ``task_ids`` as a tensor."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        task_ids = [feature["task_ids"] for feature in features]
        batch = self.collator([{k: v for k, v in feature.items() if k != "task_ids"} for feature in features])
        batch["task_ids"] = torch.tensor(task_ids, dtype=torch.long)
        return batch


def task_predictions(model: Any, names: Sequence[str], decoding: str) -> Any:
    """``preprocess_logits_for_metrics`` of a multi-task model: for every row, each task's label ids per token,
    decoded as a single-task model's (`decoding.token_predictions`, with the task's CRF or its labels'
    constraints), stacked ``(batch, tokens, tasks)``: an evaluation batch may hold several tasks' rows, and
    `task_metrics` reads each row's own task."""
    decoders = {name: model.task_decoder(name) for name in names}  # a CRF is the live module: it learns

    def predictions(logits: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        if decoding == "argmax":
            return torch.stack([logits[name].argmax(-1) for name in names], -1)
        return torch.stack([token_predictions(logits[name], labels, decoders[name]) for name in names], -1)

    return predictions


def task_metrics(dev: Mapping[str, tuple[list[dict[str, Any]], list[Sentence], dict[int, str]]], names: Sequence[str]):
    """`compute_metrics` of a multi-task run: each task's scores on its own dev data (``NAME_f1``,
    ``NAME_precision``, ``NAME_TYPE_f1``, ...; the Trainer adds ``eval_``), and ``f1``, their tasks' mean, which
    picks the best model (``--metric-for-best-model f1``).

    ``dev``: for the tasks with dev data, their windows (`features.encode`), sentences and labels; the evaluation
    data is their windows one task after the other, in the order of ``names``.
    """
    scored = [name for name in names if name in dev]

    def compute_metrics(prediction: Any) -> dict[str, float]:
        metrics: dict[str, float] = {}
        start = 0
        for name in scored:
            features, sentences, id2label = dev[name]
            rows = prediction.predictions[start : start + len(features), :, names.index(name)]
            start += len(features)
            scores = dev_metrics(features, sentences, id2label)(SimpleNamespace(predictions=rows))
            metrics.update({f"{name}_{key}": value for key, value in scores.items()})
        metrics["f1"] = float(np.mean([metrics[f"{name}_f1"] for name in scored]))
        return metrics

    return compute_metrics


def build_task_trainer(
    model: Any,
    tokenizer: Any,
    task_splits: Mapping[str, Mapping[str, list[Sentence]]],
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Any,
    run_args: RunArguments,
    max_length: int,
) -> NerTrainer:
    """The `NerTrainer` of a multi-task model: every task's training windows (labels in its own label ids, and
    its ``task_ids``) in batches of one task (`TaskBatchSampler`), and its dev windows scored by its own head
    (`task_metrics`). ``task_splits``: each task's train (and validation) sentences, in the model's task order."""
    names = list(model.config.task_names)
    train: list[dict[str, Any]] = []
    train_tasks: list[range] = []
    dev_rows: list[dict[str, Any]] = []
    dev = {}
    options = dict(max_length=max_length, stride=data_args.stride, label_all_subwords=data_args.label_all_subwords)
    for task_id, name in enumerate(names):
        labels = model.config.tasks[name]["labels"]
        label2id = {label: i for i, label in enumerate(labels)}
        windows = _with_task(encode(task_splits[name]["train"], tokenizer, label2id, **options), task_id)
        train_tasks.append(range(len(train), len(train) + len(windows)))
        train += windows
        if "validation" in task_splits[name]:
            features = encode(task_splits[name]["validation"], tokenizer, label2id, **options)
            dev[name] = (features, task_splits[name]["validation"], dict(enumerate(labels)))
            dev_rows += _with_task(features, task_id)
    sampler = TaskBatchSampler(
        train_tasks,
        training_args.train_batch_size,
        lengths=[len(window["input_ids"]) for window in train] if _groups_by_length(training_args) else None,
        sampling=data_args.task_sampling,
        temperature=data_args.sampling_temperature,
        seed=training_args.data_seed if training_args.data_seed is not None else training_args.seed,
    )
    print(
        "batches drawn per task ("
        + data_args.task_sampling
        + "): "
        + ", ".join(f"{name} {100 * p:.0f}%" for name, p in zip(names, sampler.probabilities, strict=True))
    )
    return ner_trainer(
        model,
        tokenizer,
        (model_args, data_args, training_args, run_args),
        max_length,
        train_dataset=train,
        eval_dataset=dev_rows or None,
        wrap_collator=TaskCollator,
        compute_metrics=task_metrics(dev, names) if dev else None,
        preprocess_logits_for_metrics=task_predictions(model, names, run_args.decoding),
        train_batch_sampler=sampler,
    )


def _with_task(features: list[dict[str, Any]], task_id: int) -> list[dict[str, Any]]:
    return [{**row, "task_ids": task_id} for row in model_input_rows(features)]


def _groups_by_length(training_args: Any) -> bool:
    """Whether the run asked for batches of similar length (5.x's train_sampling_strategy, 4.x's group_by_length)."""
    strategy = getattr(training_args, "train_sampling_strategy", None)
    return str(getattr(strategy, "value", strategy)) == "group_by_length" or bool(
        getattr(training_args, "group_by_length", False)
    )

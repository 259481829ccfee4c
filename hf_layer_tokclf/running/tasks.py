"""A model's heads as prediction reads them: a single-task model's one, or the tasks of a multi-task model, each with
its labels, its decoder and its scheme, and the one rule that says which tasks a run predicts (``--tasks``).

Every task of a multi-task model is decoded exactly as a single-task model with that task's labels and CRF
(`decoding`'s one path, given a `Head`'s ``id2label`` and ``decoder``); the model's one forward pass per batch
gives all their logits (`logits.task_logits`). A PyTorch model and its ONNX runner read alike: ``config.tasks``,
``model.task_decoder(name)`` and ``outputs.logits[name]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..model.auto import is_multitask
from ..model.pipeline_layer_tokclf import LinearChainCRF, label_decoder

__all__ = ["TASK_KEY", "Head", "model_heads", "model_task_names", "parse_tasks", "task_head"]

# The key a multi-task model's entity names its task by (the travelling pipeline's too).
TASK_KEY = "task"


@dataclass(frozen=True)
class Head:
    """One head of a model as decoding reads it.

    ``name``: the task (``None`` for a single-task model, whose outputs carry no task); ``id2label`` its labels;
    ``decoder`` its CRF, or its labels' constraints alone (`pipeline_layer_tokclf.label_decoder`); ``scheme`` the
    scheme its training labels were written in (CoNLL output is written back in it).
    """

    name: str | None
    id2label: Mapping[int, str]
    decoder: LinearChainCRF
    scheme: str

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.id2label.items()}


def model_task_names(model: Any) -> list[str] | None:
    """A multi-task model's task names in its own order (the task ids'), or ``None`` for a single-task model."""
    config = model.config
    return list(config.tasks) if is_multitask(config) else None


def parse_tasks(text: str | None) -> list[str] | None:
    """``--tasks disease,cg`` as a list (``None`` for none given); an empty name is refused (`model_heads` checks
    the names against the model's)."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ValueError(f"--tasks {text!r}: expected task names separated by commas (disease,cg).")
    return names


def model_heads(model: Any, tasks: Sequence[str] | None = None) -> list[Head]:
    """The heads a run predicts with: a single-task model's one (its ``config.id2label`` and `label_decoder`), or
    the ``tasks`` of a multi-task model (default: all of them, in the model's order), in that order.

    Raises:
        ValueError: ``tasks`` names a task the model does not have (the error lists the model's), or ``tasks`` is
            given for a single-task model.
    """
    names = model_task_names(model)
    config = model.config
    if names is None:
        if tasks:
            labels = ", ".join(config.id2label[i] for i in range(len(config.id2label)))
            raise ValueError(
                f"task {', '.join(map(repr, tasks))} asked of a single-task model (labels {labels}), which has no "
                "tasks: name none (no --tasks; evaluate --data PATH)."
            )
        scheme = getattr(config, "label_scheme", None) or "IOB2"
        return [Head(None, config.id2label, label_decoder(model), scheme)]
    twice = sorted({name for name in tasks or () if list(tasks).count(name) > 1})
    if twice:
        raise ValueError(f"tasks {', '.join(tasks)}: {', '.join(twice)} named more than once.")
    unknown = [name for name in tasks or () if name not in names]
    if unknown:
        raise ValueError(
            f"task {', '.join(map(repr, unknown))} is not a task of this model; its tasks are {', '.join(names)}."
        )
    return [_task_head(model, name) for name in (tasks or names)]


def _task_head(model: Any, name: str) -> Head:
    task = model.config.tasks[name]
    return Head(name, dict(enumerate(task["labels"])), model.task_decoder(name), task.get("scheme") or "IOB2")


def task_head(model: Any, task: str | None = None) -> Head:
    """The one head a score is for: a single-task model's (``task`` left out), or task ``task`` of a multi-task
    model, which may be left out only where the model has one task.

    Raises:
        ValueError: no ``task`` for a model of several, or one the model does not have (naming the model's).
    """
    names = model_task_names(model)
    if names is not None and task is None:
        if len(names) > 1:
            raise ValueError(
                f"this model has {len(names)} tasks ({', '.join(names)}): say which task the data is for "
                f"(evaluate --data TASK=PATH, as --data {names[0]}=PATH), each scored on its own data."
            )
        task = names[0]
    return model_heads(model, None if task is None else [task])[0]

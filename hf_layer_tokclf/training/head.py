"""The model to train: the backbone of a family loaded with a new head (`load_with_new_head`, one line instead of
transformers' load report), seeded, for the run's labels and layers (`load_tokenizer_and_model`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..model.tokenization import load_tokenizer
from .arguments import ModelArguments
from .splits import trained_labels

# Parameters of what `train` adds on top of the pretrained encoder: the linear head and the scalar mix (and a
# multi-task model's heads and CRFs, one per task).
HEAD_PARAMETERS = ("classifier.", "scalar_mix.", "crf.", "classifiers.", "crfs.")
_HEAD_NAMES = {
    "classifier": "classification head",
    "crf": "CRF",
    "scalar_mix": "scalar mix",
    "classifiers": "classification heads",
    "crfs": "CRFs",
}


class _HeldRecords(logging.Filter):
    """Holds back the warnings a logger would emit, to be let through (or not) once the caller knows more."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        self.records.append(record)
        return False


def _is_load_report(record: logging.LogRecord) -> bool:
    """transformers' report of the weights a checkpoint lacked: 5.x's LOAD REPORT table, 4.x's sentence."""
    message = record.getMessage()
    return "LOAD REPORT" in message or "newly initialized:" in message


def load_with_new_head(model_class: Any, source: str | Path, *, announce: bool = True, **kwargs: Any) -> Any:
    """``model_class.from_pretrained(source, **kwargs)`` for a model whose head (`HEAD_PARAMETERS`) may be new.

    When the head's weights are all the checkpoint lacks (a backbone, the usual start of training),
    transformers' report of them (5.x's LOAD REPORT table of MISSING rows, 4.x's "newly initialized"
    warning) is replaced by one line on standard output saying so (with ``announce``; without, by
    nothing, for a caller that fills the head itself). Any other missing, unexpected or mismatched
    weight is a real problem of the checkpoint: transformers' report is then emitted whole.
    """
    loader_logger = logging.getLogger("transformers.modeling_utils")
    held = _HeldRecords()
    loader_logger.addFilter(held)
    loaded = None
    try:
        loaded = model_class.from_pretrained(str(source), output_loading_info=True, **kwargs)
    finally:  # also when loading fails: transformers' error then points at the report above it
        loader_logger.removeFilter(held)
        new = _created_head(loaded[1]) if loaded else []
        for record in held.records:  # in the order they were logged
            if not (new and _is_load_report(record)):
                loader_logger.handle(record)
    model = loaded[0]
    if new and announce:
        _say_new_head(model, source, new)
    return model


def _say_new_head(model: Any, source: str | Path, modules: list[str]) -> None:
    """The one line that replaces transformers' load report of a head that training creates."""
    print(f"a new {' and '.join(_HEAD_NAMES.get(name, name) for name in modules)} ({model.config.num_labels} labels) "
          f"on {_layers_read(model.config)} of {source}: it is trained from scratch")  # fmt: skip


def _created_head(info: dict[str, Any]) -> list[str]:
    """The head modules (``classifier``, ``crf``, ...) a load created, when they are all the checkpoint lacked;
    else (other weights missing, unexpected or mismatched: the checkpoint's own problems) none."""
    missing = list(info["missing_keys"])
    if not missing or info["unexpected_keys"] or info["mismatched_keys"]:
        return []
    if not all(key.startswith(HEAD_PARAMETERS) for key in missing):
        return []
    return sorted({key.split(".")[0] for key in missing})


def _layers_read(config: Any) -> str:
    """``hidden_states[4]``, ``hidden_states[1, 2] (mean)``, or the last layer for a stock classifier."""
    layer = getattr(config, "hidden_layer", None)
    if layer is None:
        return "the last layer"
    if isinstance(layer, int):
        return f"hidden_states[{layer}]"
    return f"hidden_states[{', '.join(map(str, layer))}] ({config.layer_pooling})"


def load_tokenizer_and_model(
    model_args: ModelArguments, training_args: Any, labels: list[str], model_class: Any
) -> tuple[Any, Any]:
    """The backbone's tokenizer, and the model with a new head for ``labels`` (seeded first)."""
    from transformers import set_seed

    from ..model.modeling_layer_tokclf import LayerTokenClassifier

    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model)
    layers = model_args.hidden_layer or [-1]  # not given: the last
    layer = layers[0] if len(layers) == 1 else list(layers)
    id2label, label2id = dict(enumerate(labels)), {label: i for i, label in enumerate(labels)}
    head_kwargs = dict(num_labels=len(labels), id2label=id2label, label2id=label2id)
    if model_args.classifier_dropout is not None:
        head_kwargs["classifier_dropout"] = model_args.classifier_dropout
    if issubclass(model_class, LayerTokenClassifier):
        head_kwargs.update(hidden_layer=layer, layer_pooling=model_args.layer_pooling, use_crf=model_args.crf)
    # Seed before the head is initialised, as run_ner.py does: runs with the same seed start
    # from the same head and see the same batches.
    set_seed(training_args.seed)
    model = load_with_new_head(
        model_class, model_args.model, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **head_kwargs
    )
    trained = trained_labels(model_args.model)
    if trained is not None and sorted(trained) != sorted(labels):
        _new_head(model)  # other labels of the same number load without a size mismatch: replace them too
        _say_new_head(model, model_args.model, ["classifier", "crf"] if getattr(model, "crf", None) else ["classifier"])
    if model_args.hidden_layer is None and issubclass(model_class, LayerTokenClassifier):
        print(default_layer_note(model.config))
    return tokenizer, model


def load_tokenizer_and_task_model(
    model_args: ModelArguments, training_args: Any, tasks: dict[str, dict[str, Any]]
) -> tuple[Any, Any]:
    """The backbone's tokenizer, and the family's multi-task model built from it with a new head per task (seeded
    first, as `load_tokenizer_and_model`). ``tasks``: the model's ``config.tasks`` (labels, layer, scheme, CRF)."""
    from transformers import set_seed

    from ..model.auto import AutoModelForMultiTaskLayerTokenClassification

    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model)
    set_seed(training_args.seed)
    model = load_with_new_head(
        AutoModelForMultiTaskLayerTokenClassification,
        model_args.model,
        announce=False,
        tasks=tasks,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
    )
    for name in model.config.task_names:
        task = model.config.tasks[name]
        print(
            f"task {name}: {len(task['labels'])} labels, a head{' and CRF' if task['use_crf'] else ''} on "
            f"hidden_states[{task['hidden_layer']}] of {model_args.model}"
        )
    return tokenizer, model


def default_layer_note(config: Any) -> str:
    """What `train` says when no ``--hidden-layer`` is given: the layer the model reads, and how to choose another."""
    return (
        f"reading hidden_states[{config.hidden_layer}], the last of {config.num_hidden_layers} layers (give "
        "--hidden-layer to choose; `hf-layer-tokclf sweep` compares them)"
    )


def _new_head(model: Any) -> None:
    """Replaces the head (the linear classifier, and the CRF where there is one) by a newly initialised one.

    New modules, because transformers 5.x's initialisers skip the tensors that `from_pretrained` loaded.
    """
    from ..model.pipeline_layer_tokclf import LinearChainCRF

    linear = model.classifier
    model.classifier = torch.nn.Linear(linear.in_features, len(model.config.id2label), device=linear.weight.device)
    model._init_weights(model.classifier)
    if getattr(model, "crf", None) is not None:
        model.crf = LinearChainCRF(model.config.id2label).to(linear.weight.device)
        model._init_weights(model.crf)

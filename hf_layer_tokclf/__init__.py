"""Token classification from a chosen hidden layer of an encoder (BERT, RoBERTa, DeBERTa, ...), as HF models.

The names below are imported on first use (PEP 562), so that ``import hf_layer_tokclf`` (which the command line's
``--help`` goes through) imports neither torch nor transformers. Using any of them imports `auto`, which registers
the classes with transformers' Auto classes (`auto.register_auto_classes`); so do the package's loaders.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "AutoLayerConfig": "auto",
    "AutoLayerModel": "auto",
    "AutoModelForLayerTokenClassification": "auto",
    "BertForLayerTokenClassification": "modeling_layer_tokclf",
    "BertLayerModel": "modeling_layer_tokclf",
    "LayerTokenClassificationConfig": "configuration_layer_tokclf",
    "LayerTokenClassificationPipeline": "pipeline_layer_tokclf",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    importlib.import_module(".auto", __name__)  # registers the Auto classes before any class is handed out
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

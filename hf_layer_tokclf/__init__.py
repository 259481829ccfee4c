"""Token classification from a chosen hidden layer of an encoder (BERT, RoBERTa, DeBERTa, ...), as HF models.

The names below are imported on first use (PEP 562), so that ``import hf_layer_tokclf`` (which the command line's
``--help`` goes through) imports neither torch nor transformers. The classes are still registered with
transformers' Auto classes by ``import hf_layer_tokclf`` alone: at once if transformers is loaded, else as soon as it
is (`model.auto.register_auto_classes`), so ``AutoModelForTokenClassification.from_pretrained(folder)`` needs no
``trust_remote_code`` in a process that imported the package, whatever the import order.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "AutoLayerConfig": "model.auto",
    "AutoLayerModel": "model.auto",
    "AutoModelForLayerTokenClassification": "model.auto",
    "AutoModelForMultiTaskLayerTokenClassification": "model.auto",
    "BertForLayerTokenClassification": "model.modeling_layer_tokclf",
    "BertForMultiTaskLayerTokenClassification": "model.modeling_multitask_layer_tokclf",
    "BertLayerModel": "model.modeling_layer_tokclf",
    "LayerTokenClassificationConfig": "model.configuration_layer_tokclf",
    "LayerTokenClassificationPipeline": "model.pipeline_layer_tokclf",
    "MultiTaskLayerTokenClassificationConfig": "model.configuration_layer_tokclf",
    "MultiTaskLayerTokenClassificationPipeline": "model.pipeline_layer_tokclf",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    importlib.import_module(".model.auto", __name__)  # registers the Auto classes before any class is handed out
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _importing_this_package(but: str) -> bool:
    """Whether a module of this package other than ``but`` is in the middle of its import."""
    return any(
        getattr(getattr(module, "__spec__", None), "_initializing", False)
        for name, module in list(sys.modules.items())
        if name.startswith(f"{__name__}.") and name != but
    )


class _RegisterWhenTransformersLoads(importlib.abc.MetaPathFinder):
    """Imports `auto` (which registers the Auto classes) as soon as transformers is loaded: right after its own
    ``__init__``, or, where a module of this package imported it (the travelling files do, at their top), once that
    module is complete: registering in the middle would import the module again, half-built (a circular import)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "transformers" and not name.startswith(f"{__name__}."):
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else finder.find_spec(name, path, target)
            if spec is not None:
                break
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def load_then_register(module: Any) -> None:
                load(module)
                self.register(but=module.__name__)

            spec.loader.exec_module = load_then_register
        return spec

    def register(self, but: str) -> None:
        if "transformers" in sys.modules and self in sys.meta_path and not _importing_this_package(but):
            sys.meta_path.remove(self)
            importlib.import_module(".model.auto", __name__)


if "transformers" in sys.modules:
    importlib.import_module(".model.auto", __name__)
elif not any(isinstance(finder, _RegisterWhenTransformersLoads) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenTransformersLoads())

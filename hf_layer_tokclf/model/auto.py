"""The layer classifier of any supported encoder family, picked from a checkpoint's ``config.json``.

``AutoModelForLayerTokenClassification.from_pretrained("roberta-base", hidden_layer=4, num_labels=3)``
reads only ``model_type`` from the checkpoint's config and hands over to the family's class; the
families are an allow-list of transformers' own model types, so nothing a config names is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import PretrainedConfig

from .modeling_layer_tokclf import (
    BertForLayerTokenClassification,
    BertLayerModel,
    DebertaV2ForLayerTokenClassification,
    DebertaV2LayerModel,
    ElectraForLayerTokenClassification,
    ElectraLayerModel,
    ModernBertForLayerTokenClassification,
    ModernBertLayerModel,
    RobertaForLayerTokenClassification,
    RobertaLayerModel,
    XLMRobertaForLayerTokenClassification,
    XLMRobertaLayerModel,
)
from .modeling_multitask_layer_tokclf import (
    BertForMultiTaskLayerTokenClassification,
    DebertaV2ForMultiTaskLayerTokenClassification,
    ElectraForMultiTaskLayerTokenClassification,
    ModernBertForMultiTaskLayerTokenClassification,
    RobertaForMultiTaskLayerTokenClassification,
    XLMRobertaForMultiTaskLayerTokenClassification,
)

try:  # transformers 5.x
    from .modeling_layer_tokclf import EuroBertForLayerTokenClassification, EuroBertLayerModel
    from .modeling_multitask_layer_tokclf import EuroBertForMultiTaskLayerTokenClassification
except ImportError:  # transformers 4.x has no EuroBERT
    EuroBertForLayerTokenClassification = None


@dataclass(frozen=True)
class Family:
    """One supported encoder family: its name, its plain checkpoints' model_type and our classes."""

    name: str
    classifier_class: type
    encoder_class: type
    multitask_class: type

    @property
    def multitask_config_class(self) -> type:
        return self.multitask_class.config_class

    @property
    def multitask_type(self) -> str:
        return self.multitask_config_class.model_type

    @property
    def config_class(self) -> type:
        return self.classifier_class.config_class

    @property
    def backbone_type(self) -> str:
        return self.config_class.backbone_type

    @property
    def model_type(self) -> str:
        return self.config_class.model_type

    @property
    def stock_class_name(self) -> str:
        """The family's own transformers classifier, e.g. ``"RobertaForTokenClassification"``."""
        return self.classifier_class.__name__.replace("ForLayerTokenClassification", "ForTokenClassification")


_FAMILIES = [
    Family("BERT", BertForLayerTokenClassification, BertLayerModel, BertForMultiTaskLayerTokenClassification),
    Family(
        "RoBERTa", RobertaForLayerTokenClassification, RobertaLayerModel, RobertaForMultiTaskLayerTokenClassification
    ),
    Family(
        "XLM-RoBERTa",
        XLMRobertaForLayerTokenClassification,
        XLMRobertaLayerModel,
        XLMRobertaForMultiTaskLayerTokenClassification,
    ),
    Family(
        "ELECTRA", ElectraForLayerTokenClassification, ElectraLayerModel, ElectraForMultiTaskLayerTokenClassification
    ),
    Family(
        "DeBERTa-v2/v3",
        DebertaV2ForLayerTokenClassification,
        DebertaV2LayerModel,
        DebertaV2ForMultiTaskLayerTokenClassification,
    ),
    Family(
        "ModernBERT",
        ModernBertForLayerTokenClassification,
        ModernBertLayerModel,
        ModernBertForMultiTaskLayerTokenClassification,
    ),
]
if EuroBertForLayerTokenClassification is not None:
    _FAMILIES.append(
        Family(
            "EuroBERT",
            EuroBertForLayerTokenClassification,
            EuroBertLayerModel,
            EuroBertForMultiTaskLayerTokenClassification,
        )
    )

# Keyed by the plain checkpoints' model_type ("bert", "roberta", ...).
FAMILIES: dict[str, Family] = {family.backbone_type: family for family in _FAMILIES}


def family_of(model_type: str | None, source: Any = None) -> Family:
    """The family of a plain checkpoint's or a layer classifier's ``model_type``.

    Raises `ValueError` naming ``source`` and the supported model types for any other value.
    """
    for family in FAMILIES.values():
        if model_type in (family.backbone_type, family.model_type, family.multitask_type):
            return family
    where = f"{source}: " if source is not None else ""
    raise ValueError(
        f"{where}model_type {model_type!r} is not an encoder family hf_layer_tokclf supports; it takes "
        f"checkpoints of model_type {', '.join(repr(t) for t in FAMILIES)} and the layer classifiers saved from them."
    )


def checkpoint_family(pretrained_model_name_or_path: Any, **kwargs: Any) -> Family:
    """The family of a checkpoint folder or Hub id, from its ``config.json``'s ``model_type`` alone.

    ``kwargs`` may hold `from_pretrained`'s location arguments (``revision``, ``token``, ...).
    """
    config_dict, _ = PretrainedConfig.get_config_dict(pretrained_model_name_or_path, **dict(kwargs))
    return family_of(config_dict.get("model_type"), pretrained_model_name_or_path)


def is_multitask(config: Any) -> bool:
    """Whether a config (or a ``config.json`` dict) is a multi-task layer classifier's: a head per task."""
    model_type = config.get("model_type") if isinstance(config, dict) else getattr(config, "model_type", None)
    return isinstance(model_type, str) and model_type.endswith("-multitask-layer-tokclf")


class _AutoLayerClass:
    """Dispatches `from_pretrained` to the class of the checkpoint's family (its multi-task class where the
    checkpoint is a multi-task model's)."""

    _family_attribute = ""
    _multitask_attribute = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise OSError(f"{type(self).__name__} is built with from_pretrained(...) or from_config(config).")

    @classmethod
    def family_class(cls, pretrained_model_name_or_path: Any, **kwargs: Any) -> type:
        """The class ``from_pretrained`` would hand ``pretrained_model_name_or_path`` to."""
        config = kwargs.get("config")
        if not isinstance(config, PretrainedConfig):
            config, _ = PretrainedConfig.get_config_dict(pretrained_model_name_or_path, **dict(kwargs))
        return cls.class_for(config, pretrained_model_name_or_path if isinstance(config, dict) else "config")

    @classmethod
    def class_for(cls, config: Any, source: Any = None) -> type:
        """The class for a config object or ``config.json`` dict of a family."""
        model_type = config.get("model_type") if isinstance(config, dict) else config.model_type
        family = family_of(model_type, source)
        multitask = is_multitask(config) and cls._multitask_attribute
        return getattr(family, cls._multitask_attribute if multitask else cls._family_attribute)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *model_args: Any, **kwargs: Any) -> Any:
        """The family class's ``from_pretrained`` (``hidden_layer=``, ``num_labels=``, ... go to its config)."""
        model_class = cls.family_class(pretrained_model_name_or_path, **kwargs)
        return model_class.from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)


class _AutoLayerModelClass(_AutoLayerClass):
    """Models, unlike configs, can also be built from a config."""

    @classmethod
    def from_config(cls, config: PretrainedConfig) -> Any:
        """A randomly initialised model for a layer classifier's config (or a plain family config)."""
        model_class = cls.class_for(config, "config")
        if not isinstance(config, model_class.config_class):
            fields = {k: v for k, v in config.to_dict().items() if k != "model_type"}
            config = model_class.config_class.from_dict(fields)
        return model_class(config)


class AutoModelForLayerTokenClassification(_AutoLayerModelClass):
    """The ``*ForLayerTokenClassification`` of a checkpoint's family (BERT, RoBERTa, DeBERTa-v2, ...); its
    ``*ForMultiTaskLayerTokenClassification`` for a saved multi-task model."""

    _family_attribute = "classifier_class"
    _multitask_attribute = "multitask_class"


class AutoModelForMultiTaskLayerTokenClassification(_AutoLayerModelClass):
    """The ``*ForMultiTaskLayerTokenClassification`` of a checkpoint's family: ``from_pretrained(backbone,
    tasks={"disease": {"labels": [...], "hidden_layer": 4}, ...})`` puts a head per task on a plain backbone."""

    _family_attribute = "multitask_class"
    _multitask_attribute = "multitask_class"


class AutoLayerModel(_AutoLayerModelClass):
    """The ``*LayerModel`` (encoder part, no head) of a checkpoint's family."""

    _family_attribute = "encoder_class"


class AutoLayerConfig(_AutoLayerClass):
    """The ``*LayerTokenClassificationConfig`` of a checkpoint's family (its multi-task one for a multi-task model)."""

    _family_attribute = "config_class"
    _multitask_attribute = "multitask_config_class"


def register_auto_classes() -> None:
    """Makes transformers' Auto classes resolve the package's model types in this process (idempotent).

    The auto-class markers make save_pretrained write `auto_map` and copy the three code files beside the
    weights, so that people without this package load the model with trust_remote_code=True.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

    for family in FAMILIES.values():
        AutoConfig.register(family.model_type, family.config_class, exist_ok=True)
        AutoModelForTokenClassification.register(family.config_class, family.classifier_class, exist_ok=True)
        AutoModel.register(family.config_class, family.encoder_class, exist_ok=True)
        family.config_class.register_for_auto_class()
        family.classifier_class.register_for_auto_class("AutoModelForTokenClassification")
        family.encoder_class.register_for_auto_class("AutoModel")
        AutoConfig.register(family.multitask_type, family.multitask_config_class, exist_ok=True)
        AutoModelForTokenClassification.register(family.multitask_config_class, family.multitask_class, exist_ok=True)
        family.multitask_config_class.register_for_auto_class()
        family.multitask_class.register_for_auto_class("AutoModelForTokenClassification")


register_auto_classes()  # on import: every loader of the package imports this module

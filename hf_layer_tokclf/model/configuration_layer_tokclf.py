"""Configurations of token classifiers that read a chosen hidden layer of an encoder, one per family.

Each is the family's own configuration (every field describes the *backbone*, so ``num_hidden_layers``
stays its depth ``L``) plus the fields of [`LayerConfig`]. This file travels next to every saved model
and is executed by whoever loads it with ``trust_remote_code=True``: it imports only ``transformers``
and has no side effects.
"""

from transformers import BertConfig, DebertaV2Config, ElectraConfig, ModernBertConfig, RobertaConfig, XLMRobertaConfig

try:
    from transformers import EuroBertConfig
except ImportError:  # transformers 4.x has no EuroBERT
    EuroBertConfig = None

LAYER_POOLINGS = ("mean", "concat", "scalar_mix")

# config.json fields that would make transformers resolve something else by name (a model, a backbone,
# remote code): a layer classifier is built from its own fields only, so they are dropped on load.
FOREIGN_FIELDS = (
    "_name_or_path",
    "trust_remote_code",
    "backbone",
    "backbone_config",
    "backbone_kwargs",
    "use_timm_backbone",
    "use_pretrained_backbone",
)


class LayerConfig:
    r"""
    What a layer classifier's configuration adds to its family's configuration (mixed in first):

    Args:
        hidden_layer (`int` or `list[int]`, *optional*, defaults to -1):
            Which entry of the ``hidden_states`` tuple (length ``L + 1``) the classifier reads:
            0 is the embeddings, ``L`` the last layer, negative values count from the end
            (-1 = last). A list selects several layers, combined by ``layer_pooling``. Stored
            non-negative. The model builds only layers ``1..max(hidden_layer)``.
        layer_pooling (`str`, *optional*, defaults to `"mean"`):
            How a list of layers becomes one vector per token: ``"mean"`` averages them,
            ``"concat"`` concatenates them (the head then has ``len(hidden_layer) * hidden_size``
            inputs), ``"scalar_mix"`` learns softmax-normalised weights and a scale (ELMo).
            Ignored when ``hidden_layer`` is a single int.
        classifier_dropout (`float`, *optional*):
            Dropout before the linear head; ``None`` falls back to ``hidden_dropout_prob`` (0 for families
            without one), as in the family's ``*ForTokenClassification``.
        use_crf (`bool`, *optional*, defaults to `False`):
            A linear-chain CRF over the head's scores: label transitions learned with the head, the loss
            over word positions, the label scheme's forbidden transitions (``O I-X``) never taken.

    A plain ``config.json`` of the family (``model_type`` = ``backbone_type``, e.g. ``"bert"``) loads into
    it without a warning: that is how a backbone such as PubMedBERT becomes a layer classifier.
    """

    backbone_type = None  # the model_type of the family's plain checkpoints

    def __init_subclass__(cls, **kwargs):
        # transformers 5.x turns every config class without an `__init__` of its own into a dataclass
        # with a generated one; give each family's class this one first.
        if "__init__" not in cls.__dict__:
            cls.__init__ = next(k.__dict__["__init__"] for k in cls.__mro__ if "__init__" in k.__dict__)
        super().__init_subclass__(**kwargs)

    def __init__(self, hidden_layer=-1, layer_pooling="mean", use_crf=False, **kwargs):
        # Before the family config sees them: transformers 4.x and 5.x settle a disagreement differently, in silence.
        check_label_maps(kwargs.get("num_labels"), kwargs.get("id2label"), kwargs.get("label2id"))
        super().__init__(**kwargs)
        if not hasattr(self, "classifier_dropout"):  # DeBERTa-v2 and EuroBERT configs have none
            self.classifier_dropout = None
        self.layer_pooling = layer_pooling
        if not isinstance(use_crf, bool):
            raise ValueError(f"use_crf has {use_crf!r} ({type(use_crf).__name__}); expected true or false.")
        self.use_crf = use_crf
        self.hidden_layer = hidden_layer
        self.hidden_layer = self.validate_layers()
        self._check_dropout()

    def _check_dropout(self):
        dropout = getattr(self, "classifier_dropout", None)
        if dropout is not None and (isinstance(dropout, bool) or not isinstance(dropout, (int, float))):
            raise ValueError(
                f"classifier_dropout has {dropout!r} ({type(dropout).__name__}); expected a float in [0, 1]."
            )
        if dropout is not None and not 0 <= dropout <= 1:
            raise ValueError(f"classifier_dropout={dropout} is out of range: expected a float in [0, 1].")

    def validate_layers(self):
        """Checks ``hidden_layer`` and ``layer_pooling``; returns ``hidden_layer`` made non-negative.

        Raises `ValueError` naming the allowed range for this ``num_hidden_layers``.
        """
        n = self.num_hidden_layers
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"num_hidden_layers has {n!r}; expected an int >= 1 (the backbone's depth).")
        allowed = f"ints from {-(n + 1)} to {n} (0 = embeddings, {n} or -1 = last layer of {n})"
        value = self.hidden_layer
        many = isinstance(value, (list, tuple))
        items = list(value) if many else [value]
        if many and not items:
            raise ValueError(f"hidden_layer is an empty list; give one or more {allowed}.")
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int):
                raise ValueError(f"hidden_layer has {item!r} ({type(item).__name__}); expected {allowed}.")
            if not -(n + 1) <= item <= n:
                raise ValueError(f"hidden_layer={item} is out of range: expected {allowed}.")
        layers = [item % (n + 1) for item in items]
        if len(set(layers)) != len(layers):
            raise ValueError(f"hidden_layer={value!r} names a layer twice.")
        if self.layer_pooling not in LAYER_POOLINGS:
            raise ValueError(f"layer_pooling={self.layer_pooling!r} is unknown; expected one of {LAYER_POOLINGS}.")
        return layers if many else layers[0]

    @property
    def layers(self):
        """The selected ``hidden_states`` indices, non-negative, as a list."""
        layers = self.validate_layers()
        return layers if isinstance(layers, list) else [layers]

    @property
    def num_layers_used(self):
        """How many encoder layers the model builds and stores: the deepest selected one."""
        return max(self.layers)

    @property
    def classifier_input_size(self):
        concat = len(self.layers) > 1 and self.layer_pooling == "concat"
        return self.hidden_size * (len(self.layers) if concat else 1)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = cls.get_config_dict(pretrained_model_name_or_path, **kwargs)
        model_type = config_dict.get("model_type")
        if model_type == cls.backbone_type:
            # A plain backbone of the family is the expected starting point, not a mismatch to warn about;
            # the code its auto_map names (if any) is someone else's.
            # So is the pipeline code its custom_pipelines names: ours is named when the model is saved.
            dropped = ("model_type", "auto_map", "custom_pipelines")
            config_dict = {k: v for k, v in config_dict.items() if k not in dropped}
        elif model_type not in (None, cls.model_type):
            raise ValueError(
                f"{pretrained_model_name_or_path} holds a {model_type!r} model; {cls.__name__} takes "
                f"{cls.backbone_type!r} checkpoints (and its own saves). AutoModelForLayerTokenClassification "
                "picks the class of a checkpoint's family."
            )
        return cls.from_dict(config_dict, **kwargs)

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        stored = config_dict.get("id2label")
        same_count = stored and kwargs.get("num_labels") == len(stored)
        if same_count and kwargs.get("id2label") is None and kwargs.get("label2id") is None:
            # The count the checkpoint already has (as transformers does): keep its label names.
            kwargs = {k: v for k, v in kwargs.items() if k != "num_labels"}
        if kwargs.get("num_labels") is not None or kwargs.get("id2label") is not None:
            # New labels for a saved model or a backbone: the caller's label arguments must agree
            # with each other; the checkpoint's label maps give way to them.
            check_label_maps(kwargs.get("num_labels"), kwargs.get("id2label"), kwargs.get("label2id"))
            config_dict = {k: v for k, v in config_dict.items() if k not in ("num_labels", "id2label", "label2id")}
            if kwargs.get("id2label") is not None and kwargs.get("label2id") is None:
                kwargs["label2id"] = {name: int(i) for i, name in kwargs["id2label"].items()}
        config_dict = {k: v for k, v in config_dict.items() if k not in FOREIGN_FIELDS}
        result = super().from_dict(config_dict, **kwargs)
        config = result[0] if isinstance(result, tuple) else result
        # from_dict sets keyword overrides (hidden_layer=...) after __init__: check them too.
        config.hidden_layer = config.validate_layers()
        config._check_dropout()
        return result

    @property
    def head_dropout(self):
        """The dropout probability before the head: ``classifier_dropout``, else ``hidden_dropout_prob``, else 0."""
        dropout = self.classifier_dropout
        return getattr(self, "hidden_dropout_prob", 0.0) if dropout is None else dropout

    @classmethod
    def layers_in_checkpoint(cls, config_dict):
        """How many encoder layers a checkpoint with this ``config.json`` dict stores."""
        if config_dict.get("model_type") != cls.model_type:
            return config_dict.get("num_hidden_layers", cls().num_hidden_layers)
        return max(layer % (config_dict["num_hidden_layers"] + 1) for layer in _as_list(config_dict["hidden_layer"]))


class MultiTaskLayerConfig(LayerConfig):
    r"""
    What a multi-task layer classifier's configuration adds to its family's: several heads ("tasks"), each on its
    own layer with its own labels, over one encoder built up to the deepest of them.

    Args:
        tasks (`dict[str, dict]`):
            Task name -> its head: ``labels`` (the label names, in id order), ``hidden_layer`` (an int as in
            [`LayerConfig`], default -1; stored non-negative), ``scheme`` (the labels' scheme, default ``"IOB2"``),
            ``use_crf`` (default `False`) and ``classifier_dropout`` (default `None`: the config's, as in
            [`LayerConfig`]). The names' sorted order is the order of the task ids a batch's ``task_ids`` give.

    ``hidden_layer`` is derived: the tasks' layers, sorted. The top-level ``id2label`` is unused: each task has
    its own labels (`task_id2label`).
    """

    TASK_FIELDS = ("labels", "hidden_layer", "scheme", "use_crf", "classifier_dropout")

    def __init__(self, tasks=None, **kwargs):
        kwargs.pop("hidden_layer", None)  # derived from the tasks
        super().__init__(**kwargs)
        self.tasks = tasks or {}
        self.hidden_layer = self.validate_layers()

    def validate_layers(self):
        """Checks ``tasks`` and makes their layers non-negative; returns their sorted layers (-1 without tasks)."""
        tasks = getattr(self, "tasks", None) or {}
        if not isinstance(tasks, dict):
            raise ValueError(f"tasks must be a dict of task name -> head, got {tasks!r} ({type(tasks).__name__}).")
        # Sorted: config.json is written with sorted keys, and the order is the task ids'.
        self.tasks = {name: self._checked_task(name, tasks[name]) for name in sorted(tasks, key=str)}
        self.hidden_layer = sorted({task["hidden_layer"] for task in self.tasks.values()}) or -1
        return super().validate_layers()

    def _checked_task(self, name, task):
        if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"task name {name!r} must be letters, digits, '_' or '-' (it names outputs and files).")
        if not isinstance(task, dict) or set(task) - set(self.TASK_FIELDS):
            raise ValueError(f"task {name!r} has {task!r}; expected a dict with keys among {self.TASK_FIELDS}.")
        labels = task.get("labels")
        if not isinstance(labels, (list, tuple)) or not labels or not all(isinstance(x, str) for x in labels):
            raise ValueError(f"task {name!r} has labels={labels!r}; expected a non-empty list of label names.")
        if len(set(labels)) != len(labels):
            raise ValueError(f"task {name!r} names a label twice: {labels!r}.")
        # The shared checks of `LayerConfig`, on a throwaway single-task view of this task's fields.
        view = _TaskFields(self.num_hidden_layers, task.get("hidden_layer", -1), task.get("classifier_dropout"))
        layer = LayerConfig.validate_layers(view)
        LayerConfig._check_dropout(view)
        use_crf = task.get("use_crf", False)
        if not isinstance(use_crf, bool):
            raise ValueError(f"task {name!r} has use_crf={use_crf!r}; expected true or false.")
        if isinstance(layer, list):
            raise ValueError(f"task {name!r} has hidden_layer={task['hidden_layer']!r}; expected one int per task.")
        scheme = task.get("scheme", "IOB2")
        return {"labels": list(labels), "hidden_layer": layer, "scheme": str(scheme), "use_crf": use_crf,
                "classifier_dropout": task.get("classifier_dropout")}  # fmt: skip

    @property
    def task_names(self):
        """The task names, sorted: task id ``i`` is ``task_names[i]``."""
        return list(self.tasks)

    def task_id2label(self, name):
        """``{id: label}`` of task ``name``."""
        return dict(enumerate(self.tasks[name]["labels"]))

    def task_dropout(self, name):
        """The dropout before task ``name``'s head: its own ``classifier_dropout``, else the config's."""
        dropout = self.tasks[name]["classifier_dropout"]
        return self.head_dropout if dropout is None else dropout


class _TaskFields:
    """The fields `LayerConfig`'s layer and dropout checks read, for one task."""

    layer_pooling = "mean"

    def __init__(self, num_hidden_layers, hidden_layer, classifier_dropout):
        self.num_hidden_layers = num_hidden_layers
        self.hidden_layer = hidden_layer
        self.classifier_dropout = classifier_dropout


class LayerTokenClassificationConfig(LayerConfig, BertConfig):
    r"""
    Configuration for [`BertForLayerTokenClassification`]: every field of [`BertConfig`], plus those of
    [`LayerConfig`] (``hidden_layer``, ``layer_pooling``, ``classifier_dropout``).

    Example:

    ```python
    >>> from hf_layer_tokclf import LayerTokenClassificationConfig
    >>> config = LayerTokenClassificationConfig(hidden_layer=-4, num_labels=3)
    >>> config.hidden_layer, config.num_layers_used
    (9, 9)
    ```
    """

    model_type = "bert-layer-tokclf"
    backbone_type = "bert"


class RobertaLayerTokenClassificationConfig(LayerConfig, RobertaConfig):
    """[`RobertaConfig`] with the fields of [`LayerConfig`]."""

    model_type = "roberta-layer-tokclf"
    backbone_type = "roberta"


class XLMRobertaLayerTokenClassificationConfig(LayerConfig, XLMRobertaConfig):
    """[`XLMRobertaConfig`] with the fields of [`LayerConfig`]."""

    model_type = "xlm-roberta-layer-tokclf"
    backbone_type = "xlm-roberta"


class ElectraLayerTokenClassificationConfig(LayerConfig, ElectraConfig):
    """[`ElectraConfig`] (a discriminator's) with the fields of [`LayerConfig`]."""

    model_type = "electra-layer-tokclf"
    backbone_type = "electra"


class DebertaV2LayerTokenClassificationConfig(LayerConfig, DebertaV2Config):
    """[`DebertaV2Config`] (DeBERTa-v2 and v3) with the fields of [`LayerConfig`]."""

    model_type = "deberta-v2-layer-tokclf"
    backbone_type = "deberta-v2"


class ModernBertLayerTokenClassificationConfig(LayerConfig, ModernBertConfig):
    """[`ModernBertConfig`] with the fields of [`LayerConfig`]."""

    model_type = "modernbert-layer-tokclf"
    backbone_type = "modernbert"


if EuroBertConfig is not None:

    class EuroBertLayerTokenClassificationConfig(LayerConfig, EuroBertConfig):
        """[`EuroBertConfig`] with the fields of [`LayerConfig`] (transformers 5.x)."""

        model_type = "eurobert-layer-tokclf"
        backbone_type = "eurobert"


class MultiTaskLayerTokenClassificationConfig(MultiTaskLayerConfig, BertConfig):
    r"""
    Configuration for [`BertForMultiTaskLayerTokenClassification`]: every field of [`BertConfig`], plus ``tasks``
    ([`MultiTaskLayerConfig`]).

    Example:

    ```python
    >>> from hf_layer_tokclf.model.configuration_layer_tokclf import MultiTaskLayerTokenClassificationConfig
    >>> tasks = {"disease": {"labels": ["O", "B-Disease", "I-Disease"], "hidden_layer": 4},
    ...          "cg": {"labels": ["O", "B-Cancer", "I-Cancer"], "hidden_layer": -1}}
    >>> config = MultiTaskLayerTokenClassificationConfig(tasks=tasks)
    >>> config.hidden_layer, config.num_layers_used
    ([4, 12], 12)
    ```
    """

    model_type = "bert-multitask-layer-tokclf"
    backbone_type = "bert"


class RobertaMultiTaskLayerTokenClassificationConfig(MultiTaskLayerConfig, RobertaConfig):
    """[`RobertaConfig`] with ``tasks`` ([`MultiTaskLayerConfig`])."""

    model_type = "roberta-multitask-layer-tokclf"
    backbone_type = "roberta"


class XLMRobertaMultiTaskLayerTokenClassificationConfig(MultiTaskLayerConfig, XLMRobertaConfig):
    """[`XLMRobertaConfig`] with ``tasks`` ([`MultiTaskLayerConfig`])."""

    model_type = "xlm-roberta-multitask-layer-tokclf"
    backbone_type = "xlm-roberta"


class ElectraMultiTaskLayerTokenClassificationConfig(MultiTaskLayerConfig, ElectraConfig):
    """[`ElectraConfig`] with ``tasks`` ([`MultiTaskLayerConfig`])."""

    model_type = "electra-multitask-layer-tokclf"
    backbone_type = "electra"


class DebertaV2MultiTaskLayerTokenClassificationConfig(MultiTaskLayerConfig, DebertaV2Config):
    """[`DebertaV2Config`] with ``tasks`` ([`MultiTaskLayerConfig`])."""

    model_type = "deberta-v2-multitask-layer-tokclf"
    backbone_type = "deberta-v2"


class ModernBertMultiTaskLayerTokenClassificationConfig(MultiTaskLayerConfig, ModernBertConfig):
    """[`ModernBertConfig`] with ``tasks`` ([`MultiTaskLayerConfig`])."""

    model_type = "modernbert-multitask-layer-tokclf"
    backbone_type = "modernbert"


if EuroBertConfig is not None:

    class EuroBertMultiTaskLayerTokenClassificationConfig(MultiTaskLayerConfig, EuroBertConfig):
        """[`EuroBertConfig`] with ``tasks`` ([`MultiTaskLayerConfig`]) (transformers 5.x)."""

        model_type = "eurobert-multitask-layer-tokclf"
        backbone_type = "eurobert"


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_label_maps(num_labels, id2label, label2id):
    """Raises `ValueError` naming both sides when ``num_labels``, ``id2label`` and ``label2id`` disagree.

    Each may be `None` (not given); ``id2label`` keys and ``label2id`` values may be strings, as in JSON.
    """
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1):
        raise ValueError(f"num_labels has {num_labels!r}; expected an int >= 1.")
    ids = _int_map(id2label, "id2label", keys=True)
    names = _int_map(label2id, "label2id", keys=False)
    if num_labels is not None and ids is not None and len(ids) != num_labels:
        raise ValueError(
            f"num_labels={num_labels} disagrees with id2label, which names {len(ids)} label(s): {id2label!r}. "
            "Give one of them, or make them agree."
        )
    if ids is not None and sorted(ids) != list(range(len(ids))):
        raise ValueError(f"id2label ids must be 0..{len(ids) - 1}, got {sorted(ids)}: {id2label!r}.")
    if ids is not None and names is not None and names != {name: i for i, name in ids.items()}:
        raise ValueError(f"label2id={label2id!r} is not the inverse of id2label={id2label!r}; make them agree.")


def _int_map(mapping, name, keys):
    """``mapping`` with its ids (keys or values) made ints; `None` stays `None`."""
    if mapping is None:
        return None
    if not isinstance(mapping, dict):
        raise ValueError(f"{name} must be a dict, got {mapping!r} ({type(mapping).__name__}).")
    try:
        if keys:
            return {int(k): v for k, v in mapping.items()}
        return {k: int(v) for k, v in mapping.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{name} must map {'ids to names' if keys else 'names to ids'}, got {mapping!r}.") from None


__all__ = [
    "DebertaV2LayerTokenClassificationConfig",
    "ElectraLayerTokenClassificationConfig",
    "LayerConfig",
    "LayerTokenClassificationConfig",
    "ModernBertLayerTokenClassificationConfig",
    "RobertaLayerTokenClassificationConfig",
    "XLMRobertaLayerTokenClassificationConfig",
] + (["EuroBertLayerTokenClassificationConfig"] if EuroBertConfig is not None else [])

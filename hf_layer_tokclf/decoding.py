"""From a token classifier's scores to labels and entities: the one path that predict, evaluate, the sweep,
the Hub check and ONNX serving all take.

- `word_labels`: for pre-tokenized words, one row of label scores per word (its first subword,
  windows merged by `features.word_rows`) gives one label per word, the row's arg-max.
- `text_entities`: for raw text, the windows' token logits give entities through transformers'
  own ``TokenClassificationPipeline.postprocess`` (its ``gather_pre_entities``, ``aggregate`` and
  ``aggregate_overlapping_entities``), so ``predict`` finds exactly what
  ``pipeline("token-classification")`` finds with the same ``aggregation_strategy`` and ``stride``.
  Only the form differs: scores are Python floats, and ``index`` is not reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from transformers.pipelines.token_classification import AggregationStrategy, TokenClassificationPipeline

__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "check_strategy", "text_entities", "word_labels"]

STRATEGIES = tuple(strategy.value for strategy in AggregationStrategy)  # none, simple, first, average, max
# Everywhere a strategy is not given: a word's label from its first subword, as training labels words.
DEFAULT_STRATEGY = "first"


def check_strategy(strategy: Any) -> str:
    """``strategy`` in lower case, or a ``ValueError`` naming the known ones."""
    value = str(strategy).lower()
    if value not in STRATEGIES:
        raise ValueError(f"aggregation_strategy={strategy!r} is unknown; expected one of {STRATEGIES}.")
    return value


def word_labels(word_scores: Sequence[Sequence[Any]], id2label: Mapping[int, str]) -> list[list[str]]:
    """One label per word of every sentence: the arg-max of each word's row of scores (logits or probabilities)."""
    return [[id2label[i] for i in np.asarray(rows).argmax(-1).tolist()] if len(rows) else [] for rows in word_scores]


class _Postprocessor(TokenClassificationPipeline):
    """The pipeline's postprocessing alone: what it reads of the pipeline is the tokenizer and ``id2label``."""

    def __init__(self, tokenizer: Any, id2label: Mapping[int, str]) -> None:  # no Pipeline.__init__: no model to run
        self.tokenizer = tokenizer
        self.model = SimpleNamespace(config=SimpleNamespace(id2label=id2label))
        self.framework = "pt"  # read by transformers 4.x


def text_entities(
    text: str,
    windows: Sequence[Mapping[str, Any]],
    *,
    tokenizer: Any,
    id2label: Mapping[int, str],
    strategy: str = DEFAULT_STRATEGY,
) -> list[dict[str, Any]]:
    """The entities of ``text`` from its windows, as the token-classification pipeline builds them.

    Args:
        windows: One mapping per window of the text, as a fast tokenizer gives them with
            ``return_offsets_mapping=True, return_special_tokens_mask=True`` (no padding):
            ``input_ids``, ``offset_mapping``, ``special_tokens_mask``, and ``logits``, the model's
            ``(tokens, labels)`` scores for the window.
        strategy: One of `STRATEGIES`.
    """
    outputs = [
        {
            "sentence": text,
            "logits": torch.as_tensor(np.asarray(window["logits"], dtype=np.float32))[None],
            "input_ids": torch.as_tensor(window["input_ids"])[None],
            "offset_mapping": torch.as_tensor(window["offset_mapping"])[None],
            "special_tokens_mask": torch.as_tensor(window["special_tokens_mask"])[None],
        }
        for window in windows
    ]
    found = _Postprocessor(tokenizer, id2label).postprocess(
        outputs, aggregation_strategy=AggregationStrategy(check_strategy(strategy))
    )
    return [{k: (float(v) if k == "score" else v) for k, v in entity.items() if k != "index"} for entity in found]

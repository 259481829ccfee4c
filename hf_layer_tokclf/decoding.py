"""From a token classifier's scores to labels and entities: the one path that predict, evaluate, the sweep,
the Hub check, training's dev scores and ONNX serving all take.

- `word_labels`: for pre-tokenized words, one row of label scores per word (its first subword,
  windows merged by `features.word_rows`) gives one label per word: by default the best valid
  sequence under the labels' scheme (constrained Viterbi, with the model's CRF where it has one:
  `pipeline_layer_tokclf.LinearChainCRF`), or each row's arg-max (``decoding="argmax"``).
- `text_entities`: for raw text, the windows' token logits give entities through the pipeline's own
  postprocessing (transformers' ``gather_pre_entities``, ``aggregate_words`` and
  ``aggregate_overlapping_entities``, with our decoding: `LayerTokenClassificationPipeline`), so
  ``predict`` finds exactly what ``pipeline("token-classification")`` finds for a saved model with
  the same ``aggregation_strategy``, ``stride`` and ``decoding``. Only the form differs: scores are
  Python floats, and ``index`` is not reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from transformers.pipelines.token_classification import AggregationStrategy

from .defaults import DEFAULT_DECODING, DEFAULT_STRATEGY, STRATEGIES
from .features import length_sorted_batches
from .pipeline_layer_tokclf import (
    DECODINGS,
    LayerTokenClassificationPipeline,
    LinearChainCRF,
    check_decoding,
    label_decoder,
    label_groups,
    pack_positions,
)

__all__ = [
    "DECODINGS",
    "DEFAULT_DECODING",
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "check_decoding",
    "check_strategy",
    "label_decoder",
    "text_entities",
    "token_predictions",
    "word_labels",
]

_DECODE_BATCH = 256  # sentences decoded together


def check_strategy(strategy: Any) -> str:
    """``strategy`` in lower case, or a ``ValueError`` naming the known ones."""
    value = str(strategy).lower()
    if value not in STRATEGIES:
        raise ValueError(f"aggregation_strategy={strategy!r} is unknown; expected one of {STRATEGIES}.")
    return value


def word_labels(
    word_scores: Sequence[Sequence[Any]],
    id2label: Mapping[int, str],
    *,
    decoding: str = DEFAULT_DECODING,
    decoder: LinearChainCRF | None = None,
    min_score: float | None = None,
) -> list[list[str]]:
    """One label per word of every sentence, from each word's row of scores (logits, or log-probabilities).

    ``decoding="viterbi"``: the best sequence the labels' scheme allows, under ``decoder`` (default:
    the scheme's constraints alone; pass `label_decoder` of a CRF model); ``"argmax"``: each row's
    best label. ``min_score``: entities whose probability (`LinearChainCRF.group_probabilities`)
    is below it become ``O``.
    """
    decoder = decoder if decoder is not None else LinearChainCRF(id2label, learned=False)
    rows = [torch.as_tensor(np.asarray(r, dtype=np.float32)).reshape(len(r), len(id2label)) for r in word_scores]
    argmax = check_decoding(decoding) == "argmax"
    paths = [r.argmax(-1).tolist() for r in rows] if argmax else _viterbi(decoder, rows)
    labels = [[id2label[i] for i in path] for path in paths]
    if min_score is not None:
        labels = [
            _drop_unlikely(decoder, r, p, sentence, min_score)
            for r, p, sentence in zip(rows, paths, labels, strict=True)
        ]
    return labels


def _viterbi(decoder: LinearChainCRF, rows: list[torch.Tensor]) -> list[list[int]]:
    """`LinearChainCRF.decode` over sentences of similar length at a time (little padding)."""
    paths: list[list[int]] = [[] for _ in rows]
    device = decoder.transitions.device
    for batch in length_sorted_batches([len(r) for r in rows], _DECODE_BATCH):
        batch = [i for i in batch if len(rows[i])]
        if not batch:
            continue
        padded = torch.nn.utils.rnn.pad_sequence([rows[i] for i in batch], batch_first=True).to(device)
        mask = (
            torch.arange(padded.shape[1], device=device)[None]
            < torch.tensor([len(rows[i]) for i in batch], device=device)[:, None]
        )
        for i, path in zip(batch, decoder.decode(padded.log_softmax(-1), mask), strict=True):
            paths[i] = path
    return paths


def _drop_unlikely(
    decoder: LinearChainCRF, rows: torch.Tensor, path: list[int], labels: list[str], min_score: float
) -> list[str]:
    groups = label_groups(labels)
    kept = list(labels)
    for (start, end), probability in zip(groups, decoder.group_probabilities(rows, path, groups), strict=True):
        if probability < min_score:
            kept[start:end] = ["O"] * (end - start)
    return kept


def token_predictions(logits: torch.Tensor, labels: torch.Tensor, decoder: LinearChainCRF) -> torch.Tensor:
    """Label ids per token of a batch, the labeled positions (``labels != -100``: words) decoded together.

    For the Trainer's ``preprocess_logits_for_metrics``: one id per token, as ``logits.argmax(-1)``
    would keep, but along the best valid path of each window's words.
    """
    predicted = logits.argmax(-1)
    order, mask = pack_positions(labels != -100)
    if not mask.any():
        return predicted
    words = logits.float().gather(1, order[..., None].expand(-1, -1, logits.shape[-1])).log_softmax(-1)
    rows = mask[:, 0]
    paths = decoder.decode(words[rows].to(decoder.transitions.device), mask[rows].to(decoder.transitions.device))
    for row, path in zip(rows.nonzero().flatten().tolist(), paths, strict=True):
        predicted[row, order[row, : len(path)]] = torch.as_tensor(path, device=predicted.device)
    return predicted


class _Postprocessor(LayerTokenClassificationPipeline):
    """The pipeline's postprocessing alone: what it reads of the pipeline is the tokenizer, ``id2label`` and the CRF."""

    def __init__(self, tokenizer: Any, id2label: Mapping[int, str], crf: LinearChainCRF | None) -> None:
        # No Pipeline.__init__: there is no model to run.
        self.tokenizer = tokenizer
        self.model = SimpleNamespace(config=SimpleNamespace(id2label=id2label), crf=crf)
        self.framework = "pt"  # read by transformers 4.x


def text_entities(
    text: str,
    windows: Sequence[Mapping[str, Any]],
    *,
    tokenizer: Any,
    id2label: Mapping[int, str],
    strategy: str = DEFAULT_STRATEGY,
    decoding: str = DEFAULT_DECODING,
    crf: LinearChainCRF | None = None,
    min_score: float | None = None,
) -> list[dict[str, Any]]:
    """The entities of ``text`` from its windows, as the token-classification pipeline builds them.

    Args:
        windows: One mapping per window of the text, as a fast tokenizer gives them with
            ``return_offsets_mapping=True, return_special_tokens_mask=True`` (no padding):
            ``input_ids``, ``offset_mapping``, ``special_tokens_mask``, and ``logits``, the model's
            ``(tokens, labels)`` scores for the window.
        strategy: One of `STRATEGIES`.
        decoding: One of `DECODINGS`; ``crf`` the model's CRF if it has one.
        min_score: Entities with a lower ``score`` are left out.
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
    found = _Postprocessor(tokenizer, id2label, crf).postprocess(
        outputs, aggregation_strategy=AggregationStrategy(check_strategy(strategy)), decoding=check_decoding(decoding)
    )
    entities = [{k: (float(v) if k == "score" else v) for k, v in entity.items() if k != "index"} for entity in found]
    return [entity for entity in entities if min_score is None or entity["score"] >= min_score]

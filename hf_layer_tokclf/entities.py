"""Entities from token scores, as transformers' ``token-classification`` pipeline builds them.

`inference.predict_texts` runs the model itself (length-sorted batches, many documents at a
time) and turns each window's token probabilities into entities here. The rules are those of
``TokenClassificationPipeline.postprocess`` (transformers 4.46 to 5.x), step for step:

- special tokens are skipped; a token is a *subword* when its text differs in length from the
  slice of the input its offsets cover (WordPiece ``##`` pieces); an unknown token takes the
  input's text and starts a word;
- ``none`` / ``simple``: each token's label is its argmax; ``first`` / ``max`` / ``average``:
  tokens are grouped into words first, and a word's label comes from its first subword, its most
  confident subword, or the mean of its subwords' scores;
- adjacent tokens or words of the same type are grouped unless the later one is ``B-``; a group's
  ``score`` is the mean of its members' scores and its ``word`` the tokenizer's decoding of them;
- groups (or tokens) labeled ``O`` are dropped; for a text cut into overlapping windows, of two
  overlapping entities the longer one is kept (the more confident one at equal length).

Only the output differs in form: scores are Python floats, and ``index`` is not reported.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "feature_entities", "merge_overlapping"]

STRATEGIES = ("none", "simple", "first", "average", "max")
# Everywhere a strategy is not given: a word's label from its first subword, as training labels words.
DEFAULT_STRATEGY = "first"


def _tag(label: str) -> tuple[str, str]:
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label  # not in B-/I- form: a continuation


def _word_aware(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "_tokenizer", None)
    return bool(backend and getattr(backend.model, "continuing_subword_prefix", None))


def feature_entities(
    text: str,
    input_ids: Sequence[int],
    offsets: Sequence[Sequence[int]],
    special_tokens_mask: Sequence[int],
    scores: np.ndarray,
    *,
    tokenizer: Any,
    id2label: Mapping[int, str],
    strategy: str,
    ignore_labels: Collection[str] = ("O",),
) -> list[dict[str, Any]]:
    """The entities of one window of ``text``.

    Args:
        text: The whole input text (offsets index into it).
        input_ids, offsets, special_tokens_mask: The window's tokens, as a fast tokenizer gives them
            with ``return_offsets_mapping=True, return_special_tokens_mask=True`` (no padding).
        scores: ``(tokens, labels)`` float32 probabilities (softmax of the logits).
        strategy: One of `STRATEGIES`.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"aggregation_strategy={strategy!r} is unknown; expected one of {STRATEGIES}.")
    tokens = tokenizer.convert_ids_to_tokens(list(input_ids))
    word_aware = _word_aware(tokenizer)
    unk = tokenizer.unk_token_id
    best = scores.argmax(axis=-1)
    # One entry per non-special token: (token text, index, start, end, is_subword).
    pre = []
    for index, token_id in enumerate(input_ids):
        if special_tokens_mask[index]:
            continue
        start, end = int(offsets[index][0]), int(offsets[index][1])
        word = tokens[index]
        ref = text[start:end]
        # WordPiece: a "##" piece is longer than its text; otherwise the pipeline's fallback heuristic.
        fallback = start > 0 and " " not in text[start - 1 : start + 1]
        is_subword = len(word) != len(ref) if word_aware else fallback
        if token_id == unk:
            word, is_subword = ref, False
        pre.append((word, index, start, end, is_subword))

    decode = tokenizer.convert_tokens_to_string
    if strategy in ("none", "simple"):
        # units: (label, score, word, start, end)
        units = [
            (id2label[int(best[i])], scores[i, best[i]], lambda w=word: w, start, end) for word, i, start, end, _ in pre
        ]
        if strategy == "none":
            return [
                {"entity": label, "score": float(score), "word": word(), "start": start, "end": end}
                for label, score, word, start, end in units
                if label not in ignore_labels
            ]
    else:
        groups: list[list[tuple[str, int, int, int, bool]]] = []
        for item in pre:
            if groups and item[4]:
                groups[-1].append(item)
            else:
                groups.append([item])
        units = []
        for group in groups:
            rows = [i for _, i, _, _, _ in group]
            if strategy == "first":
                chosen = scores[rows[0]]
            elif strategy == "max":
                maxima = scores[rows].max(axis=-1)
                chosen = scores[rows[int(maxima.argmax())]]
            else:  # average
                chosen = np.nanmean(scores[rows], axis=0)
            label_id = int(chosen.argmax())
            pieces = [word for word, _, _, _, _ in group]
            units.append((id2label[label_id], chosen[label_id], lambda p=pieces: decode(p), group[0][2], group[-1][3]))

    # Group adjacent units of one type (a B- unit starts a new group); ignored groups are never decoded.
    runs: list[list[tuple[Any, ...]]] = []
    last_tag = None
    for unit in units:
        bi, tag = _tag(unit[0])
        if runs and tag == last_tag and bi != "B":
            runs[-1].append(unit)
        else:
            runs.append([unit])
        last_tag = tag
    entities = []
    for members in runs:
        group = members[0][0].split("-", 1)[-1]
        if group in ignore_labels:
            continue
        entities.append(
            {
                "entity_group": group,
                "score": float(np.mean(np.nanmean([m[1] for m in members]))),
                "word": decode([m[2]() for m in members]),
                "start": members[0][3],
                "end": members[-1][4],
            }
        )
    return entities


def merge_overlapping(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of entities from overlapping windows, keeps the longer one (at equal length the more confident)."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda e: e["start"])
    merged = []
    previous = entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            if length > previous_length or (length == previous_length and entity["score"] > previous["score"]):
                previous = entity
        else:
            merged.append(previous)
            previous = entity
    merged.append(previous)
    return merged

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
- `texts_entities`: the same entities for all texts of a corpus chunk at once, computed on arrays
  (the pipeline's rules, one batched Viterbi over all windows): what a corpus run takes, since the
  pipeline's per-word dictionaries and per-word torch calls cost more than the model's forward.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from transformers.pipelines.token_classification import AggregationStrategy

from ..base.defaults import DEFAULT_DECODING, DEFAULT_STRATEGY, STRATEGIES
from ..model.pipeline_layer_tokclf import (
    DECODINGS,
    LayerTokenClassificationPipeline,
    LinearChainCRF,
    check_decoding,
    label_decoder,
    label_groups,
    pack_positions,
    split_label,
)
from .features import length_sorted_batches

__all__ = [
    "DECODINGS",
    "DEFAULT_DECODING",
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "check_decoding",
    "check_strategy",
    "label_decoder",
    "text_entities",
    "texts_entities",
    "token_predictions",
    "viterbi",
    "word_labels",
]

_DECODE_BATCH = 256  # sentences decoded together
_WINDOW_BATCH = 512  # windows decoded together by texts_entities


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
    """`viterbi` over sentences of similar length at a time (little padding)."""
    paths: list[list[int]] = [[] for _ in rows]
    for batch in length_sorted_batches([len(r) for r in rows], _DECODE_BATCH):
        batch = [i for i in batch if len(rows[i])]
        if not batch:
            continue
        padded = torch.nn.utils.rnn.pad_sequence([rows[i] for i in batch], batch_first=True)
        lengths = np.array([len(rows[i]) for i in batch])
        for i, path in zip(batch, viterbi(decoder, padded.log_softmax(-1).numpy(), lengths), strict=True):
            paths[i] = path
    return paths


def viterbi(decoder: LinearChainCRF, emissions: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    """`LinearChainCRF.decode` on arrays: the same paths (the same float32 sums, the first best label on a tie).

    ``emissions``: ``(batch, positions, labels)``, row ``b`` real over its first ``lengths[b]`` positions.
    Why a second implementation: torch runs each position's few operators on its pool of threads, whose wake-ups
    cost milliseconds on a busy machine, many times the work itself; numpy runs them in the calling thread
    (500 windows of 60 words: about 10 ms here against 160 to 700 ms with 3 labels; 2 to 3 times faster with 33).
    The model's training and the travelling pipeline keep `LinearChainCRF.decode`; a test holds the two equal.
    """
    start, transitions, end = (x.detach().numpy() for x in decoder.scores(torch.device("cpu")))
    emissions = np.asarray(emissions, dtype=np.float32)
    batch, positions, num_labels = emissions.shape
    best = start + emissions[:, 0]
    history = np.empty((positions, batch, num_labels), dtype=np.int64)
    stay = np.arange(num_labels)
    for t in range(1, positions):
        candidates = best[:, :, None] + transitions
        index = candidates.argmax(1)
        real = (t < lengths)[:, None]
        best = np.where(real, np.take_along_axis(candidates, index[:, None], 1)[:, 0] + emissions[:, t], best)
        history[t] = np.where(real, index, stay)  # through padding, a path stays where it is
    label = (best + end).argmax(-1)
    path = np.empty((batch, positions), dtype=np.int64)
    path[:, -1] = label
    rows = np.arange(batch)
    for t in range(positions - 1, 0, -1):
        label = history[t, rows, label]
        path[:, t - 1] = label
    return [row[:n].tolist() for row, n in zip(path, np.asarray(lengths).tolist(), strict=True)]


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


def texts_entities(
    texts: Sequence[str],
    windows_per_text: Sequence[Sequence[Mapping[str, Any]]],
    *,
    tokenizer: Any,
    id2label: Mapping[int, str],
    strategy: str = DEFAULT_STRATEGY,
    decoding: str = DEFAULT_DECODING,
    crf: LinearChainCRF | None = None,
    min_score: float | None = None,
) -> list[list[dict[str, Any]]]:
    """`text_entities` of every text of a chunk at once, on arrays: the same entities, at a fraction of the cost.

    The pipeline's rules, applied to all windows together: its softmax per window, ``gather_pre_entities``'s
    rule for the tokens that continue a word, ``aggregate_word``'s row per word (and
    `LayerTokenClassificationPipeline`'s for decoding), one `viterbi` per batch of windows of similar
    length, ``group_entities``'s groups and their scores, then ``aggregate_overlapping_entities`` for
    the texts of several windows. Words are built for the entities kept only. Arguments as `text_entities`,
    with ``windows_per_text[i]`` the windows of ``texts[i]``.
    """
    aggregation = AggregationStrategy(check_strategy(strategy))
    decoding = check_decoding(decoding)
    if len(texts) != len(windows_per_text):
        raise ValueError(f"{len(texts)} texts but windows for {len(windows_per_text)}.")
    postprocessor = _Postprocessor(tokenizer, id2label, crf)
    owners = [number for number, windows in enumerate(windows_per_text) for _ in windows]
    tokens = _ChunkTokens(texts, [w for windows in windows_per_text for w in windows], owners, tokenizer, aggregation)
    units = tokens.units(aggregation, decoding)
    if decoding == "argmax":
        labels = units.rows.argmax(1)
        scores = units.rows[np.arange(len(labels)), labels]
    else:
        decoder = crf if crf is not None else LinearChainCRF(id2label, learned=False)
        labels, scores, probabilities = _decode_units(units, decoder, aggregation)
    per_text: list[list[dict[str, Any]]] = [[] for _ in texts]
    names = [str(id2label[i]) for i in range(len(id2label))]
    if aggregation == AggregationStrategy.NONE:
        for unit in np.flatnonzero(np.array(names, dtype=object)[labels] != "O"):
            entity = {"entity": names[labels[unit]], "score": float(scores[unit]), "word": units.word(unit)}
            per_text[owners[units.window[unit]]].append({**entity, **units.span(unit, unit + 1)})
    else:
        starts = _group_starts(labels, units.first, names)
        ends = np.append(starts[1:], len(labels))
        groups = np.array([name.split("-", 1)[-1] for name in names], dtype=object)[labels[starts]]
        kept = np.flatnonzero(groups != "O")
        if decoding == "argmax":
            group_scores = _float32_means(scores, starts[kept], ends[kept])
        else:
            group_scores = probabilities(starts[kept], ends[kept])
        for group, score in zip(kept.tolist(), group_scores.tolist(), strict=True):
            start, end = starts[group], ends[group]
            word = tokenizer.convert_tokens_to_string([units.word(unit) for unit in range(start, end)])
            entity = {"entity_group": groups[group], "score": score, "word": word, **units.span(start, end)}
            per_text[owners[units.window[start]]].append(entity)
    return [
        _overlaps_resolved(postprocessor, entities, len(windows), min_score)
        for entities, windows in zip(per_text, windows_per_text, strict=True)
    ]


def _overlaps_resolved(
    postprocessor: _Postprocessor, entities: list[dict[str, Any]], windows: int, min_score: float | None
) -> list[dict[str, Any]]:
    """The pipeline's rule for the entities of overlapping windows (applied where a text has several), then
    ``min_score``."""
    if windows > 1:
        entities = postprocessor.aggregate_overlapping_entities(entities)
    return [entity for entity in entities if min_score is None or entity["score"] >= min_score]


def _group_starts(labels: np.ndarray, first: np.ndarray, names: list[str]) -> np.ndarray:
    """Where each group of units starts: `label_groups`'s rule (the pipeline's ``group_entities`` with our
    ``get_tag``), each window's first unit starting one too."""
    tags = [split_label(name) for name in names]
    opens = np.array([prefix in ("B", "S") for prefix, _ in tags])[labels]
    kinds = np.unique([kind for _, kind in tags], return_inverse=True)[1].reshape(-1)[labels]
    changed = np.ones(len(labels), dtype=bool)
    changed[1:] = kinds[1:] != kinds[:-1]
    return np.flatnonzero(first | opens | changed)


def _float32_means(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``np.nanmean`` of each ``values[start:end]``, as the pipeline takes a group's score: float32, summed in
    order below 8 values (numpy's pairwise sum does so), with ``np.nanmean`` itself for longer groups."""
    lengths = ends - starts
    means = _sums_in_order(values, starts, lengths, 8) / lengths.astype(np.float32)
    for group in np.flatnonzero(lengths >= 8):
        means[group] = np.nanmean(values[starts[group] : ends[group]].astype(np.float32))
    return means


def _sums_in_order(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, most: int | None = None) -> np.ndarray:
    """Each group's float32 sum of ``values[start:start + length]`` (rows, or single values), added one after the
    other as a loop would, over its first ``most`` values at most (all by default): the groups together."""
    sums = values[starts].astype(np.float32)  # a copy
    longest = int(lengths.max(initial=1))
    for offset in range(1, longest if most is None else min(longest, most)):
        more = lengths > offset
        sums[more] = sums[more] + values[starts[more] + offset]
    return sums


_WORD_STRATEGIES = (AggregationStrategy.FIRST, AggregationStrategy.AVERAGE, AggregationStrategy.MAX)


class _ChunkTokens:
    """The tokens of all windows of a chunk that the pipeline keeps (not special), as arrays in window order."""

    def __init__(
        self,
        texts: Sequence[str],
        windows: Sequence[Mapping[str, Any]],
        owners: list[int],
        tokenizer: Any,
        aggregation: AggregationStrategy,
    ) -> None:
        self.texts, self.tokenizer, self.owners = texts, tokenizer, owners
        probs, ids, offsets, window_of = [], [], [], []
        for number, window in enumerate(windows):
            logits = np.asarray(window["logits"], dtype=np.float32)
            # The pipeline's softmax, one window at a time: the very same float32 numbers.
            shifted_exp = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
            keep = ~np.asarray(window["special_tokens_mask"], dtype=bool)
            probs.append((shifted_exp / shifted_exp.sum(axis=-1, keepdims=True))[keep])
            ids.append(np.asarray(window["input_ids"], dtype=np.int64)[keep])
            offsets.append(np.asarray(window["offset_mapping"], dtype=np.int64).reshape(-1, 2)[keep])
            window_of.append(np.full(int(keep.sum()), number))
        self.probs = np.concatenate(probs) if probs else np.zeros((0, 0), dtype=np.float32)
        self.ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        self.offsets = np.concatenate(offsets) if offsets else np.zeros((0, 2), dtype=np.int64)
        self.window = np.concatenate(window_of) if window_of else np.zeros(0, dtype=np.int64)
        self.first = np.ones(len(self.ids), dtype=bool)  # the first kept token of its window
        self.first[1:] = self.window[1:] != self.window[:-1]
        unique, self.string_of = np.unique(self.ids, return_inverse=True)
        self.strings = tokenizer.convert_ids_to_tokens(unique.tolist())
        self.unk = self.ids == tokenizer.unk_token_id
        self.is_subword = self._subwords(aggregation) & ~self.unk

    def _subwords(self, aggregation: AggregationStrategy) -> np.ndarray:
        """``gather_pre_entities``'s ``is_subword`` (transformers 4.57 and 5.x alike) of every token."""
        starts, ends = self.offsets[:, 0], self.offsets[:, 1]
        backend = getattr(self.tokenizer, "_tokenizer", None)
        if backend and getattr(backend.model, "continuing_subword_prefix", None):
            # A word-aware tokenizer: a token continues a word when its text is not the token (say ``##ing``).
            lengths = np.array([len(string) for string in self.strings], dtype=np.int64).reshape(-1)
            return lengths[self.string_of] != ends - starts
        if aggregation in _WORD_STRATEGIES:
            warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning, stacklevel=3)
        # The pipeline's fallback: a token continues a word when no space is just before it or at its start.
        subword = np.zeros(len(starts), dtype=bool)
        texts = np.asarray(self.owners, dtype=np.int64)[self.window]
        for number in np.unique(texts):
            text = self.texts[number]
            spaces = np.append(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == ord(" "), False)
            mine = np.flatnonzero(texts == number)
            at = starts[mine]
            subword[mine] = (at > 0) & ~spaces[at - 1] & ~spaces[at]
        return subword

    def string(self, token: int) -> str:
        """The token's text as the pipeline gives it: the vocabulary's token, or the text itself for an unknown one."""
        if self.unk[token]:
            start, end = self.offsets[token]
            return self.texts[self.owners[self.window[token]]][start:end]
        return self.strings[self.string_of[token]]

    def units(self, aggregation: AggregationStrategy, decoding: str) -> _Units:
        """The units the strategy labels: tokens (``none``, ``simple``) or words, with the row of each."""
        count = len(self.ids)
        if aggregation not in _WORD_STRATEGIES:
            return _Units(self, self.probs, np.arange(count), np.arange(1, count + 1))
        starts = np.flatnonzero(self.first | ~self.is_subword)
        ends = np.append(starts[1:], count)
        if aggregation == AggregationStrategy.FIRST:
            rows = self.probs[starts]
        elif aggregation == AggregationStrategy.MAX:
            # The first subword holding the word's highest score.
            peaks = self.probs.max(1)
            word_of = np.cumsum(self.first | ~self.is_subword) - 1
            candidates = np.where(peaks == np.maximum.reduceat(peaks, starts)[word_of], np.arange(count), count)
            rows = self.probs[np.minimum.reduceat(candidates, starts)]
        else:
            rows = _average_rows(self.probs, starts, ends, decoding)
        return _Units(self, rows, starts, ends)


def _average_rows(probs: np.ndarray, starts: np.ndarray, ends: np.ndarray, decoding: str) -> np.ndarray:
    """Each word's mean row of its subwords, with the arithmetic of the code it stands for: numpy's
    ``nanmean(axis=0)`` (row after row, in float32) for the stock pipeline's ``argmax``, torch's ``mean(0)``
    (`LayerTokenClassificationPipeline.aggregate_word`) for decoding, the words of each length at once."""
    lengths = ends - starts
    if decoding == "argmax":
        return _sums_in_order(probs, starts, lengths) / lengths[:, None].astype(np.float32)
    rows = np.empty((len(starts), probs.shape[1]), dtype=np.float32)
    for length in np.unique(lengths):
        same = lengths == length
        stacked = probs[starts[same][:, None] + np.arange(length)]
        rows[same] = torch.from_numpy(stacked).mean(1).numpy()
    return rows


class _Units:
    """The units of a chunk the labels go to: tokens ``[first, end)`` of `_ChunkTokens` and their rows."""

    def __init__(self, tokens: _ChunkTokens, rows: np.ndarray, first: np.ndarray, end: np.ndarray) -> None:
        self.tokens, self.rows, self.first_token, self.end_token = tokens, rows, first, end
        self.window = tokens.window[first]
        self.first = tokens.first[first]  # the first unit of its window

    def word(self, unit: int) -> str:
        """The unit's ``word``: its token's, or its tokens' text joined by the tokenizer (``aggregate_word``)."""
        first, end = self.first_token[unit], self.end_token[unit]
        if end - first == 1 and self.rows is self.tokens.probs:
            return self.tokens.string(first)
        return self.tokens.tokenizer.convert_tokens_to_string([self.tokens.string(t) for t in range(first, end)])

    def span(self, first: int, end: int) -> dict[str, int]:
        """``start`` and ``end`` in the text of the units ``[first, end)``."""
        offsets = self.tokens.offsets
        return {"start": int(offsets[self.first_token[first], 0]), "end": int(offsets[self.end_token[end - 1] - 1, 1])}


def _decode_units(
    units: _Units, decoder: LinearChainCRF, aggregation: AggregationStrategy
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Viterbi over every window's units, windows of similar length decoded together.

    Returns each unit's label and score (its probability, as `LayerTokenClassificationPipeline.aggregate`
    gives a token), and a function from groups ``(starts, ends)`` to their probabilities
    (`LinearChainCRF.group_probabilities`, on all groups at once).
    """
    log_probs = torch.from_numpy(units.rows).float().clamp_min(1e-30).log()
    normalized = log_probs.log_softmax(-1)  # what group_probabilities reads
    starts = np.flatnonzero(units.first)
    lengths = np.diff(np.append(starts, len(units.rows)))
    labels = np.zeros(len(units.rows), dtype=np.int64)
    marginals = decoder.learned and aggregation != AggregationStrategy.NONE
    alphas, betas = torch.zeros_like(normalized), torch.zeros_like(normalized)
    log_z = torch.zeros(len(units.rows))  # per unit: its window's
    for batch in length_sorted_batches(lengths.tolist(), _WINDOW_BATCH):
        positions = np.concatenate([np.arange(starts[i], starts[i] + lengths[i]) for i in batch])
        mask = torch.arange(int(lengths[batch].max()))[None] < torch.as_tensor(lengths[batch])[:, None]
        padded = torch.zeros(*mask.shape, log_probs.shape[1])
        padded[mask] = log_probs[positions]
        paths = viterbi(decoder, padded.numpy(), lengths[batch])
        labels[positions] = np.concatenate([np.asarray(path, dtype=np.int64) for path in paths])
        if marginals:
            padded[mask] = normalized[positions]
            device = decoder.transitions.device
            a, b, z = (x.cpu() for x in decoder.forward_backward(padded.to(device), mask.to(device)))
            alphas[positions], betas[positions] = a[mask], b[mask]
            log_z[positions] = z[:, None].expand(mask.shape)[mask]
    units_at = torch.arange(len(labels))
    tags = torch.from_numpy(labels)
    scores = log_probs[units_at, tags].exp().numpy()
    picked = normalized[units_at, tags]

    def probabilities(first: np.ndarray, end: np.ndarray) -> np.ndarray:
        if not decoder.learned:  # the product of the units' probabilities along the path
            return _group_sums(picked, first, end).exp().numpy()
        transitions = decoder.scores(torch.device("cpu"))[1].detach()
        steps = torch.cat([picked.new_zeros(1), transitions[tags[:-1], tags[1:]] + picked[1:]])
        inside = _group_sums(steps, first + 1, end) - picked[end - 1]
        total = alphas[first, tags[first]] + inside + betas[end - 1, tags[end - 1]] - log_z[first]
        return total.exp().clamp(max=1.0).numpy()

    return labels, scores, probabilities


def _group_sums(values: torch.Tensor, first: np.ndarray, end: np.ndarray) -> torch.Tensor:
    """``values[first:end].sum()`` of every group, the groups of each length summed at once (torch's sum of each
    slice, to the bit)."""
    sums = torch.zeros(len(first))
    lengths = end - first
    for length in np.unique(lengths[lengths > 0]):
        same = lengths == length
        sums[torch.from_numpy(same)] = values[torch.from_numpy(first[same][:, None] + np.arange(length))].sum(1)
    return sums

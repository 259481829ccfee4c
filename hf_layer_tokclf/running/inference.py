"""Prediction and evaluation: one label per word, windows merged, every gold token scored."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from ..base.code_consent import RemoteCodeError, check_consent, may_run_code
from ..base.files import METRICS, atomic_writer
from ..base.locations import CHECKPOINT_GLOB, check_model_location
from ..base.stages import stage
from ..formats.conll import check_conll_columns
from ..formats.labels import check_known_labels, from_iob2
from ..formats.sentence import Sentence
from .decoding import (
    DEFAULT_DECODING,
    DEFAULT_STRATEGY,
    check_decoding,
    check_strategy,
    label_decoder,
    texts_entities,
    word_labels,
)
from .features import check_stride, encode, model_inputs, pad_windows, token_budget_batches, word_rows
from .metrics import entity_scores
from .prefetch import prefetch
from .serving import OnnxTokenClassifier, is_onnx_dir

T = TypeVar("T")


def load_model(
    model_dir: str | Path,
    *,
    device: str | None = None,
    dtype: str = "auto",
    trust_remote_code: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Loads a token classifier and its tokenizer from a trained output directory or a Hub id.

    A serving folder written by `export.export_onnx` gives a `serving.OnnxTokenClassifier` (CPU).
    ``device``: ``None`` or ``"cpu"`` runs on the CPU; ``"cuda"`` on the GPU with sdpa attention;
    ``"auto"`` on the GPU when there is one. ``dtype``: see `pick_dtype` (``"auto"``: float32 on
    the CPU, bfloat16 or float16 on a GPU).

    Models of this package (and transformers' own) load with the installed classes, and their folder's
    code never runs; code shipped for a class nobody installed runs only with the caller's consent,
    as `code_consent.may_run_code` decides (``trust_remote_code=True``, or ``None`` and the
    ``HF_LAYER_TOKCLF_TRUST_REMOTE_CODE`` environment variable): without it a `RemoteCodeError` says
    so, and nothing from the folder is executed.
    """
    from transformers import AutoModelForTokenClassification

    from ..model.auto import register_auto_classes
    from ..model.tokenization import load_tokenizer

    register_auto_classes()  # this package's model types load with the installed classes
    path = Path(model_dir)
    if is_onnx_dir(path):
        return OnnxTokenClassifier.load(path, trust_remote_code=trust_remote_code)
    target = pick_device(device)
    kwargs = {"dtype": pick_dtype(target, dtype), **kwargs}
    if target.type == "cuda":
        kwargs.setdefault("attn_implementation", "sdpa")
    # A mistyped folder is said as one, not as the Hub error transformers would give for it.
    location = {key: kwargs[key] for key in ("revision", "token", "cache_dir") if key in kwargs}
    check_model_location(model_dir, **location)
    if path.exists():
        check_consent(path, trust_remote_code)
    # An explicit bool (never None): transformers would otherwise ask on a terminal, and a yes runs the code.
    trusted = may_run_code(model_dir, trust_remote_code)
    try:
        model = AutoModelForTokenClassification.from_pretrained(str(model_dir), trust_remote_code=trusted, **kwargs)
        tokenizer = load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
    except Exception as error:
        if isinstance(error, ValueError) and not trusted and "trust_remote_code" in str(error):
            raise RemoteCodeError(model_dir) from None
        unfinished = _unfinished(path, error)
        if unfinished is not None:
            raise unfinished from error
        raise
    return model.to(target).eval(), tokenizer


def _unfinished(path: Path, error: Exception) -> ValueError | None:
    """The error for a folder a killed run left with checkpoints and an incomplete final model, or None."""
    checkpoints = sorted(p.name for p in path.glob(CHECKPOINT_GLOB)) if path.is_dir() else []
    if not checkpoints or (path / METRICS).exists():
        return None
    reason = " ".join(str(error).split())[:200]
    return ValueError(
        f"{path}: the model here is incomplete ({type(error).__name__}: {reason}). It holds checkpoints "
        f"({', '.join(checkpoints)}) and no metrics.json: training did not finish; run it again with --resume."
    )


def pick_device(device: str | None = None) -> torch.device:
    """``"auto"``: the GPU when there is one, else the CPU; ``None``: the CPU; else that device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device or "cpu")


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_dtype(device: torch.device, dtype: str = "auto", *, bf16_supported: bool | None = None) -> torch.dtype:
    """The precision a model runs in on ``device``.

    ``"auto"``: float32 on the CPU; on a GPU bfloat16 where it runs natively (Ampere and newer),
    else float16 (T4, V100: bfloat16 there is emulated and slow, or unsupported). Any other value
    is taken as asked: ``"float32"``, ``"float16"``, ``"bfloat16"``. ``bf16_supported`` overrides
    the probe of the GPU (`torch.cuda.is_bf16_supported`, without emulation).
    """
    if dtype != "auto":
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is unknown; expected auto or one of {', '.join(DTYPES)}.")
        return DTYPES[dtype]
    if device.type != "cuda":
        return torch.float32
    if bf16_supported is None:
        try:
            bf16_supported = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # a torch without the argument never counted emulation
            bf16_supported = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if bf16_supported else torch.float16


def model_device(model: Any) -> torch.device:
    """Where a model's inputs go: its ``device`` (PyTorch models, `OnnxTokenClassifier`)."""
    device = getattr(model, "device", None)
    return device if device is not None else next(model.parameters()).device


def default_max_length(model: Any, tokenizer: Any) -> int:
    """The longest input the model takes: its position embeddings, capped by the tokenizer's limit."""
    limit = getattr(model.config, "max_position_embeddings", 512)
    return min(limit, tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else limit)


def check_max_length(max_length: int | None, limit: int | None, model_name: Any = "the model") -> None:
    """A ``ValueError`` naming --max-length when it is longer than the model's position embeddings."""
    if max_length is not None and limit is not None and max_length > limit:
        raise ValueError(
            f"--max-length {max_length} is longer than {model_name} can read (max_position_embeddings={limit}); "
            f"give {limit} or less: longer inputs are cut into overlapping windows."
        )


@torch.inference_mode()
def window_logits(
    model: Any,
    tokenizer: Any,
    windows: Sequence[Mapping[str, Any]],
    batch_size: int = 32,
    progress: bool = False,
    *,
    max_batch_tokens: int | None = None,
) -> list[np.ndarray]:
    """Float32 logits ``(tokens, labels)`` of every window, in input order; the model runs on length-sorted batches.

    ``batch_size`` windows a batch, or with ``max_batch_tokens`` as many as fit that many padded tokens
    (`features.token_budget_batches`: more short windows than long ones). ``windows`` hold model inputs
    (``input_ids``, and ``token_type_ids`` where the tokenizer makes them); other keys stay out
    (`features.model_inputs`). `features.pad_windows` pads each batch and masks the padding: counted as stage
    ``tokenize``; the model's call and its logits' way to NumPy as ``forward`` (`stages`).
    """
    device = model_device(model)
    out: list[Any] = [None] * len(windows)
    # No bar at all unless asked: predict_texts counts documents with a bar of its own.
    bar = tqdm(total=len(windows), desc="Predicting", unit="window") if progress and len(windows) > 1 else None
    lengths = [len(w["input_ids"]) for w in windows]
    for indices in token_budget_batches(lengths, batch_size, max_batch_tokens):
        with stage("tokenize"):
            batch = pad_windows([model_inputs(windows[i]) for i in indices], tokenizer)
        with stage("forward"):
            inputs = {name: torch.from_numpy(values).to(device) for name, values in batch.items()}
            logits = model(**inputs).logits.float().cpu().numpy()
        for row, i in zip(logits, indices, strict=True):
            out[i] = row[: lengths[i]]
        if bar is not None:
            bar.update(len(indices))
    if bar is not None:
        bar.close()
    return out


def _sentence_options(model: Any, tokenizer: Any, max_length: int | None, decoding: str) -> int:
    """The window length of `predict_sentences` (the model's maximum by default), its options checked first."""
    check_decoding(decoding)
    check_max_length(max_length, getattr(model.config, "max_position_embeddings", None))
    return max_length or default_max_length(model, tokenizer)


def predict_sentences(
    model: Any,
    tokenizer: Any,
    sentences: Sequence[Sentence],
    *,
    batch_size: int = 32,
    max_batch_tokens: int | None = None,
    max_length: int | None = None,
    stride: int | None = None,
    progress: bool = True,
    decoding: str = DEFAULT_DECODING,
    min_score: float | None = None,
) -> list[list[str]]:
    """One predicted label per word of every sentence; long sentences go through overlapping windows.

    ``batch_size`` and ``max_batch_tokens``: see `window_logits`. ``decoding`` and ``min_score``: see
    `decoding.word_labels` (the model's CRF is used where it has one).
    """
    max_length = _sentence_options(model, tokenizer, max_length, decoding)
    with stage("tokenize"):
        features = encode(sentences, tokenizer, max_length=max_length, stride=stride)
    return _sentence_labels(
        model, tokenizer, sentences, features, batch_size, max_batch_tokens, progress, decoding, min_score
    )


def _sentence_labels(
    model: Any,
    tokenizer: Any,
    sentences: Sequence[Sentence],
    features: list[dict[str, Any]],
    batch_size: int,
    max_batch_tokens: int | None,
    progress: bool,
    decoding: str,
    min_score: float | None,
) -> list[list[str]]:
    """The labels of encoded ``sentences``: their windows through the model, one row a word, decoded."""
    logits = window_logits(model, tokenizer, features, batch_size, progress, max_batch_tokens=max_batch_tokens)
    with stage("decode"):
        rows = word_rows(features, logits, [len(s.tokens) for s in sentences])
        return word_labels(
            rows, model.config.id2label, decoding=decoding, decoder=label_decoder(model), min_score=min_score
        )


SENTENCE_CHUNK_SIZE = 4096


def sentence_chunks(
    model: Any,
    tokenizer: Any,
    sentences: Iterable[Sentence],
    *,
    chunk_size: int = SENTENCE_CHUNK_SIZE,
    skip_chunks: int = 0,
    progress: bool = False,
    total: int | None = None,
    batch_size: int = 32,
    max_batch_tokens: int | None = None,
    max_length: int | None = None,
    stride: int | None = None,
    decoding: str = DEFAULT_DECODING,
    min_score: float | None = None,
) -> Iterator[tuple[list[Sentence], list[list[str]]]]:
    """``sentences`` read lazily, ``chunk_size`` at a time: each chunk with its labels (`predict_sentences`), in order.

    The first ``skip_chunks`` chunks are read but not predicted (what a resumed run wrote before). While the
    model runs a chunk, the next is read and tokenized in a background thread (`prefetch.prefetch`). ``progress``
    shows a bar counting sentences (of ``total``, if known); the other options are `predict_sentences`'s.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    max_length = _sentence_options(model, tokenizer, max_length, decoding)
    pending = iter(sentences)
    skipped = sum(len(list(itertools.islice(pending, chunk_size))) for _ in range(skip_chunks))
    chunks = iter(lambda: list(itertools.islice(pending, chunk_size)), [])
    encoded = prefetch(_encoded_sentences(chunks, tokenizer, max_length, stride))
    bar = tqdm(total=total, initial=skipped, desc="Predicting", unit="sentence", disable=None if progress else True)
    try:
        for chunk, features in encoded:
            options = (batch_size, max_batch_tokens, False, decoding, min_score)
            predictions = _sentence_labels(model, tokenizer, chunk, features, *options)
            bar.update(len(chunk))
            yield chunk, predictions
            del chunk, features, predictions  # gone before the next chunk is taken: two chunks in memory at most
    finally:
        encoded.close()
        bar.close()


def _encoded_sentences(
    chunks: Iterable[list[Sentence]], tokenizer: Any, max_length: int, stride: int | None
) -> Iterator[tuple[list[Sentence], list[dict[str, Any]]]]:
    """Each chunk with its windows (`features.encode`), for `prefetch`."""
    for chunk, own in zip(chunks, chunk_tokenizers(tokenizer), strict=False):
        with stage("tokenize"):
            features = encode(chunk, own, max_length=max_length, stride=stride)
        yield chunk, features


def chunk_tokenizers(tokenizer: Any) -> Iterator[Any]:
    """The tokenizer for each chunk `prefetch` makes: ``tokenizer`` for the first (made in the caller's thread),
    one copy of it for every later one (made in `prefetch`'s thread; the copy is taken there, when the second
    chunk is). A fast tokenizer's truncation and padding are settings of its shared Rust object, set by every
    call, so a call in the caller's thread meanwhile (the caller's own code between two chunks) would change them
    under the thread's ("Already borrowed" with tokenizers < 0.23, a window silently left untruncated with 0.23).
    Zip it after the chunks (endless: ``strict=False``), so that a copy is only taken for a chunk there is."""
    yield tokenizer
    own = copy.deepcopy(tokenizer)
    while True:
        yield own


def iter_sentence_predictions(
    model: Any,
    tokenizer: Any,
    sentences: Iterable[Sentence],
    *,
    chunk_size: int = SENTENCE_CHUNK_SIZE,
    progress: bool = False,
    total: int | None = None,
    **kwargs: Any,
) -> Iterator[list[str]]:
    """`predict_sentences` over ``chunk_size`` sentences at a time: labels stream out in input order.

    ``sentences`` is read lazily; ``progress`` shows a bar counting sentences (of ``total``, if known);
    ``kwargs`` go to `predict_sentences` (``batch_size``, ``max_length``, ``stride``, ``decoding``, ``min_score``).
    """
    chunks = sentence_chunks(
        model, tokenizer, sentences, chunk_size=chunk_size, progress=progress, total=total, **kwargs
    )
    for _, predictions in chunks:
        yield from predictions


def evaluate_sentences(
    model: Any, tokenizer: Any, sentences: Sequence[Sentence], **kwargs: Any
) -> tuple[dict[str, Any], list[list[str]]]:
    """Entity-level scores of the model on labeled sentences, every gold token included; a label the model does
    not know is refused first, with its file and line (`labels.check_known_labels`)."""
    check_known_labels(sentences, model.config.label2id, known_as="the model's labels")
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


def conll_lines(
    sentences: Iterable[Sentence], predictions: Iterable[Sequence[str]], *, scheme: str | None = None
) -> Iterator[str]:
    """CoNLL lines: the token, the gold label when there is one, and the predicted label, tab-separated; a blank
    line after each sentence.

    ``scheme`` (`data.SCHEMES`) writes both label columns in that scheme rather than IOB2: the scheme
    the model's training data was written in (`label_scheme`). A token or label that a line cannot hold
    (a tab, a line break, empty: `data.check_conll_columns`) is a `data.DataError` naming its sentence's
    file and line, before any line of that sentence is given.
    """
    for sentence, labels in zip(sentences, predictions, strict=True):
        gold = sentence.labels
        if scheme is not None:
            labels = from_iob2(labels, scheme)
            gold = from_iob2(gold, scheme) if gold is not None else None
        check_conll_columns(replace(sentence, labels=gold), labels)
        for token, gold_label, label in zip(sentence.tokens, gold or [None] * len(labels), labels, strict=True):
            yield "\t".join(x for x in (token, gold_label, label) if x is not None) + "\n"
        yield "\n"


def write_conll(
    path: str | Path, sentences: Iterable[Sentence], predictions: Iterable[Sequence[str]], *, scheme: str | None = None
) -> None:
    """Writes `conll_lines` to ``path``, atomically (nothing is left under ``path`` where a sentence is refused)."""
    with atomic_writer(path) as f:
        f.writelines(conll_lines(sentences, predictions, scheme=scheme))


def label_scheme(model: Any) -> str:
    """The scheme a model's training labels were written in (``config.label_scheme``, saved by `train`);
    IOB2 for models that do not say."""
    return getattr(model.config, "label_scheme", None) or "IOB2"


TEXT_CHUNK_SIZE = 1024


def predict_texts(
    model: Any,
    tokenizer: Any,
    texts: Iterable[str],
    *,
    aggregation_strategy: str = DEFAULT_STRATEGY,
    batch_size: int = 32,
    max_batch_tokens: int | None = None,
    max_length: int | None = None,
    stride: int | None = None,
    chunk_size: int = TEXT_CHUNK_SIZE,
    progress: bool = False,
    total: int | None = None,
    decoding: str = DEFAULT_DECODING,
    min_score: float | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Entities of each raw text, in input order, as ``pipeline("token-classification")`` finds them.

    Built for corpora: ``texts`` is read lazily, ``chunk_size`` documents at a time (memory stays
    flat however many there are, and results stream out as each chunk is done); while the model runs
    a chunk, the next is read and tokenized in a background thread (`prefetch.prefetch`). Within a chunk
    the model runs on windows sorted by length, ``batch_size`` at a time (or, with ``max_batch_tokens``,
    as many as fit that many padded tokens: `window_logits`), so little compute goes
    to padding; a text longer than ``max_length`` subwords (default: the model's maximum) is cut
    into windows overlapping by ``stride`` subwords (default ``max_length // 4``), so nothing is
    dropped. The entities are those the pipeline gives with the same ``aggregation_strategy``
    and ``stride`` (see `entities`): ``{"entity_group", "score", "word", "start", "end"}``
    (``"entity"`` instead of ``"entity_group"`` for ``"none"``), offsets into the text.
    ``decoding="viterbi"`` (default) gives valid label sequences and entity probabilities as scores
    (`pipeline_layer_tokclf.LayerTokenClassificationPipeline`); ``"argmax"`` the stock pipeline's
    entities. Entities scoring below ``min_score`` are left out.

    ``model`` is a PyTorch token classifier (on any device) or an `export.OnnxTokenClassifier`;
    ``tokenizer`` must be fast. ``progress`` shows a bar counting documents (of ``total``, if known) when
    standard error is a terminal.
    """
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size ({batch_size}) and chunk_size ({chunk_size}) must be at least 1.")
    documents = iter(texts)
    chunks = iter(lambda: list(itertools.islice(documents, chunk_size)), [])
    options = dict(aggregation_strategy=aggregation_strategy, batch_size=batch_size, max_length=max_length)
    options.update(max_batch_tokens=max_batch_tokens, stride=stride, decoding=decoding, min_score=min_score)
    bar = tqdm(total=total, desc="Predicting", unit="doc", disable=None if progress else True)
    found = chunk_entities(model, tokenizer, _checked_texts(chunks, chunk_size), **options)
    try:
        for chunk, results in found:
            bar.update(len(chunk))
            yield from results
    finally:
        found.close()
        bar.close()


def _checked_texts(chunks: Iterable[list[Any]], chunk_size: int) -> Iterator[tuple[list[str], list[str]]]:
    """Each chunk of texts as ``(chunk, texts)`` for `chunk_entities`, a text that is not a string refused."""
    for start, chunk in zip(itertools.count(0, chunk_size), chunks):
        for number, text in enumerate(chunk, start=start + 1):
            if not isinstance(text, str):
                raise ValueError(f"document {number} is a {type(text).__name__}, not a string.")
        yield chunk, chunk


def chunk_entities(
    model: Any,
    tokenizer: Any,
    chunks: Iterable[tuple[T, list[str]]],
    *,
    aggregation_strategy: str = DEFAULT_STRATEGY,
    batch_size: int = 32,
    max_batch_tokens: int | None = None,
    max_length: int | None = None,
    stride: int | None = None,
    decoding: str = DEFAULT_DECODING,
    min_score: float | None = None,
) -> Iterator[tuple[T, list[list[dict[str, Any]]]]]:
    """For each ``(key, texts)`` of ``chunks``, in order: ``key`` and the entities of each of its texts.

    The loop `predict_texts` and `chunks.annotated_chunks` share: ``chunks`` is read, and each chunk's texts
    tokenized, in a background thread one chunk ahead of the model (`prefetch.prefetch`), so that reading
    (whatever ``chunks`` does: a file, a parser) and tokenizing overlap the forward pass; an error of ``chunks``
    is raised after the entities of the chunks before it. The options are `predict_texts`'s.
    """
    options = {
        "strategy": check_strategy(aggregation_strategy),
        "decoding": check_decoding(decoding),
        "crf": getattr(model, "crf", None),
        "min_score": min_score,
    }
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("predict_texts needs a fast tokenizer (character offsets and windows).")
    if batch_size < 1:
        raise ValueError(f"batch_size ({batch_size}) must be at least 1.")
    if max_batch_tokens is not None and max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens must be at least 1, got {max_batch_tokens}.")
    check_max_length(max_length, getattr(model.config, "max_position_embeddings", None))
    max_length = max_length or default_max_length(model, tokenizer)
    stride = check_stride(stride, max_length, tokenizer)
    encoded = prefetch(_encoded_texts(chunks, tokenizer, max_length, stride))
    try:
        for key, texts, windows in encoded:
            yield key, _chunk_entities(model, tokenizer, texts, windows, batch_size, max_batch_tokens, options)
    finally:
        encoded.close()


def _encoded_texts(
    chunks: Iterable[tuple[T, list[str]]], tokenizer: Any, max_length: int, stride: int
) -> Iterator[tuple[T, list[str], list[dict[str, Any]]]]:
    """Each chunk with the windows of its texts (`text_windows`), for `prefetch`."""
    for (key, texts), own in zip(chunks, chunk_tokenizers(tokenizer), strict=False):
        yield key, texts, text_windows(own, texts, max_length, stride)


def text_windows(tokenizer: Any, texts: list[str], max_length: int, stride: int) -> list[dict[str, Any]]:
    """The windows of ``texts`` as the pipeline cuts them, each a dict of the fast tokenizer's outputs (ids, offsets,
    special-tokens mask, and ``overflow_to_sample_mapping``: the text it belongs to); stage ``tokenize``."""
    if not texts:
        return []
    with stage("tokenize"):
        encoding = tokenizer(
            texts,
            truncation=True,
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        return [{key: encoding[key][i] for key in encoding} for i in range(len(encoding["input_ids"]))]


def _chunk_entities(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    windows: list[dict[str, Any]],
    batch_size: int,
    max_batch_tokens: int | None,
    options: dict[str, Any],
) -> list[list[dict[str, Any]]]:
    """The entities of each text: its windows (`text_windows`) through the model, then `decoding.texts_entities`."""
    found = window_logits(model, tokenizer, windows, batch_size, max_batch_tokens=max_batch_tokens)
    for window, logits in zip(windows, found, strict=True):
        window["logits"] = logits
    per_text: list[list[dict[str, Any]]] = [[] for _ in texts]
    for window in windows:
        per_text[window["overflow_to_sample_mapping"]].append(window)
    with stage("decode"):
        return texts_entities(texts, per_text, tokenizer=tokenizer, id2label=model.config.id2label, **options)


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Writes one JSON object per line, atomically; returns the number written."""
    count = 0
    with atomic_writer(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count

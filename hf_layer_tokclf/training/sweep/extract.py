"""The one encoder pass of a sweep: every word's vector at every swept layer, kept in memory or in
memory-mapped files (`cache_folder`), and the training words' mean and spread per layer and dimension."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ...formats.sentence import Sentence
from ...running.features import encode, length_sorted_batches, merge_windows, model_inputs

CACHES = ("memory", "disk")
CACHE_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass
class EncodedSplit:
    """One split's windows (`features.encode`) and the number of words of each of its sentences."""

    features: list[dict[str, Any]]
    lengths: list[int]

    @property
    def num_words(self) -> int:
        return sum(self.lengths)

    @property
    def mean_window_tokens(self) -> float:
        return sum(len(f["input_ids"]) for f in self.features) / max(len(self.features), 1)


def encode_split(sentences: Sequence[Sentence], tokenizer: Any, max_length: int, stride: int | None) -> EncodedSplit:
    """The windows of ``sentences`` and their word counts."""
    features = encode(sentences, tokenizer, max_length=max_length, stride=stride)
    return EncodedSplit(features, [len(s.tokens) for s in sentences])


@dataclass
class FeatureStores:
    """Every word's vectors, layer-major ``[layers, words, H]``, and the training words' ``[layers, H]`` moments.

    ``train`` is in the cache dtype; ``dev`` is always float32, so dev scores match the exported probes.
    """

    train: torch.Tensor
    dev: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


@contextlib.contextmanager
def cache_folder(cache: str, cache_dir: str | Path | None = None) -> Iterator[Path | None]:
    """Where the stores go: `None` (memory), or for ``cache="disk"`` a temporary folder, under ``cache_dir``
    if given, deleted when the block ends."""
    with tempfile.TemporaryDirectory(prefix="hf-layer-tokclf-sweep-", dir=cache_dir) as tmp:
        yield Path(tmp) if cache == "disk" else None


def extract_features(
    encoder: Any,
    tokenizer: Any,
    train: EncodedSplit,
    dev: EncodedSplit,
    layers: Sequence[int],
    *,
    batch_size: int,
    cache_dtype: str,
    folder: Path | None,
    progress: bool,
) -> FeatureStores:
    """Runs the encoder once over the training and the dev windows (``batch_size`` windows a forward) and
    keeps every word's vectors at ``layers``, in memory or, with a ``folder``, in ``.npy`` memory maps there."""
    shape = (len(layers), encoder.config.hidden_size)
    train_store = _allocate((len(layers), train.num_words, shape[1]), CACHE_DTYPES[cache_dtype], folder, "train")
    dev_store = _allocate((len(layers), dev.num_words, shape[1]), torch.float32, folder, "dev")
    moments = [torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)]
    _extract(encoder, tokenizer, train, layers, train_store, batch_size, "Extracting train features", progress, moments)
    _extract(encoder, tokenizer, dev, layers, dev_store, batch_size, "Extracting dev features", progress)
    mean, std = _mean_std(moments, train.num_words)
    return FeatureStores(train_store, dev_store, mean, std)


def _word_plan(features: Sequence[dict[str, Any]], lengths: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """For every feature: (token positions, word rows) of the words whose vector it provides.

    Word rows number the words of all sentences in order. A word in several windows is taken from
    the window `merge_windows` picks, so the probes see what the exported model predicts from.
    """
    width = max((len(f["word_ids"]) for f in features), default=1)
    codes = [range(n * width, n * width + len(f["word_ids"])) for n, f in enumerate(features)]
    chosen = merge_windows(features, codes, list(lengths))
    plan: list[tuple[list[int], list[int]]] = [([], []) for _ in features]
    row = 0
    for words in chosen:
        for code in words:
            feature, position = divmod(code, width)
            plan[feature][0].append(position)
            plan[feature][1].append(row)
            row += 1
    return plan


def _allocate(shape: tuple[int, ...], dtype: torch.dtype, directory: Path | None, name: str) -> torch.Tensor:
    if directory is None:
        return torch.empty(shape, dtype=dtype)
    import numpy as np

    array = np.lib.format.open_memmap(
        directory / f"{name}.npy", mode="w+", dtype=np.float16 if dtype == torch.float16 else np.float32, shape=shape
    )
    return torch.from_numpy(array)


@torch.inference_mode()
def _extract(
    encoder: Any,
    tokenizer: Any,
    split: EncodedSplit,
    layers: Sequence[int],
    store: torch.Tensor,
    batch_size: int,
    desc: str,
    progress: bool,
    moments: list[torch.Tensor] | None = None,
) -> None:
    """Runs the encoder once per batch and writes every planned word's vectors at ``layers`` into ``store``.

    ``store`` is layer-major, ``[layers, words, H]``: a probe step then gathers a contiguous
    ``[layers, batch, H]`` block for its batched matmul (about a third faster than word-major).
    """
    features, plan = split.features, _word_plan(split.features, split.lengths)
    bar = tqdm(total=len(features), desc=desc, unit="window", disable=not progress)
    for indices in length_sorted_batches([len(f["input_ids"]) for f in features], batch_size):
        rows = [model_inputs(features[i]) for i in indices]
        batch = tokenizer.pad(rows, return_tensors="pt").to(encoder.device)
        hidden_states = encoder(**batch, output_hidden_states=True, return_dict=True).hidden_states
        batch_rows, positions, word_rows = [], [], []
        for b, i in enumerate(indices):
            batch_rows += [b] * len(plan[i][0])
            positions += plan[i][0]
            word_rows += plan[i][1]
        b_index, t_index = torch.tensor(batch_rows), torch.tensor(positions)
        rows_index = torch.tensor(word_rows)
        for column, layer in enumerate(layers):
            vectors = hidden_states[layer][b_index, t_index].float().cpu()  # [n, H], from any device
            store[column].index_copy_(0, rows_index, vectors.to(store.dtype))
            if moments is not None:  # per-batch sums in float32, running totals in float64
                moments[0][column] += vectors.sum(0)
                moments[1][column] += (vectors * vectors).sum(0)
        bar.update(len(indices))
    bar.close()


def _mean_std(moments: Sequence[torch.Tensor], count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (float32) from running sums of x and x² over ``count`` words."""
    mean = (moments[0] / count).float()
    std = (moments[1] / count - (moments[0] / count).square()).clamp_min(0).add(1e-6).sqrt().float()
    return mean, std

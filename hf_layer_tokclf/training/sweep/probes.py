"""The probes of a sweep: one linear probe per layer, all trained at once by batched matmuls on the stored
features (`train_probes`), applied to every word (`word_logits`) and scored on dev (`score_probes`)."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from ...formats.sentence import Sentence
from ...running.decoding import DEFAULT_DECODING, word_labels
from ...running.metrics import entity_scores

# With epochs=None, probes train for at least this many steps (and 3 epochs); about where the
# training loss of MiniLM probes on NCBI-disease stops improving at the default learning rate.
MIN_PROBE_STEPS = 600


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Runs the block on one intra-op thread, then restores the setting.

    Probe steps are small matmuls that a second thread barely speeds up, while on a busy machine
    the threads' synchronisation made them up to 40 times slower (measured on 2 shared cores).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def auto_epochs(num_words: int, batch_size: int, min_steps: int = MIN_PROBE_STEPS) -> int:
    """Epochs for ``epochs=None``: at least 3, and enough for ``min_steps`` optimizer steps (at most 100)."""
    steps_per_epoch = max(1, math.ceil(num_words / batch_size))
    return min(100, max(3, math.ceil(min_steps / steps_per_epoch)))


def word_targets(sentences: Sequence[Sentence], labels: Sequence[str]) -> torch.Tensor:
    """The label id of every word of ``sentences``, in order: what the probes learn."""
    label2id = {label: i for i, label in enumerate(labels)}
    return torch.tensor([label2id[label] for s in sentences for label in s.labels])


class Probes(NamedTuple):
    """One linear probe per layer, acting on raw features (``x @ weight[i] + bias[i]``), and each
    layer's mean training loss over the last epoch."""

    weight: torch.Tensor  # [layers, H, labels]
    bias: torch.Tensor  # [layers, labels]
    losses: list[float]


def train_probes(
    store: torch.Tensor,
    targets: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    num_labels: int,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    progress: bool,
) -> Probes:
    """Trains one linear probe per layer, all in one batched matmul per step.

    The probes are trained on standardized features, ``logits = ((x - mean) / std) @ W + b``, but
    computed in the folded form ``x @ (W / std) + (b - (mean / std) @ W)``: the same function of
    ``W`` and ``b`` (so the same gradients), without a pass over every feature to standardize it.

    Returns the folded weights and biases, which act on raw features, and the mean training loss
    per layer over the last epoch.
    """
    num_layers, count, hidden = store.shape
    weight = torch.zeros(num_layers, hidden, num_labels, requires_grad=True)
    bias = torch.zeros(num_layers, num_labels, requires_grad=True)
    inv_std = std.reciprocal().unsqueeze(-1)  # [layers, H, 1]
    scaled_mean = (mean / std).unsqueeze(1)  # [layers, 1, H]

    def folded() -> tuple[torch.Tensor, torch.Tensor]:
        return weight * inv_std, bias - torch.bmm(scaled_mean, weight).squeeze(1)

    optimizer = torch.optim.AdamW([weight, bias], lr=learning_rate, weight_decay=0.0)
    steps = epochs * math.ceil(count / batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)  # linear decay to 0
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps, desc="Training probes", unit="step", disable=not progress)
    last_epoch_loss = torch.zeros(num_layers, dtype=torch.float64)
    for epoch in range(epochs):
        order = torch.randperm(count, generator=generator)
        last_epoch_loss = _train_epoch(store, targets, order, batch_size, folded, optimizer, scheduler, bar) / count
        bar.set_postfix(epoch=epoch + 1, loss=f"{last_epoch_loss.mean().item():.4f}")
    bar.close()
    with torch.no_grad():
        folded_weight, folded_bias = folded()
    return Probes(folded_weight.detach(), folded_bias.detach(), last_epoch_loss.tolist())


def _train_epoch(
    store: torch.Tensor,
    targets: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
    folded: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    bar: Any,
) -> torch.Tensor:
    """One pass over the words in ``order``, a step per ``batch_size`` words; returns each layer's summed loss."""
    num_layers = store.shape[0]
    epoch_loss = torch.zeros(num_layers, dtype=torch.float64)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size].sort().values  # sorted: friendlier to a disk cache
        x = torch.index_select(store, 1, index).float()  # [layers, batch, H]
        folded_weight, folded_bias = folded()
        logits = torch.baddbmm(folded_bias.unsqueeze(1), x, folded_weight)  # [layers, batch, labels]
        # Every layer's probe against the same word labels; the sum over layers of their mean losses.
        losses = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets[index].repeat(num_layers), reduction="none"
        ).view(num_layers, len(index))
        optimizer.zero_grad(set_to_none=True)
        losses.mean(1).sum().backward()
        optimizer.step()
        scheduler.step()
        epoch_loss += losses.detach().sum(1).double()
        bar.update(1)
    return epoch_loss


@torch.no_grad()
def word_logits(store: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Every layer's probe logits for every word, ``[layers, words, labels]``, from a ``[layers, words, H]`` store."""
    out = [
        torch.baddbmm(bias.unsqueeze(1), store[:, start : start + chunk].float(), weight)
        for start in range(0, store.shape[1], chunk)
    ]
    return torch.cat(out, dim=1) if out else torch.empty(weight.shape[0], 0, weight.shape[2])


def score_probes(
    logits: np.ndarray,
    sentences: Sequence[Sentence],
    labels: Sequence[str],
    layers: Sequence[int],
    decoding: str = DEFAULT_DECODING,
) -> dict[int, dict[str, Any]]:
    """Every layer's seqeval scores on ``sentences`` from its ``[words, labels]`` slice of ``logits``, decoded
    by `decoding.word_labels` as the exported models decode."""
    gold = [s.labels for s in sentences]
    lengths = [len(s.tokens) for s in sentences]
    ends = list(itertools.accumulate(lengths))
    id2label = dict(enumerate(labels))
    scores: dict[int, dict[str, Any]] = {}
    for column, layer in enumerate(layers):
        per_sentence = [logits[column, end - length : end] for end, length in zip(ends, lengths, strict=True)]
        scores[layer] = entity_scores(gold, word_labels(per_sentence, id2label, decoding=decoding))
    return scores

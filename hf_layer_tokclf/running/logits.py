"""The model over windows: where its inputs go, the longest window it reads, its logits of every window (batched by
length, in input order), and the tokenizer each chunk that `prefetch` reads ahead is cut with."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..base.stages import stage
from .features import model_inputs, pad_windows, token_budget_batches


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
    return task_logits(model, tokenizer, windows, [None], batch_size, progress, max_batch_tokens=max_batch_tokens)[0]


@torch.inference_mode()
def task_logits(
    model: Any,
    tokenizer: Any,
    windows: Sequence[Mapping[str, Any]],
    tasks: Sequence[str | None],
    batch_size: int = 32,
    progress: bool = False,
    *,
    max_batch_tokens: int | None = None,
) -> list[list[np.ndarray]]:
    """`window_logits` of each of ``tasks``, from one forward pass per batch: a multi-task model's ``logits`` is a
    dict task -> tensor (its ONNX runner's alike), of which ``tasks`` are kept; ``[None]`` takes a single-task
    model's one tensor. Returns one list of every window's logits per task, in the order of ``tasks``."""
    device = model_device(model)
    out: list[list[Any]] = [[None] * len(windows) for _ in tasks]
    # No bar at all unless asked: predict_texts counts documents with a bar of its own.
    bar = tqdm(total=len(windows), desc="Predicting", unit="window") if progress and len(windows) > 1 else None
    lengths = [len(w["input_ids"]) for w in windows]
    for indices in token_budget_batches(lengths, batch_size, max_batch_tokens):
        with stage("tokenize"):
            batch = pad_windows([model_inputs(windows[i]) for i in indices], tokenizer)
        with stage("forward"):
            inputs = {name: torch.from_numpy(values).to(device) for name, values in batch.items()}
            heads = _head_logits(model(**inputs).logits, tasks)
            for task_out, logits in zip(out, heads, strict=True):
                for row, i in zip(logits.float().cpu().numpy(), indices, strict=True):
                    task_out[i] = row[: lengths[i]]
        if bar is not None:
            bar.update(len(indices))
    if bar is not None:
        bar.close()
    return out


def _head_logits(logits: Any, tasks: Sequence[str | None]) -> list[torch.Tensor]:
    """The logits of each of ``tasks`` in a model's output ``logits`` (a tensor, or a dict task -> tensor)."""
    if isinstance(logits, Mapping):
        if None in tasks:
            raise ValueError(f"the model gives logits per task ({', '.join(logits)}): say which tasks to decode.")
        return [logits[task] for task in tasks]
    if list(tasks) != [None]:
        raise ValueError(f"the model gives one tensor of logits, not one per task ({', '.join(map(str, tasks))}).")
    return [logits]


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

"""Dynamic batching: the requests that arrive together run through the model as one length-sorted batch.

A request is tokenized into predict's windows as it arrives (`texts.text_windows`, in a thread of its own), then
queued. When the model is free, `Batcher` takes what is queued (up to ``max_batch_requests`` requests and
``max_batch_tokens`` tokens), waits at most ``max_wait_ms`` for as many requests as its last batch held, and runs
the windows of all of them at once, through predict's own functions: `logits.task_logits` (length-sorted
sub-batches within the token budget) and `texts.windows_entities` (each request decoded with its own
aggregation strategy). Each request is answered with its own entities.

Why wait for as many as the last batch held: under load (64 clients) the answers of one batch bring the next
requests back within milliseconds, and a batch that waits for them runs the model once instead of many times;
with one client, the last batch held one request, so the next runs at once and latency is one forward pass.

The model runs in one worker thread, never in the event loop, which stays free to read requests and write answers;
tokenizing (in a second thread, with its own copy of the tokenizer: a fast tokenizer's settings are shared state)
overlaps the model's run of the previous batch. ``max_concurrent_requests`` bounds what is admitted and not yet
answered: one more raises `QueueFullError` (503 and ``Retry-After``), so the queue never grows without bound.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import itertools
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..running.decoding import check_decoding, check_strategy
from ..running.features import check_stride
from ..running.logits import check_max_length, default_max_length, model_device, task_logits
from ..running.tasks import Head, model_heads
from ..running.texts import text_windows, windows_entities
from .requests import EntityRequest
from .settings import BatchSettings, ServerSettings

__all__ = ["CPU_FORWARD_TOKENS", "BatchObserver", "Batcher", "QueueFullError", "ShuttingDownError", "forward_tokens"]

log = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """``max_concurrent_requests`` requests are admitted and not answered; ``retry_after``: seconds to wait."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(
            f"the server is at its limit of {limit} concurrent requests (--max-concurrent-requests); "
            f"retry in {retry_after} s."
        )
        self.retry_after = retry_after


class ShuttingDownError(RuntimeError):
    """The server is shutting down: it answers what it admitted, and admits nothing more."""


class BatchObserver(Protocol):
    """Told of every batch the model ran (`metrics.ServerMetrics` is one)."""

    def observe_batch(self, requests: int, texts: int, tokens: int, seconds: float) -> None: ...


@dataclass
class _Pending:
    """A request admitted: its windows, their tokens, and the future its answer goes to."""

    request: EntityRequest
    windows: list[dict[str, Any]]
    future: asyncio.Future
    tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = sum(len(window["input_ids"]) for window in self.windows)


class Batcher:
    """Gathers concurrent requests into batches and runs them on ``model`` (PyTorch or `OnnxTokenClassifier`).

    Call `start` in the event loop that will `submit`, and `close` in it to stop: every request admitted is answered
    first. ``metrics`` (optional) is told of each batch.
    """

    def __init__(
        self, model: Any, tokenizer: Any, settings: ServerSettings, metrics: BatchObserver | None = None
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"{settings.model}: the server needs a fast tokenizer (character offsets and windows).")
        self.model, self.tokenizer, self.settings, self.metrics = model, tokenizer, settings, metrics
        self.batching = settings.batching
        self.heads: list[Head] = model_heads(model, settings.tasks)
        self.decoding = check_decoding(settings.decoding)
        check_max_length(settings.max_length, getattr(model.config, "max_position_embeddings", None), settings.model)
        self.max_length = settings.max_length or default_max_length(model, tokenizer)
        self.stride = check_stride(None, self.max_length, tokenizer)
        self.forward_tokens = forward_tokens(self.batching, model_device(model))
        self._queue: collections.deque[_Pending] = collections.deque()
        self._in_flight = 0
        self._target = 1  # requests the next batch waits for: as many as the last one held
        self._last_batch = (1, 0.0)  # requests and seconds of the last batch, for Retry-After
        self._arrived: asyncio.Event | None = None
        self._runner: asyncio.Task | None = None
        self._closing = False
        # One thread tokenizes (its own copy of the tokenizer), one runs the model: see the module's docstring.
        self._tokenizer_copy = copy.deepcopy(tokenizer)
        self._tokenizing = ThreadPoolExecutor(1, thread_name_prefix="hf-layer-tokclf-tokenize")
        self._running = ThreadPoolExecutor(1, thread_name_prefix="hf-layer-tokclf-model")

    @property
    def queue_depth(self) -> int:
        """Requests admitted and tokenized, waiting for a batch."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet answered (tokenizing, queued or running)."""
        return self._in_flight

    async def start(self) -> None:
        """Starts gathering batches in the running event loop."""
        self._arrived = asyncio.Event()
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="hf-layer-tokclf-batcher")

    def check(self, request: EntityRequest) -> None:
        """A `ValueError` naming the parameter the model cannot honour (a stride too large for its window)."""
        check_strategy(request.aggregation_strategy)
        if request.stride is not None:
            try:
                check_stride(request.stride, self.max_length, self.tokenizer)
            except ValueError as error:
                raise ValueError(f"parameters.stride: {error}") from None

    async def submit(self, request: EntityRequest) -> list[list[dict[str, Any]]]:
        """The entities of each of ``request.texts``, in order, as predict finds them with the request's options.

        Raises:
            QueueFullError: ``max_concurrent_requests`` are admitted and unanswered (nothing was queued).
            ShuttingDownError: `close` was called.
            ValueError: a parameter the model cannot honour (`check`).
        """
        if self._closing or self._runner is None:
            raise ShuttingDownError("the server is shutting down" if self._closing else "the batcher is not started")
        self.check(request)
        if self._in_flight >= self.batching.max_concurrent_requests:
            raise QueueFullError(self.batching.max_concurrent_requests, self._retry_after())
        self._in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            stride = self.stride if request.stride is None else request.stride
            arguments = (self._tokenizer_copy, request.texts, self.max_length, stride)
            if sum(map(len, request.texts)) <= INLINE_CHARACTERS:
                windows = text_windows(*arguments)
            else:
                windows = await loop.run_in_executor(self._tokenizing, text_windows, *arguments)
            pending = _Pending(request, windows, loop.create_future())
            self._queue.append(pending)
            self._arrived.set()
            return await pending.future
        finally:
            self._in_flight -= 1

    async def close(self) -> None:
        """Answers every request admitted, then stops the threads; `submit` refuses from now on."""
        self._closing = True
        while self._in_flight and self._runner is not None and not self._runner.done():
            self._arrived.set()
            await asyncio.sleep(0.01)
        if self._runner is not None:
            self._arrived.set()
            await self._runner
        self._tokenizing.shutdown()
        self._running.shutdown()

    def info(self) -> dict[str, Any]:
        """What the server answers with: the window, the decoding, how it batches (the forward passes' tokens as
        used), the labels or tasks, where the model runs."""
        import torch

        device = getattr(self.model, "device", None)
        dtype = getattr(self.model, "dtype", None)
        onnx = not isinstance(self.model, torch.nn.Module)
        heads = {head.name: [head.id2label[i] for i in range(len(head.id2label))] for head in self.heads}
        return {
            "engine": "onnx" if onnx else "pytorch",
            "device": str(device) if device is not None else "cpu",
            "dtype": getattr(self.model, "export_info", {}).get("precision") if onnx else str(dtype).split(".")[-1],
            "max_length": self.max_length,
            "stride": self.stride,
            "decoding": self.decoding,
            "batching": {**dataclasses.asdict(self.batching), "forward_batch_tokens": self.forward_tokens},
            **({"labels": heads[None]} if None in heads else {"tasks": heads}),
        }

    def _retry_after(self) -> int:
        """Seconds until the requests ahead are likely answered: the last batch's pace, at least one second."""
        requests, seconds = self._last_batch
        return max(1, math.ceil(self._in_flight / max(requests, 1) * seconds))

    async def _run(self) -> None:
        """Batches until closed and drained: gather, run in the model's thread, answer each request."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closing and not self._in_flight:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            batch = await self._gather()
            started = time.perf_counter()
            try:
                answers = await loop.run_in_executor(self._running, self._answer, batch)
            except Exception as error:  # the batch fails as one: each request hears why, the server goes on
                log.exception("a batch of %d requests failed", len(batch))
                answers = [error] * len(batch)
            seconds = time.perf_counter() - started
            for pending, answer in zip(batch, answers, strict=True):
                if pending.future.done():  # the client left (its handler was cancelled)
                    continue
                if isinstance(answer, Exception):
                    pending.future.set_exception(answer)
                else:
                    pending.future.set_result(answer)
            self._target, self._last_batch = len(batch), (len(batch), seconds)
            if self.metrics is not None:
                texts = sum(len(p.request.texts) for p in batch)
                self.metrics.observe_batch(len(batch), texts, sum(p.tokens for p in batch), seconds)

    async def _gather(self) -> list[_Pending]:
        """The next batch: what is queued, up to the limits, waiting at most ``max_wait_ms`` for ``_target``."""
        limits = self.batching
        deadline = asyncio.get_running_loop().time() + limits.max_wait_ms / 1000
        batch: list[_Pending] = []
        tokens = 0
        while True:
            while self._queue and len(batch) < limits.max_batch_requests:
                if batch and tokens + self._queue[0].tokens > limits.max_batch_tokens:
                    return batch  # the next one would overflow the budget: it heads the next batch
                pending = self._queue.popleft()
                batch.append(pending)
                tokens += pending.tokens
            if len(batch) >= min(self._target, limits.max_batch_requests) or tokens >= limits.max_batch_tokens:
                return batch
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self._closing:
                return batch
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return batch

    def _answer(self, batch: list[_Pending]) -> list[list[list[dict[str, Any]]]]:
        """In the model's thread: every window of the batch through the model at once, then the requests of each
        aggregation strategy decoded together (one decode for many requests costs little more than for one)."""
        windows = [window for pending in batch for window in pending.windows]
        names = [head.name for head in self.heads]
        budget = self.forward_tokens
        logits = task_logits(self.model, self.tokenizer, windows, names, max(len(windows), 1), max_batch_tokens=budget)
        first_window = list(itertools.accumulate((len(p.windows) for p in batch), initial=0))
        answers: list[Any] = [None] * len(batch)
        for strategy in dict.fromkeys(p.request.aggregation_strategy for p in batch):
            members = [i for i, pending in enumerate(batch) if pending.request.aggregation_strategy == strategy]
            texts, own_windows, rows = [], [], []
            for i in members:  # the members' texts numbered one after another, their windows pointing at them
                own_windows += [{**w, "overflow_to_sample_mapping": w["overflow_to_sample_mapping"] + len(texts)}
                                for w in batch[i].windows]  # fmt: skip
                rows += range(first_window[i], first_window[i + 1])
                texts += batch[i].request.texts
            own_logits = [[head_logits[row] for row in rows] for head_logits in logits]
            entities = windows_entities(
                texts, own_windows, own_logits, self.heads, self.tokenizer,
                strategy=strategy, decoding=self.decoding, min_score=self.settings.min_score,
            )  # fmt: skip
            done = 0
            for i in members:
                count = len(batch[i].request.texts)
                answers[i] = _without_labels(entities[done : done + count], batch[i].request.ignore_labels)
                done += count
        return answers


# A request of at most this many characters is tokenized at once in the event loop (a fraction of a millisecond);
# a longer one in the tokenizing thread, so that the loop never stalls on it. A hop to a thread costs each short
# request far more than its tokens: 64 clients in this process ran 146 sentences/s with every request hopping.
INLINE_CHARACTERS = 2000

# Padded tokens a forward pass holds on the CPU (`BatchSettings.forward_batch_tokens`): 512 to 1024 ran fastest on
# MiniLM and NCBI sentences (2 cores), 2048 and one pass for the whole batch slower.
CPU_FORWARD_TOKENS = 1024


def forward_tokens(batching: BatchSettings, device: Any) -> int:
    """The padded tokens of a forward pass: ``forward_batch_tokens`` as given, else `CPU_FORWARD_TOKENS` on the CPU
    and ``max_batch_tokens`` on a GPU, where one large pass beats several small ones."""
    if batching.forward_batch_tokens is not None:
        return batching.forward_batch_tokens
    on_cpu = getattr(device, "type", str(device)) == "cpu"
    return min(CPU_FORWARD_TOKENS, batching.max_batch_tokens) if on_cpu else batching.max_batch_tokens


def _without_labels(entities: list[list[dict[str, Any]]], ignore: tuple[str, ...] | None) -> list[list[dict]]:
    """The pipeline's ``ignore_labels``: entities whose label (``entity_group``, or ``entity`` with strategy none)
    is one of ``ignore`` are left out. ``None``: the pipeline's default, ``["O"]``, which decoding never outputs."""
    if not ignore:
        return entities
    return [[e for e in own if e.get("entity_group", e.get("entity")) not in ignore] for own in entities]

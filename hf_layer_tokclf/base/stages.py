"""Where a run's time goes: seconds per stage (read, tokenize, forward, decode, write), counted where the work is
done and added up for whoever asks.

The code that does the work marks it, at no cost when nobody records::

    with stage("forward"):
        logits = model(**batch).logits

and a caller who wants the split records it::

    with recording() as times:
        annotate_documents(model, tokenizer, documents)
    times.seconds  # {"read": 0.0, "tokenize": 0.4, "forward": 6.1, "decode": 0.3, "write": 0.0}

The record travels in a context variable, so it reaches every function the wrapped code calls without a
parameter on each; a thread the code starts gets it when started with `in_current_context`. Stages that
overlap (the next chunk tokenized in a thread while the model runs) are each counted in full, so the split
can add up to more than the wall time.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["STAGES", "StageTimes", "in_current_context", "recording", "stage", "timed_iter"]

STAGES = ("read", "tokenize", "forward", "decode", "write")
T = TypeVar("T")


class StageTimes:
    """Seconds and calls per stage, added to from any thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.calls: dict[str, int] = dict.fromkeys(STAGES, 0)
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.calls[name] = self.calls.get(name, 0) + 1

    def total(self) -> float:
        """The seconds of all stages together (overlapping stages each counted in full)."""
        return sum(self.seconds.values())

    def as_dict(self) -> dict[str, float]:
        """The seconds per stage, rounded to the millisecond, for a summary or a report."""
        return {name: round(seconds, 3) for name, seconds in self.seconds.items()}


_ACTIVE: contextvars.ContextVar[StageTimes | None] = contextvars.ContextVar("hf_layer_tokclf_stages", default=None)


@contextmanager
def recording(times: StageTimes | None = None) -> Iterator[StageTimes]:
    """Records the stages of the code in the ``with`` block (into ``times``, or a new `StageTimes`)."""
    times = times if times is not None else StageTimes()
    token = _ACTIVE.set(times)
    try:
        yield times
    finally:
        _ACTIVE.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Counts the ``with`` block as stage ``name`` of the run being recorded, if one is."""
    times = _ACTIVE.get()
    if times is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        times.add(name, time.perf_counter() - start)


def timed_iter(items: Iterable[T], name: str) -> Iterator[T]:
    """``items``, the time spent producing each one (reading a file, say) counted as stage ``name``."""
    iterator = iter(items)
    while True:
        with stage(name):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


def in_current_context(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` bound to the caller's context: run in another thread, its stages go to the caller's record."""
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.run(function, *args, **kwargs)

"""Work overlapped with the caller's: the next items of an iterator made in a background thread.

`prefetch` lets a corpus run read and tokenize chunk c + 1 while the model runs chunk c. A thread is enough:
reading (file I/O, gzip) and a fast tokenizer (Rust) release the GIL, and so does the model's forward pass.
What the consumer sees is what it would see without: the same items in the same order, and an error of the
iterator raised where it would have met it, after the items made before it.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from ..base.stages import in_current_context

__all__ = ["STOP_WAIT", "prefetch"]

T = TypeVar("T")
# Seconds a consumer that stops waits for the thread to finish the item in hand. Past that the thread (a daemon,
# which never holds up the interpreter's exit) is left to end on its own: it makes nothing more, but an iterator
# blocked on a read (standard input, a terminal) would otherwise keep Ctrl-C from ending the run.
STOP_WAIT = 2.0
_POLL = 0.05  # how often a thread waiting for room looks whether the consumer has gone
_ITEM, _END, _ERROR = "item", "end", "error"


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """``items`` in order, ``depth`` of them made ahead in a background thread while the caller uses the last (the
    item in hand and ``depth`` more: with 1, chunk c + 1 is made while the caller works on chunk c).

    The first item is made in the caller's thread (there is nothing to overlap it with, and a one-item input
    then costs no more than without), the rest in the thread. An exception of ``items`` is raised to the caller
    in place of the item that failed, the same object, after every item made before it. When the caller stops
    (the generator closed, an exception, Ctrl-C) the thread stops too: it makes no further item, closes
    ``items`` (its ``finally`` blocks run there) and is joined, waiting at most `STOP_WAIT` seconds. The thread
    runs in the caller's context (`stages.in_current_context`), so its stages count in the caller's record.

    ``items`` must not be used from elsewhere while this runs; neither may anything it shares with its items'
    making (a tokenizer's settings, say) be changed from the caller's thread.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}.")
    iterator = iter(items)
    try:
        first = next(iterator)
    except StopIteration:
        return
    made: queue.Queue[tuple[str, Any]] = queue.Queue()
    room = threading.Semaphore(depth)  # taken before an item is made, given back as the caller takes one
    stop = threading.Event()
    worker = threading.Thread(
        target=in_current_context(_make),
        args=(iterator, made, room, stop),
        name="hf_layer_tokclf-prefetch",
        daemon=True,
    )
    worker.start()
    try:
        yield first
        del first  # not held past its turn: with chunks, two in memory at most (this one and the next)
        while True:
            kind, value = made.get()
            room.release()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        stop.set()
        worker.join(timeout=0 if sys.exc_info()[0] is KeyboardInterrupt else STOP_WAIT)


def _make(iterator: Iterator[Any], made: queue.Queue, room: threading.Semaphore, stop: threading.Event) -> None:
    """The thread: items (then the end, or the exception that ended them) into ``made``, each once there is
    ``room``, until ``stop``."""
    try:
        while _wait(room, stop):
            try:
                item = next(iterator)
            except StopIteration:
                made.put((_END, None))
                return
            made.put((_ITEM, item))
    except BaseException as error:  # the caller's to raise, where it would have met it
        made.put((_ERROR, error))
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _wait(room: threading.Semaphore, stop: threading.Event) -> bool:
    """Waits for room for one more item; False when the caller stopped first."""
    while not stop.is_set():
        if room.acquire(timeout=_POLL):
            return not stop.is_set()
    return False

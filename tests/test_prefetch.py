"""prefetch: the next items made in a background thread, the consumer seeing what it would see without."""

from __future__ import annotations

import threading
import time

import pytest

from hf_layer_tokclf.base.stages import recording, stage
from hf_layer_tokclf.running.prefetch import prefetch


def prefetch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "hf_layer_tokclf-prefetch"]


class Source:
    """Items 0..n-1, counting those made and the threads that made them; item ``fail_at`` raises instead."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at, self.made, self.threads, self.closed = n, fail_at, 0, set(), False

    def __iter__(self):
        try:
            for item in range(self.n):
                if item == self.fail_at:
                    raise KeyError(f"item {item} is bad")
                with stage("read"):
                    self.made += 1
                    self.threads.add(threading.get_ident())
                yield item
        finally:
            self.closed = True


def test_items_come_in_order_one_made_ahead_in_another_thread():
    source = Source(6)
    seen = []
    for item in prefetch(source):
        seen.append(item)
        deadline = time.monotonic() + 5
        while source.made < min(len(seen) + 1, 6) and time.monotonic() < deadline:  # the next one, made meanwhile
            time.sleep(0.005)
        time.sleep(0.02)
        assert source.made == min(len(seen) + 1, 6), "exactly one item ahead, never more"
    assert seen == list(range(6)) and source.closed
    assert len(source.threads) == 2  # the first in the caller's thread, the rest in the background
    assert list(prefetch([])) == [] and list(prefetch(["only"])) == ["only"]
    with pytest.raises(ValueError, match="depth must be at least 1"):
        list(prefetch([1], depth=0))


def test_an_error_of_the_items_comes_after_the_items_before_it_as_the_same_exception():
    seen = []
    with pytest.raises(KeyError, match="item 3 is bad"):
        for item in prefetch(Source(6, fail_at=3)):
            seen.append(item)
    assert seen == [0, 1, 2]
    assert not prefetch_threads()


@pytest.mark.parametrize("how", ["close", "consumer error"])
def test_a_consumer_that_stops_stops_the_thread(how):
    source = Source(1000)
    items = prefetch(source)
    with pytest.raises(RuntimeError) if how == "consumer error" else pytest.raises(StopIteration):
        for item in items:
            assert prefetch_threads(), "the thread runs while items are taken"
            if item == 2:
                if how == "close":
                    items.close()
                    raise StopIteration
                raise RuntimeError("the consumer failed")
    items.close()
    assert not prefetch_threads(), "no thread left running"
    assert source.closed and source.made <= 4  # what was in hand and one ahead: the rest never read


def test_the_threads_stages_count_in_the_callers_record():
    with recording() as times:
        assert list(prefetch(Source(4))) == [0, 1, 2, 3]
    assert times.calls["read"] == 4  # three of them in the thread

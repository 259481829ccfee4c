"""The time split of a run: stages counted where the work is done, for whoever records."""

import threading
import time

from hf_layer_tokclf.base.stages import STAGES, in_current_context, recording, stage, timed_iter


def test_stages_count_only_while_recording():
    with stage("forward"):  # nobody records: nothing to count, no error
        pass
    with recording() as times:
        with stage("forward"):
            time.sleep(0.02)
        with stage("decode"):
            pass
    assert set(STAGES) <= set(times.seconds)
    assert times.seconds["forward"] >= 0.02
    assert times.calls == {**dict.fromkeys(STAGES, 0), "forward": 1, "decode": 1}
    with stage("forward"):  # the record ended with its block
        time.sleep(0.01)
    assert times.calls["forward"] == 1


def test_timed_iter_counts_producing_each_item():
    def slow():
        for value in range(3):
            time.sleep(0.01)
            yield value

    with recording() as times:
        assert list(timed_iter(slow(), "read")) == [0, 1, 2]
    assert times.calls["read"] == 4  # three items and the end
    assert times.seconds["read"] >= 0.03


def test_a_thread_started_in_the_callers_context_adds_to_its_record():
    with recording() as times:

        def tokenize():
            with stage("tokenize"):
                time.sleep(0.01)

        worker = threading.Thread(target=in_current_context(tokenize))
        plain = threading.Thread(target=tokenize)  # a thread without the context: not counted
        worker.start(), plain.start()
        worker.join(), plain.join()
    assert times.calls["tokenize"] == 1

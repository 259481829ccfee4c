"""The server's dynamic batching, without HTTP: concurrent requests run as one batch and each gets predict's
entities; the limits (requests, tokens, concurrency) hold; closing answers what was admitted."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import torch
from conftest import assert_same_answers, ncbi_texts

from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.running.texts import predict_texts
from hf_layer_tokclf.server.batcher import (
    CPU_FORWARD_TOKENS,
    Batcher,
    QueueFullError,
    ShuttingDownError,
    forward_tokens,
)
from hf_layer_tokclf.server.requests import EntityRequest
from hf_layer_tokclf.server.settings import BatchSettings, ServerSettings


class Batches:
    """A `BatchObserver` that keeps every batch's sizes."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []

    def observe_batch(self, requests: int, texts: int, tokens: int, seconds: float) -> None:
        self.seen.append((requests, texts, tokens))


@pytest.fixture(scope="module")
def served(trained):
    model_dir, _ = trained
    model, tokenizer = load_model(model_dir)
    return str(model_dir), model, tokenizer


def run_batcher(served, requests: list[EntityRequest], **batching) -> tuple[list, Batches]:
    """Every request submitted at once to a fresh `Batcher`; the answers (or exceptions) in order, and its batches."""
    model_dir, model, tokenizer = served
    settings = ServerSettings(model=model_dir, batching=BatchSettings(**batching))
    observer = Batches()

    async def main() -> list:
        batcher = Batcher(model, tokenizer, settings, observer)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)
        finally:
            await batcher.close()

    return asyncio.run(main()), observer


def request(texts: list[str], strategy: str = "first", **options) -> EntityRequest:
    return EntityRequest(texts=texts, single=False, aggregation_strategy=strategy, **options)


def test_concurrent_requests_run_as_one_batch_and_each_gets_predicts_entities(served):
    _, model, tokenizer = served
    texts = ncbi_texts(24)
    requests = [request([text]) for text in texts[:16]] + [request(texts[16:20]), request(texts[20:])]
    answers, batches = run_batcher(served, requests, max_wait_ms=2000)
    expected = list(predict_texts(model, tokenizer, texts))
    assert_same_answers([entities for answer in answers for entities in answer], expected)
    assert sum(entities != [] for entities in expected) >= 8  # the trained model finds diseases in them
    assert sum(r for r, _, _ in batches.seen) == len(requests)
    assert max(r for r, _, _ in batches.seen) > 1  # batched: fewer runs of the model than requests
    assert len(batches.seen) < len(requests)


def test_batching_off_runs_one_request_a_batch(served):
    texts = ncbi_texts(6)
    answers, batches = run_batcher(served, [request([t]) for t in texts], max_batch_requests=1)
    assert [r for r, _, _ in batches.seen] == [1] * 6
    assert all(len(answer) == 1 for answer in answers)


def test_a_batch_stays_within_the_token_budget(served):
    texts = ncbi_texts(12)
    answers, batches = run_batcher(served, [request([t]) for t in texts], max_wait_ms=2000, max_batch_tokens=120)
    assert all(tokens <= 120 or requests == 1 for requests, _, tokens in batches.seen), batches.seen
    assert len(batches.seen) > 1
    assert not any(isinstance(a, Exception) for a in answers)


def test_one_client_is_never_kept_waiting_for_others(served):
    """With nobody else sending, a request runs at once, however long --max-wait-ms: the batch waits only for as
    many requests as the last one held."""
    _, model, tokenizer = served
    text = ncbi_texts(1)[0]

    async def main() -> list:
        settings = ServerSettings(model=served[0], batching=BatchSettings(max_wait_ms=600_000))
        batcher = Batcher(model, tokenizer, settings)
        await batcher.start()
        try:
            return [await asyncio.wait_for(batcher.submit(request([text])), timeout=60) for _ in range(3)]
        finally:
            await batcher.close()

    answers = asyncio.run(main())
    assert_same_answers([a[0] for a in answers], list(predict_texts(model, tokenizer, [text] * 3)))


def test_each_request_is_decoded_with_its_own_parameters(served):
    """Requests of one batch with different strategies, ignore_labels and strides get what predict gives each."""
    _, model, tokenizer = served
    texts = ncbi_texts(8)
    long_text = " ".join(texts)  # longer than a 48-subword window: cut into windows, nothing truncated
    requests = [
        request(texts[:4], "simple"),
        request(texts[:4], "none"),
        request(texts[:4], "first", ignore_labels=("Disease",)),
        request([long_text], "first", stride=8),
        request([long_text], "first"),
    ]
    answers, batches = run_batcher(served, requests, max_wait_ms=2000)
    assert max(r for r, _, _ in batches.seen) >= 2  # requests of different parameters share a batch
    assert_same_answers(answers[0], list(predict_texts(model, tokenizer, texts[:4], aggregation_strategy="simple")))
    assert_same_answers(answers[1], list(predict_texts(model, tokenizer, texts[:4], aggregation_strategy="none")))
    assert "entity" in answers[1][0][0]
    assert answers[2] == [[], [], [], []]
    assert_same_answers(answers[3], list(predict_texts(model, tokenizer, [long_text], stride=8)))
    assert_same_answers(answers[4], list(predict_texts(model, tokenizer, [long_text])))
    assert answers[4][0][-1]["end"] > 400  # entities past the first window's end: windowed, not truncated


def test_long_texts_are_windowed_as_predict_windows_them(served):
    model_dir, model, tokenizer = served
    texts = [" ".join(ncbi_texts(12))]

    async def main() -> list:
        settings = ServerSettings(model=model_dir, max_length=32)
        batcher = Batcher(model, tokenizer, settings)
        await batcher.start()
        try:
            return await batcher.submit(request(texts))
        finally:
            await batcher.close()

    expected = list(predict_texts(model, tokenizer, texts, max_length=32))
    assert_same_answers(asyncio.run(main()), expected)
    assert len(expected[0]) >= 4


def test_a_full_server_refuses_with_queue_full_and_a_retry_time(served):
    texts = ncbi_texts(3)
    answers, _ = run_batcher(served, [request([t]) for t in texts], max_concurrent_requests=1)
    assert isinstance(answers[0], list)
    refused = [a for a in answers[1:] if isinstance(a, QueueFullError)]
    assert len(refused) == 2
    assert "1 concurrent requests (--max-concurrent-requests)" in str(refused[0])
    assert refused[0].retry_after >= 1


def test_a_stride_the_window_cannot_hold_is_refused_naming_it(served):
    answers, batches = run_batcher(served, [request(["Cancer."], stride=10_000)])
    assert isinstance(answers[0], ValueError)
    assert str(answers[0]).startswith("parameters.stride: stride=10000")
    assert batches.seen == []


def test_closing_answers_what_was_admitted_then_refuses(served):
    model_dir, model, tokenizer = served
    texts = ncbi_texts(8)

    async def main() -> tuple[list, Exception]:
        batcher = Batcher(model, tokenizer, ServerSettings(model=model_dir, batching=BatchSettings(max_wait_ms=50)))
        await batcher.start()
        tasks = [asyncio.ensure_future(batcher.submit(request([t]))) for t in texts]
        await asyncio.sleep(0)  # admitted: each is tokenizing or queued
        await batcher.close()
        answers = await asyncio.gather(*tasks)
        try:
            await batcher.submit(request(texts[:1]))
        except ShuttingDownError as error:
            return answers, error
        raise AssertionError("a closed batcher admitted a request")

    answers, error = asyncio.run(main())
    assert_same_answers([a[0] for a in answers], list(predict_texts(model, tokenizer, texts)))
    assert "shutting down" in str(error)


def test_a_multitask_model_answers_every_task_with_its_name(multitask_dir):
    model, tokenizer = load_model(multitask_dir)
    texts = ncbi_texts(6)
    answers, _ = run_batcher((str(multitask_dir), model, tokenizer), [request([t]) for t in texts], max_wait_ms=500)
    expected = list(predict_texts(model, tokenizer, texts))
    assert_same_answers([a[0] for a in answers], expected)
    assert {e["task"] for entities in expected for e in entities} <= {"cg", "disease"}


def test_settings_the_model_cannot_honour_are_refused_at_start(served):
    model_dir, model, tokenizer = served
    with pytest.raises(ValueError, match="max_position_embeddings=512"):
        Batcher(model, tokenizer, ServerSettings(model=model_dir, max_length=4096))
    with pytest.raises(ValueError, match="asked of a single-task model"):
        Batcher(model, tokenizer, replace(ServerSettings(model=model_dir), tasks=("disease",)))


class CountingPasses:
    """A model that notes the shape of every forward pass it runs (the model's own answers, untouched)."""

    def __init__(self, model) -> None:
        self.model, self.shapes = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, **inputs):
        self.shapes.append(tuple(inputs["input_ids"].shape))
        return self.model(**inputs)


def test_a_batch_runs_as_length_sorted_passes_within_the_forward_budget(served):
    model_dir, model, tokenizer = served
    counting = CountingPasses(model)
    texts = ncbi_texts(16)
    answers, batches = run_batcher(
        (model_dir, counting, tokenizer), [request([t]) for t in texts], max_wait_ms=2000, forward_batch_tokens=256
    )
    assert_same_answers([a[0] for a in answers], list(predict_texts(model, tokenizer, texts)))
    assert max(r for r, _, _ in batches.seen) > 1
    assert all(rows * length <= 256 or rows == 1 for rows, length in counting.shapes), counting.shapes
    assert len(counting.shapes) > len(batches.seen)  # batches cut into passes


def test_the_forward_budget_is_small_on_the_cpu_and_the_batch_on_a_gpu():
    assert forward_tokens(BatchSettings(), torch.device("cpu")) == CPU_FORWARD_TOKENS
    assert forward_tokens(BatchSettings(max_batch_tokens=512), torch.device("cpu")) == 512
    assert forward_tokens(BatchSettings(), torch.device("cuda")) == BatchSettings().max_batch_tokens
    assert forward_tokens(BatchSettings(forward_batch_tokens=64), torch.device("cuda")) == 64

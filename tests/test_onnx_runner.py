"""The ONNX runner on the corpus path: its threads (what --num-threads and torchrun set), any batch shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from hf_layer_tokclf.running.export import export_onnx
from hf_layer_tokclf.running.features import token_budget_batches
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.running.logits import window_logits
from hf_layer_tokclf.running.onnx_runner import OnnxTokenClassifier
from hf_layer_tokclf.running.texts import predict_texts

TEXTS = [
    "Hereditary breast cancer is caused by BRCA1 mutations.",
    "No disease here.",
    "Ataxia telangiectasia and Duchenne muscular dystrophy are rare; cystic fibrosis is common in some "
    "populations, and so is sickle cell anaemia.",
    "Huntington disease.",
] * 3


@pytest.fixture(scope="module")
def onnx_dir(tiny_dir, tmp_path_factory):
    return export_onnx(tiny_dir, tmp_path_factory.mktemp("onnx") / "fp32").parent


def _options(runner: OnnxTokenClassifier) -> tuple[int, str]:
    options = runner.session.get_session_options()
    return options.intra_op_num_threads, options.get_session_config_entry("session.intra_op.allow_spinning")


def test_the_runner_takes_the_threads_torch_was_given(onnx_dir):
    """predict's --num-threads and torchrun's share set torch's threads: onnxruntime took all the cores, each rank."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        model, _ = load_model(onnx_dir)
        assert _options(model) == (1, "1")
        assert _options(OnnxTokenClassifier(onnx_dir, threads=2, spinning=False)) == (2, "0")
    finally:
        torch.set_num_threads(before)


def test_onnx_logits_are_the_same_whatever_the_batch_shape(onnx_dir, tokenizer):
    """Dynamic batch and sequence axes: one window at a time, a count of windows, a budget of padded tokens."""
    model, tokenizer = load_model(onnx_dir)
    windows = [dict(input_ids=ids) for ids in tokenizer(TEXTS)["input_ids"]]
    alone = window_logits(model, tokenizer, windows, batch_size=1)
    for batch_size in (5, 32):
        for a, b in zip(alone, window_logits(model, tokenizer, windows, batch_size=batch_size), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
    lengths = [len(w["input_ids"]) for w in windows]
    batches = token_budget_batches(lengths, 32, max_batch_tokens=64)
    assert len({len(b) for b in batches}) > 1  # batches of several shapes
    for indices in batches:
        padded = tokenizer.pad([windows[i] for i in indices], return_tensors="np")
        logits = model.logits(padded["input_ids"], padded["attention_mask"])
        for row, i in zip(logits, indices, strict=True):
            np.testing.assert_allclose(row[: lengths[i]], alone[i], atol=1e-5)
    entities = [list(predict_texts(model, tokenizer, TEXTS, batch_size=size)) for size in (1, 3, 32)]
    spans = [[[(e["start"], e["end"], e["entity_group"]) for e in own] for own in run] for run in entities]
    assert spans[0] == spans[1] == spans[2]

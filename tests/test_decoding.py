"""The one decode path: word scores to labels, and windows to entities through the pipeline's own code."""

import numpy as np
import pytest
import torch
from transformers import pipeline

from hf_layer_tokclf.decoding import STRATEGIES, check_strategy, text_entities, word_labels
from hf_layer_tokclf.inference import load_model

ID2LABEL = {0: "O", 1: "B-Disease", 2: "I-Disease"}


def test_word_labels_take_each_rows_arg_max_and_keep_empty_sentences():
    rows = [[np.array([0.1, 0.7, 0.2]), np.array([0.0, 0.1, 0.9])], [], np.array([[3.0, -1.0, 0.0]])]
    assert word_labels(rows, ID2LABEL) == [["B-Disease", "I-Disease"], [], ["O"]]


def test_check_strategy_names_the_known_ones():
    assert check_strategy("FIRST") == "first"
    assert set(STRATEGIES) == {"none", "simple", "first", "average", "max"}
    with pytest.raises(ValueError, match="aggregation_strategy='best' is unknown"):
        check_strategy("best")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_text_entities_of_one_window_with_argmax_are_the_stock_pipelines(tiny_dir, strategy):
    model, tokenizer = load_model(tiny_dir)
    text = "Germline mutations in BRCA1 cause hereditary breast and ovarian cancer."
    window = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    with torch.no_grad():
        window["logits"] = model(**tokenizer(text, return_tensors="pt")).logits[0].numpy()
    id2label = model.config.id2label
    ours = text_entities(text, [window], tokenizer=tokenizer, id2label=id2label, strategy=strategy, decoding="argmax")
    stock = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=strategy)(text)
    assert ours == [{k: (float(v) if k == "score" else v) for k, v in e.items() if k != "index"} for e in stock]
    assert all(type(e["score"]) is float for e in ours)

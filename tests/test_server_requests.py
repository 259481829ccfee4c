"""`requests.parse_request`: the Inference API's token-classification body read and checked, without a server."""

from __future__ import annotations

import json

import pytest

from hf_layer_tokclf.server.requests import EntityRequest, RequestError, parse_request
from hf_layer_tokclf.server.settings import ServerSettings

SETTINGS = ServerSettings(model="runs/my-model", payload_limit=1000, max_client_batch_size=3)


def parsed(body) -> EntityRequest:
    return parse_request(json.dumps(body).encode() if not isinstance(body, bytes) else body, SETTINGS)


def refused(body) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parsed(body)
    return caught.value


def test_what_inference_client_posts_parses():
    # huggingface_hub 2.4's InferenceClient.token_classification: every parameter given, and none
    request = parsed({"inputs": "BRCA1 mutations", "parameters": {"aggregation_strategy": "simple",
                                                                  "ignore_labels": ["O"], "stride": 3}})  # fmt: skip
    assert request == EntityRequest(["BRCA1 mutations"], True, "simple", ("O",), 3)
    assert parsed({"inputs": "x", "parameters": {}}) == EntityRequest(["x"], True, SETTINGS.aggregation_strategy)


def test_a_list_of_texts_defaults_and_nulls():
    request = parsed({"inputs": ["a", "", "c"], "parameters": {"stride": None, "aggregation_strategy": "MAX"}})
    assert request == EntityRequest(["a", "", "c"], False, "max")
    assert parsed({"inputs": ["a"], "options": {"wait_for_model": True}}).texts == ["a"]  # the Inference API's options
    assert parsed({"inputs": "a", "parameters": None}).aggregation_strategy == SETTINGS.aggregation_strategy


@pytest.mark.parametrize(
    "body, message",
    [
        (b'{"inputs": "a"', "malformed JSON: Expecting ',' delimiter: line 1 column 15"),
        (b"\xff\xfe", "the body is not UTF-8 text"),
        (["a"], 'the body: expected an object {"inputs": ..., "parameters": {...}}, got a list (["a"])'),
        ({"text": "a"}, "text: unknown; expected one of inputs, parameters, options"),
        ({"parameters": {}}, "inputs: missing"),
        ({"inputs": 3}, "inputs: expected a string or a list of strings, got a number (3)"),
        ({"inputs": []}, "inputs: an empty list; expected at least one text"),
        ({"inputs": ["a", "b", 7]}, "inputs[2]: expected a string, got a number (7)"),
        ({"inputs": ["a", None]}, "inputs[1]: expected a string, got null (null)"),
        ({"inputs": "a", "parameters": ["simple"]}, 'parameters: expected an object, got a list (["simple"])'),
        (
            {"inputs": "a", "parameters": {"top_k": 3}},
            "parameters.top_k: unknown; expected one of aggregation_strategy",
        ),
        (
            {"inputs": "a", "parameters": {"aggregation_strategy": "mean"}},
            'parameters.aggregation_strategy: expected one of none, simple, first, average, max, got a string ("mean")',
        ),
        ({"inputs": "a", "parameters": {"ignore_labels": "O"}}, "parameters.ignore_labels: expected a list"),
        ({"inputs": "a", "parameters": {"ignore_labels": ["O", 1]}}, "parameters.ignore_labels[1]: expected a string"),
        ({"inputs": "a", "parameters": {"stride": -1}}, "parameters.stride: expected a whole number of subwords >= 0"),
        ({"inputs": "a", "parameters": {"stride": 2.5}}, "got a number (2.5)"),
        ({"inputs": "a", "parameters": {"stride": True}}, "parameters.stride: expected a whole number"),
    ],
)
def test_a_wrong_body_is_422_naming_the_field(body, message):
    error = refused(body)
    assert error.status == 422
    assert message in str(error)


def test_a_long_value_is_shown_cut_short():
    error = refused({"inputs": ["a", {"text": "x" * 500}]})
    assert str(error).startswith("inputs[1]: expected a string, got an object (") and len(str(error)) < 140


def test_limits_are_413_naming_the_limit():
    error = refused({"inputs": ["a", "b", "c", "d"]})
    assert (error.status, error.error_type) == (413, "too_many_inputs")
    assert str(error).startswith("inputs: 4 texts; the limit is 3 a request (serve --max-client-batch-size)")
    assert parsed({"inputs": ["a", "b", "c"]}).texts == ["a", "b", "c"]  # at the limit: taken
    body = json.dumps({"inputs": "x" * 1000}).encode()
    error = refused(body)
    assert (error.status, error.error_type) == (413, "payload_too_large")
    assert str(error).startswith(
        f"the request body is {len(body)} bytes; the limit is 1000 bytes (serve --payload-limit)"
    )
    at_limit = json.dumps({"inputs": "x" * (1000 - len(json.dumps({"inputs": ""})))}).encode()
    assert len(at_limit) == 1000 and parsed(at_limit).texts

"""A request to the entity server: the Inference API's token-classification body, read and checked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..base.defaults import STRATEGIES
from .settings import ServerSettings

__all__ = ["EntityRequest", "RequestError", "parse_request", "payload_too_large"]


@dataclass(frozen=True)
class EntityRequest:
    """What one request asks: its texts and the pipeline parameters it gives (``None``: the server's default)."""

    texts: list[str]
    single: bool
    """The body's ``inputs`` was one string (answered with one list of entities), not a list of them."""
    aggregation_strategy: str
    ignore_labels: tuple[str, ...] | None = None
    stride: int | None = None


class RequestError(ValueError):
    """A request the server refuses: the HTTP ``status`` and a message naming the field, value or limit."""

    def __init__(self, status: int, message: str, *, error_type: str = "validation") -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


# The Inference API's token-classification parameters (huggingface_hub's TokenClassificationParameters).
PARAMETERS = ("aggregation_strategy", "ignore_labels", "stride")
# What a body may hold besides: ``options`` is the Inference API's ({"wait_for_model": ...}), read and ignored.
BODY_KEYS = ("inputs", "parameters", "options")


def parse_request(body: bytes, settings: ServerSettings) -> EntityRequest:
    """The texts and parameters of a token-classification request body, checked against ``settings``' limits.

    ``body`` is ``{"inputs": "text" | ["text", ...], "parameters": {"aggregation_strategy": ..., "ignore_labels":
    [...], "stride": N}}`` (what ``huggingface_hub.InferenceClient.token_classification`` posts); a parameter left out
    or ``null`` takes the server's default. Raises `RequestError`: 413 for a body over ``settings.payload_limit``
    bytes or more texts than ``settings.max_client_batch_size``, naming the limit; 422 for malformed JSON, a wrong
    type or value, or a key the API does not have, naming the field (``inputs[2]: expected a string, got a number``).
    """
    if len(body) > settings.payload_limit:
        raise payload_too_large(len(body), settings.payload_limit)
    try:
        document = json.loads(body.decode("utf-8"))  # JSON is UTF-8 (RFC 8259); not a guessed UTF-16
    except UnicodeDecodeError as error:
        raise RequestError(422, f"the body is not UTF-8 text: {error}", error_type="json") from None
    except json.JSONDecodeError as error:
        raise RequestError(422, f"malformed JSON: {error}", error_type="json") from None
    if not isinstance(document, dict):
        raise _wrong("the body", 'an object {"inputs": ..., "parameters": {...}}', document)
    _refuse_unknown(document, BODY_KEYS, "")
    texts, single = _texts(document.get("inputs"), settings.max_client_batch_size)
    parameters = document.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise _wrong("parameters", "an object", parameters)
    _refuse_unknown(parameters, PARAMETERS, "parameters.")
    return EntityRequest(
        texts=texts,
        single=single,
        aggregation_strategy=_strategy(parameters.get("aggregation_strategy"), settings.aggregation_strategy),
        ignore_labels=_ignore_labels(parameters.get("ignore_labels")),
        stride=_stride(parameters.get("stride")),
    )


def payload_too_large(size: int | None, limit: int) -> RequestError:
    """The 413 of a body over ``limit`` bytes (``size``: its length where known, else it was cut off at the limit)."""
    what = f"{size} bytes" if size is not None else f"over {limit} bytes"
    return RequestError(
        413,
        f"the request body is {what}; the limit is {limit} bytes (serve --payload-limit): send fewer or shorter texts",
        error_type="payload_too_large",
    )


def _texts(inputs: Any, limit: int) -> tuple[list[str], bool]:
    if isinstance(inputs, str):
        return [inputs], True
    if inputs is None:
        raise RequestError(422, 'inputs: missing; expected a string or a list of strings ({"inputs": "text"})')
    if not isinstance(inputs, list):
        raise _wrong("inputs", "a string or a list of strings", inputs)
    if not inputs:
        raise RequestError(422, "inputs: an empty list; expected at least one text")
    if len(inputs) > limit:
        raise RequestError(
            413,
            f"inputs: {len(inputs)} texts; the limit is {limit} a request (serve --max-client-batch-size): "
            "send them in several requests",
            error_type="too_many_inputs",
        )
    for index, text in enumerate(inputs):
        if not isinstance(text, str):
            raise _wrong(f"inputs[{index}]", "a string", text)
    return inputs, False


def _strategy(value: Any, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or value.lower() not in STRATEGIES:
        raise _wrong("parameters.aggregation_strategy", f"one of {', '.join(STRATEGIES)}", value)
    return value.lower()  # the pipeline takes "SIMPLE" as "simple" too


def _ignore_labels(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _wrong("parameters.ignore_labels", 'a list of label names (["O"])', value)
    for index, label in enumerate(value):
        if not isinstance(label, str):
            raise _wrong(f"parameters.ignore_labels[{index}]", "a string", label)
    return tuple(value)


def _stride(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _wrong("parameters.stride", "a whole number of subwords >= 0", value)
    return value


def _refuse_unknown(mapping: dict[str, Any], known: tuple[str, ...], prefix: str) -> None:
    unknown = [key for key in mapping if key not in known]
    if unknown:
        raise RequestError(422, f"{prefix}{unknown[0]}: unknown; expected one of {', '.join(known)}")


JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}


def _wrong(field: str, expected: str, value: Any) -> RequestError:
    """``FIELD: expected EXPECTED, got TYPE (VALUE)``, the value cut short: the 422 of a wrong type or value."""
    kind = JSON_TYPES.get(type(value), "a number")
    shown = json.dumps(value, ensure_ascii=False)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return RequestError(422, f"{field}: expected {expected}, got {kind} ({shown})")

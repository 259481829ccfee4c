"""The one decision whether loading a model may run Python code that came with it.

Every loader of the package (`loading.load_model`, `tokenization.load_tokenizer`, the ONNX runner,
and through them the CLI, the spaCy component, Ray's actors, export, the sweep and the Hub check)
asks `may_run_code` and passes its answer to transformers as ``trust_remote_code``. So:

- A model whose ``model_type`` has installed classes (this package's, or transformers' own) never
  runs code from its folder, whatever anyone asks: the installed classes load it. A folder of ours
  whose ``modeling_layer_tokclf.py`` was edited changes nothing.
- Other code runs only with the consent of the person loading: ``trust_remote_code=True`` (the
  CLI's ``--trust-remote-code``), or the environment variable ``HF_LAYER_TOKCLF_TRUST_REMOTE_CODE=1``
  when no explicit answer is given. Nothing in the folder itself (a spaCy ``config.cfg``, a config
  field) can consent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "TRUST_ENV",
    "RemoteCodeError",
    "caller_consent",
    "check_consent",
    "consent_from_environment",
    "installed_model_type",
    "may_run_code",
]

TRUST_ENV = "HF_LAYER_TOKCLF_TRUST_REMOTE_CODE"
_YES = {"1", "true", "yes", "on"}


def consent_from_environment() -> bool:
    """Whether the person running this process set ``HF_LAYER_TOKCLF_TRUST_REMOTE_CODE`` to 1 / true / yes."""
    return os.environ.get(TRUST_ENV, "").strip().lower() in _YES


def _local_config(source: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a local folder ``source``; empty where there is none or it is not a JSON object."""
    try:
        config = json.loads((Path(source) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _installed(config: dict[str, Any]) -> bool:
    # Holds transformers' own types and those this package registers on import (hf_layer_tokclf/__init__.py).
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = config.get("model_type")
    return isinstance(model_type, str) and model_type in CONFIG_MAPPING


def installed_model_type(source: str | Path) -> bool:
    """Whether ``source`` is a local folder whose ``config.json`` names a model type with installed classes."""
    return _installed(_local_config(source))


def caller_consent(trust_remote_code: bool | None) -> bool:
    """The caller's answer: ``trust_remote_code`` as given, or, not given (``None``), the environment's.

    Resolved once where the person is (the driver of a Ray run), and passed on as a bool: a worker on
    another machine must not answer from its own environment.
    """
    return consent_from_environment() if trust_remote_code is None else bool(trust_remote_code)


def may_run_code(source: str | Path, trust_remote_code: bool | None = None) -> bool:
    """The ``trust_remote_code`` to give transformers for loading ``source`` (a folder or Hub id).

    ``trust_remote_code``: the caller's own answer; ``None`` (not given) reads `TRUST_ENV`. Returns
    False for a folder of a model type whose classes are installed (`installed_model_type`): its own
    code is never needed, so never run.
    """
    return caller_consent(trust_remote_code) and not installed_model_type(source)


class RemoteCodeError(ValueError):
    """Loading a model would run Python code from its folder, and the person loading did not allow it."""

    def __init__(self, source: str | Path) -> None:
        super().__init__(
            f"{source} needs the Python code it ships (an auto_map in its config.json or tokenizer_config.json) "
            "to load; nothing was run. Read that code, then pass --trust-remote-code (trust_remote_code=True, or "
            f"set {TRUST_ENV}=1) to run it. A model type with installed classes never runs its folder's code."
        )


def check_consent(source: str | Path, trust_remote_code: bool | None = None) -> None:
    """Raises `RemoteCodeError` before any work when the local folder ``source`` loads only through its own code
    (an ``auto_map`` and a model type nobody installed) and the caller did not consent."""
    config = _local_config(source)  # none readable: transformers' own refusal (caught by the loaders) applies
    if "auto_map" in config and not _installed(config) and not caller_consent(trust_remote_code):
        raise RemoteCodeError(source)

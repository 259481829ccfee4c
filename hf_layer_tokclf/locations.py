"""Where a model or data set is: a Hub repository id, or a local folder that holds a finished model.

Every command that takes a model or data set reads its argument through these, so that an id,
a missing path and a folder a killed run left behind are told apart the same way everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["CHECKPOINT_GLOB", "check_model_folder", "check_repo_id", "is_repo_id"]

CHECKPOINT_GLOB = "checkpoint-*"


def is_repo_id(value: Any, *, owner: bool = False) -> bool:
    """Whether ``value`` is spelled as a Hub repository id: ``name`` or ``owner/name`` (only that, with ``owner``).

    The spelling is huggingface_hub's own (`validate_repo_id`): letters, digits, ``-``, ``_`` and
    ``.``, no ``--`` or ``..``, at most 96 characters. A path such as ``./model``, ``~/runs/x``
    or ``runs/a/b`` is not one.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(value, str) or value.count("/") > 1 or (owner and value.count("/") != 1):
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def check_repo_id(repo_id: Any) -> str:
    """``repo_id`` if it is a Hub model id ``owner/name``, else a ``ValueError`` saying what is wrong."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"The repository id must be OWNER/NAME (e.g. your-name/ncbi-disease-minilm), not {repo_id!r}.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"Invalid repository id {repo_id!r}: {error}") from None
    return repo_id


def check_model_folder(path: str | Path, config_name: str = "config.json") -> None:
    """A ``ValueError`` for a folder with no model (no ``config.json``); it says if a run left checkpoints there."""
    path = Path(path)
    if (path / config_name).is_file():
        return
    checkpoints = sorted(p.name for p in path.glob(CHECKPOINT_GLOB))
    hint = f" It holds checkpoints ({', '.join(checkpoints)}): training did not finish." if checkpoints else ""
    raise ValueError(f"{path}: no model here (no {config_name}).{hint}")

"""Where a model or data set is: a Hub repository id, or a local folder that holds a finished model.

Every command that takes a model or data set reads its argument through these, so that an id,
a missing path and a folder a killed run left behind are told apart the same way everywhere.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

__all__ = [
    "CHECKPOINT_GLOB",
    "check_model_folder",
    "check_model_location",
    "check_repo_id",
    "is_repo_id",
    "no_such_folder",
]

CHECKPOINT_GLOB = "checkpoint-*"
CONFIG = "config.json"


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


def check_model_location(
    value: str | Path,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
) -> None:
    """A ``ValueError`` unless ``value`` is a model folder (`check_model_folder`) or a Hub model that can be fetched.

    A path that is not there is a mistyped folder, said as ``no such folder: runs/x`` with the nearest
    folders that exist (`no_such_folder`), whenever it cannot be a Hub id: when it is not spelled as one,
    or when its first component is a local folder (``runs/x`` beside ``runs/``: a path, and the Hub is not
    asked). Otherwise its ``config.json`` is fetched (or found in the cache, as `from_pretrained` would):
    if the Hub cannot give it (offline, no connection, no such repository), the same message says why.
    ``revision``, ``token`` and ``cache_dir`` are `from_pretrained`'s.
    """
    path = Path(value)
    if path.exists():
        check_model_folder(path)
        return
    if not is_repo_id(str(value)) or Path(path.parts[0]).is_dir():
        raise ValueError(no_such_folder(value))
    reason = _hub_failure(str(value), revision=revision, token=token, cache_dir=cache_dir)
    if reason is not None:
        raise ValueError(f"{no_such_folder(value)} As a Hub id, {value} could not be fetched: {reason}.")


def _hub_failure(repo_id: str, **location: Any) -> str | None:
    """Why the Hub cannot give ``repo_id``'s config.json (nor the cache hold it), or None when it can."""
    import huggingface_hub  # here, not at the top: `--help` imports this module, and must answer at once
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        huggingface_hub.hf_hub_download(repo_id, CONFIG, **location)
    except GatedRepoError:  # it exists; its own message says how to get access
        raise
    except RepositoryNotFoundError:
        return "the Hub has no such repository (or it is private: log in with `hf auth login`)"
    except LocalEntryNotFoundError as error:
        if constants.HF_HUB_OFFLINE:
            return "HF_HUB_OFFLINE is set and it is not in the local cache"
        cause = error.__cause__ or error.__context__
        detail = f" ({type(cause).__name__}: {' '.join(str(cause).split())})" if cause else ""
        return f"the Hub cannot be reached{detail} and it is not in the local cache"
    except EntryNotFoundError:  # a repository without config.json: the loader says what it lacks
        return None
    return None


def no_such_folder(value: str | Path, limit: int = 3) -> str:
    """``no such folder: VALUE.``, with up to ``limit`` folders beside the first missing component that exist.

    The deepest folder of ``value`` that exists is searched: folders whose name is near the missing one
    (difflib) are offered as ``did you mean``; when none is, its model folders (those with a config.json).
    """
    path = Path(value)
    parent = next((p for p in path.parents if p.is_dir()), Path("."))
    missing = path.parts[len(parent.parts)]
    try:
        folders = sorted(p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:  # an unreadable folder: no suggestions
        folders = []
    near = difflib.get_close_matches(missing, folders, n=limit, cutoff=0.6)
    if near:
        return f"no such folder: {value}; did you mean {' or '.join(str(parent / name) for name in near)}?"
    models = [name for name in folders if (parent / name / CONFIG).is_file()][:limit]
    if models:
        return f"no such folder: {value}. Model folders in {parent}: {', '.join(str(parent / n) for n in models)}."
    return f"no such folder: {value}."

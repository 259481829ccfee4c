"""Sharing a trained model on the Hugging Face Hub: stage, verify like a stranger, upload in one commit.

`push_to_hub` is what ``push_to_hub.py``, ``hf-layer-tokclf push`` and ``hf-layer-tokclf train
--push-to-hub`` run, as the steps of one job; this module holds the job, the token and the upload:

1. `staging.stage` copies what a Hub model repository needs, and nothing else, into a folder of its own
   (weights, config, code files, tokenizer, a model card rendered for the repository id).
2. `verification.verify` loads the staged folder in a fresh Python process where this package cannot be
   imported and compares it with the source folder loaded here (token ids, logits, entities, code files).
3. Upload: ``create_repo(exist_ok=True)``, ``create_branch`` for a ``revision``, then **one**
   ``create_commit`` listing exactly the staged files. Not ``upload_folder``: with ``hf_xet``
   installed (the default) it is a pipelined upload that may split a folder into several commits,
   and splits a batch whose commit failed, so a failure could leave part of the files committed.
   ``create_commit`` makes one commit or none.

``custom_code=False`` (``push --no-custom-code``) shares the *stock form* instead
(`stock_export.save_stock_form`): the family's own ``*ForTokenClassification`` with the layers the
model uses, no code files, no ``auto_map``; it is verified in a fresh process without
``trust_remote_code`` (`plain_check.run_plain_check`) against the source model decoded as the stock
pipeline decodes (argmax per token).

Nothing is uploaded unless every check passed; errors the user can fix are ``ValueError``
(`VerificationError` for a folder that does not match), network and Hub failures are `HubError`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.locations import check_repo_id
from ..base.redaction import remember_secret
from .staging import select_files, stage
from .verification import SAMPLE, VerificationError, verify

__all__ = [
    "HubError",
    "PushResult",
    "check_online",
    "push_request",
    "push_to_hub",
    "resolve_token",
]


class HubError(RuntimeError):
    """The Hub could not be reached or refused a request; the message says what, if anything, was uploaded."""


@dataclass
class PushResult:
    """What `push_to_hub` did: the staged files, the verification report, and the commit (unless a dry run)."""

    repo_id: str
    staging_dir: Path
    files: list[tuple[str, int]]
    verification: dict[str, Any]
    dry_run: bool
    revision: str | None = None
    repo_url: str | None = None
    commit_url: str | None = None
    commit_oid: str | None = None


# --- checks that need no model -----------------------------------------------------------------


def resolve_token(token: str | None = None) -> str:
    """``token``, else the one ``huggingface_hub`` would use (``HF_TOKEN``, then ``hf auth login``'s file)."""
    import huggingface_hub

    token = token or huggingface_hub.get_token()
    if not token:
        raise ValueError(
            "No Hugging Face token found: run `hf auth login`, or set HF_TOKEN to a token with write access "
            "(https://huggingface.co/settings/tokens). Nothing was uploaded."
        )
    return token


def check_online() -> None:
    """A ``ValueError`` if ``HF_HUB_OFFLINE`` is set: every Hub request would fail, after the verification."""
    from huggingface_hub import constants

    if getattr(constants, "HF_HUB_OFFLINE", False):
        raise ValueError("HF_HUB_OFFLINE is set: unset it to upload, or use --dry-run. Nothing was uploaded.")


# --- upload ------------------------------------------------------------------------------------


def _network_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a Hub request raises, whichever HTTP library this huggingface_hub uses."""
    import importlib

    from huggingface_hub.errors import HfHubHTTPError

    errors: list[type[BaseException]] = [HfHubHTTPError, OSError]
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        with contextlib.suppress(ImportError, AttributeError):
            errors.append(getattr(importlib.import_module(module), name))
    return tuple(errors)


def _describe(error: BaseException, repo_id: str) -> str:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    detail = " ".join(str(getattr(error, "server_message", None) or first).split())
    if status == 401:
        return f"the Hub rejected the token (401: {detail}); check it with `hf auth whoami` or log in again"
    if status == 403:
        return f"the token may not write to {repo_id} (403: {detail}); it needs write access to that namespace"
    if status is not None:
        return f"the Hub answered {status}: {detail}"
    return f"could not reach the Hub ({type(error).__name__}: {first})"


def _upload(
    files: Sequence[Path],
    repo_id: str,
    *,
    private: bool,
    revision: str | None,
    commit_message: str,
    token: str,
) -> tuple[str, Any]:
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    committing = False
    try:
        repo_url = api.create_repo(repo_id, private=private or None, exist_ok=True)  # None: the Hub's default
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        committing = True
        operations = [CommitOperationAdd(path_in_repo=path.name, path_or_fileobj=str(path)) for path in files]
        info = api.create_commit(repo_id, operations, commit_message=commit_message, revision=revision)
    except (*_network_errors(), ValueError) as error:
        outcome = (
            "No commit was made, so none of the files are in the repository." if committing else "Nothing was uploaded."
        )
        raise HubError(f"Uploading to {repo_id} failed: {_describe(error, repo_id)}. {outcome}") from error
    return str(repo_url), info


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def push_to_hub(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    dry_run: bool = False,
    staging_dir: str | Path | None = None,
    token: str | None = None,
    overwrite_staging: bool = False,
    text: str = SAMPLE,
    echo: Callable[[str], Any] = print,
    custom_code: bool = True,
) -> PushResult:
    """Shares the model in ``model_dir`` as the Hub model repository ``repo_id``, verified first.

    Checks the repository id and (unless ``dry_run``) finds the token (``token``, else
    ``huggingface_hub.get_token()``: ``HF_TOKEN`` or ``hf auth login``) before anything else;
    `stage`s the folder in ``staging_dir`` (default: a new temporary folder), `verify`s it in a
    fresh process, prints the files with their sizes through ``echo``; a dry run stops there and
    keeps the folder. Otherwise creates the repository (``exist_ok``; ``private`` applies to a new
    one), the branch ``revision`` if given, and makes one commit with exactly the staged files; a
    temporary staging folder is then removed. Nothing is uploaded if any step before fails.
    ``custom_code=False`` shares the stock form (see `stage` and `verify`); a model without one
    (layer pooling, a CRF, ModernBERT, ...) is refused before anything is staged.

    Raises ``ValueError`` for what the user can fix (repository id, token, folder content,
    `VerificationError`) and `HubError` when the Hub cannot be reached or refuses.
    """
    remember_secret(token)
    token = _check_push(repo_id, revision, dry_run, token)
    source = _check_source(Path(model_dir), custom_code)  # fails before a staging folder appears
    temporary = staging_dir is None
    folder = Path(tempfile.mkdtemp(prefix="hf-layer-tokclf-push-")) if temporary else Path(staging_dir)
    keep = dry_run or not temporary
    try:
        files = stage(source, folder, repo_id=repo_id, overwrite=overwrite_staging, custom_code=custom_code)
        report = _verify_staged(folder, source, text, custom_code=custom_code, keep=keep, echo=echo)
        sizes = [(path.name, path.stat().st_size) for path in files]
        _echo_verified(sizes, repo_id, report, echo)
        result = PushResult(repo_id, folder, sizes, report, dry_run, revision)
        if dry_run:
            echo(f"Dry run: nothing was uploaded. The staged folder is {folder}")
            return result
        message = commit_message or _commit_message(source, custom_code)
        _commit(result, files, private=private, commit_message=message, token=token, echo=echo, custom_code=custom_code)
        return result
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def _check_source(source: Path, custom_code: bool) -> Path:
    """``source``, once it holds a model we can share (and, for ``custom_code=False``, one with a stock form):
    a ``ValueError`` (`stock_export.NotExportableError` for a model without an exact stock form) otherwise."""
    from ..model.auto import AutoLayerConfig
    from ..running.stock_export import check_exportable

    select_files(source)
    if not custom_code:
        check_exportable(AutoLayerConfig.from_pretrained(str(source)), source)
    return source


def _check_push(repo_id: str, revision: str | None, dry_run: bool, token: str | None) -> str | None:
    """The repository id and branch, and (unless a dry run) the token and the network: all before any work."""
    check_repo_id(repo_id)
    if revision is not None and not str(revision).strip():
        raise ValueError("--revision must name a branch.")
    if not dry_run:
        token = resolve_token(token)
        check_online()
    return token


def _verify_staged(
    folder: Path, source: Path, text: str, *, custom_code: bool, keep: bool, echo: Callable
) -> dict[str, Any]:
    """`verify`, announced; a failure says nothing was uploaded, and where the staged folder stays (if it does)."""
    how = "remote code" if custom_code else "the stock form, no trust_remote_code"
    echo(f"Verifying {folder} in a fresh Python process ({how}, no hf_layer_tokclf)...")
    try:
        return verify(folder, source, text, custom_code=custom_code)
    except VerificationError as error:
        where = f" The staged folder stays at {folder}." if keep else ""
        raise VerificationError(f"{error} Nothing was uploaded.{where}", error.problems) from error


def _commit_message(source: Path, custom_code: bool) -> str:
    """The default commit message: the model folder's name, this package's version, and the form shared."""
    from .. import __version__

    form = "" if custom_code else ", stock form without custom code"
    return f"Upload {source.resolve().name} (hf-layer-tokclf {__version__}{form})"


def _echo_verified(sizes: list[tuple[str, int]], repo_id: str, report: dict[str, Any], echo: Callable) -> None:
    """The staged files with their sizes, and what the verification found."""
    width = max(len(name) for name, _ in sizes)
    lines = [f"  {name:<{width}}  {_size(size):>9}  ({size:,} bytes)" for name, size in sizes]
    total = sum(size for _, size in sizes)
    echo(f"{len(sizes)} files for {repo_id}, {_size(total)}:\n" + "\n".join(lines))
    echo(
        f"Verified with transformers {report.get('transformers_version')}: logits match the source "
        f"(max |difference| {report['max_abs_diff']:.1g}), the pipeline found {len(report['entities'])} entities."
    )


def _commit(
    result: PushResult,
    files: Sequence[Path],
    *,
    private: bool,
    commit_message: str,
    token: str,
    echo: Callable,
    custom_code: bool = True,
) -> None:
    """Uploads the staged ``files`` in one commit and records the repository and commit in ``result``."""
    repo_id, revision = result.repo_id, result.revision
    echo(f"Uploading to {repo_id}{f' (branch {revision})' if revision else ''} in one commit...")
    result.repo_url, info = _upload(
        files, repo_id, private=private, revision=revision, commit_message=commit_message, token=token
    )
    result.commit_url, result.commit_oid = getattr(info, "commit_url", None), getattr(info, "oid", None)
    echo(f"Committed {result.commit_oid}: {result.commit_url}")
    trust = "trust_remote_code=True, " if custom_code else ""
    echo(
        f"Load it with: AutoModelForTokenClassification.from_pretrained({repo_id!r}, {trust}"
        f"revision={result.commit_oid!r})"
    )


# --- train --push-to-hub -----------------------------------------------------------------------


def push_request(training_args: Any) -> dict[str, Any] | None:
    """Takes ``--push-to-hub`` away from the Trainer and returns `push_to_hub`'s arguments, or None.

    The Trainer would push checkpoints itself, unverified and with files we do not share; `train`
    pushes the final folder through `push_to_hub` instead. Checks ``hub_model_id`` and the token now,
    before any training, and sets ``training_args.push_to_hub = False``.
    """
    if not getattr(training_args, "push_to_hub", False):
        return None
    repo_id = getattr(training_args, "hub_model_id", None)
    if not repo_id:
        raise ValueError("--push-to-hub needs --hub-model-id OWNER/NAME: the Hub repository to create or update.")
    check_repo_id(repo_id)
    token = resolve_token(getattr(training_args, "hub_token", None))
    check_online()
    training_args.push_to_hub = False
    return {
        "repo_id": repo_id,
        "private": bool(getattr(training_args, "hub_private_repo", None)),
        "revision": getattr(training_args, "hub_revision", None),
        "token": token,
    }

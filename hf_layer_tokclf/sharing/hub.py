"""Sharing a trained model on the Hugging Face Hub: stage, verify like a stranger, upload in one commit.

`push_to_hub` is what ``push_to_hub.py``, ``hf-layer-tokclf push`` and ``hf-layer-tokclf train
--push-to-hub`` run:

1. `stage` copies what a Hub model repository needs, and nothing else, into a folder of its own:
   the safetensors weights, ``config.json`` (with ``auto_map`` and ``custom_pipelines``), the three
   code files, the tokenizer files, and a ``README.md`` model card rendered for the repository id.
   Optimizer states, checkpoints, logs, ``metrics.json``, tokens and dotfiles stay behind: the list is an allow-list.
2. `verify` loads the staged folder in a fresh Python process where this package cannot be
   imported (`remote_check.run_remote_check`: Auto classes and the pipeline, with remote code) and
   compares it with the source folder loaded here by the installed package: same token ids, logits
   within 1e-5, same entities with character offsets, no warning about weights. The staged code
   files must also be byte-identical to the installed package's: the verification vouches for the
   code people will run, and an edited file could change nothing in the logits and still do
   anything else. A model saved by another version of this package is refused with the way out
   (load it with this version and ``save_pretrained`` it again, which rewrites the code files).
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
import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.files import copy_file
from ..base.locations import check_model_folder, check_repo_id, no_such_folder

# The model folder's file names, shared with what --overwrite-output-dir may replace.
from ..base.manifest import (
    CARD,
    CODE_FILES,
    CONFIG,
    METRICS,
    SHARD,
    TOKENIZER_FILES,
    WEIGHTS,
    WEIGHTS_INDEX,
    is_bookkeeping,
)
from ..base.outputs import OutputClaim, Outputs, claim_output_dir
from ..base.redaction import remember_secret, scrub_tree

__all__ = [
    "SAMPLE",
    "HubError",
    "PushResult",
    "VerificationError",
    "check_online",
    "check_repo_id",
    "push_request",
    "push_to_hub",
    "resolve_token",
    "stage",
    "verify",
]

SAMPLE = "Germline mutations in BRCA1 cause hereditary breast and ovarian cancer."
MODEL_DIR = Path(__file__).resolve().parent.parent / "model"  # the travelling files


def expected_auto_map(model_type: str | None, where: Any = None) -> dict[str, str]:
    """What save_pretrained writes for the classes of a family (by ``model_type``).

    Another module there would be code we did not check.
    """
    from ..model.auto import family_of

    family = family_of(model_type, where)
    return {
        "AutoConfig": f"configuration_layer_tokclf.{family.config_class.__name__}",
        "AutoModelForTokenClassification": f"modeling_layer_tokclf.{family.classifier_class.__name__}",
        "AutoModel": f"modeling_layer_tokclf.{family.encoder_class.__name__}",
    }


ATOL = 1e-5
SCORE_ATOL = 1e-4
# Warnings from loading that mean the staged model is not the trained one.
BAD_WARNING = re.compile(
    r"newly initiali[sz]ed|not initiali[sz]ed|were not used|not used when|missing|unexpected|mismatch"
    r"|model of type|random",
    re.IGNORECASE,
)


class VerificationError(ValueError):
    """The staged folder is not the model it was made from (or cannot be loaded like a stranger would)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


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


def _is_allowed(name: str) -> bool:
    return name in (WEIGHTS, WEIGHTS_INDEX, CONFIG, *CODE_FILES, *TOKENIZER_FILES, CARD) or bool(SHARD.match(name))


def _is_stock_allowed(name: str) -> bool:
    """The stock form's files: no code, and the tokenizer files transformers 4.x also writes."""
    from ..running.stock_export import STOCK_TOKENIZER_FILES

    return (_is_allowed(name) and name not in CODE_FILES) or name in STOCK_TOKENIZER_FILES


def _is_staged(name: str) -> bool:
    return _is_allowed(name) or _is_stock_allowed(name)


# A staging folder holds the staged files and nothing else (one staged before manifests: config.json among them).
STAGING_OUTPUTS = Outputs(
    "push",
    _is_staged,
    legacy=lambda folder: (folder / CONFIG).is_file(),
    exclusive=True,
    flag="--overwrite-staging-dir",
)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not readable JSON: {error}") from None


def _check_auto_map(config: dict[str, Any], where: Path) -> None:
    auto_map = config.get("auto_map")
    if not isinstance(auto_map, dict) or not auto_map:
        raise ValueError(
            f"{where} has no auto_map: it is not a model saved by hf_layer_tokclf "
            "(`save_pretrained` of its layer classifier writes one), so nobody could load it with "
            "trust_remote_code=True."
        )
    expected = expected_auto_map(config.get("model_type"), where)
    wrong = {key: value for key, value in auto_map.items() if expected.get(key) != value}
    if wrong or not {"AutoConfig", "AutoModelForTokenClassification"} <= auto_map.keys():
        raise ValueError(
            f"{where}: auto_map must point at this package's code files ({json.dumps(expected)}); "
            f"it has {json.dumps(auto_map)}."
        )


def _weight_files(source: Path) -> list[str]:
    if (source / WEIGHTS).is_file():
        return [WEIGHTS]
    if (source / WEIGHTS_INDEX).is_file():
        index = _read_json(source / WEIGHTS_INDEX)
        shards = sorted(set((index.get("weight_map") or {}).values()))
        bad = [name for name in shards if not SHARD.match(str(name))]
        missing = [name for name in shards if name not in bad and not (source / name).is_file()]
        if not shards or bad or missing:
            raise ValueError(f"{source / WEIGHTS_INDEX}: shards missing or misnamed: {bad + missing or 'none listed'}.")
        return [WEIGHTS_INDEX, *shards]
    if any(source.glob("*.bin")) or any(source.glob("*.pt")):
        raise ValueError(
            f"{source} holds PyTorch pickle weights only (.bin/.pt). Only safetensors are shared: pickles can run "
            "code when loaded. Load the model and save_pretrained it again (safetensors is the default)."
        )
    raise ValueError(f"{source} holds no model weights ({WEIGHTS}).")


def _select(source: Path) -> list[str]:
    """The names of the files to share from ``source``; a ``ValueError`` if one is missing or unsafe."""
    if not source.is_dir():
        raise ValueError(f"{source} is not a folder." if source.exists() else no_such_folder(source))
    links = sorted(p.name for p in source.iterdir() if p.is_symlink() and (_is_staged(p.name) or p.name == METRICS))
    if links:  # never followed: a link could point at any file of this machine, which would then be uploaded
        raise ValueError(
            f"{source}: {', '.join(links)} {'is a symlink' if len(links) == 1 else 'are symlinks'}; push shares "
            "regular files only. Replace the link by a copy of the file."
        )
    check_model_folder(source, CONFIG)
    _check_auto_map(_read_json(source / CONFIG), source / CONFIG)
    weights = _weight_files(source)
    missing = [name for name in CODE_FILES if not (source / name).is_file()]
    if missing:
        raise ValueError(f"{source} lacks {', '.join(missing)}: the remote code would not load.")
    tokenizer = [name for name in TOKENIZER_FILES if (source / name).is_file()]
    if "tokenizer_config.json" not in tokenizer or not {"tokenizer.json", "vocab.txt"} & set(tokenizer):
        raise ValueError(f"{source} holds no tokenizer (tokenizer_config.json with tokenizer.json or vocab.txt).")
    if "auto_map" in _read_json(source / "tokenizer_config.json"):
        raise ValueError(f"{source / 'tokenizer_config.json'} has an auto_map: custom tokenizer code is not shared.")
    return [*weights, CONFIG, *CODE_FILES, *tokenizer]


def _prepare_staging(staging_dir: Path, source: Path, overwrite: bool) -> OutputClaim:
    """Claims the staging folder (`files.claim_output_dir`): new or empty, or (``overwrite``) one a previous
    staging filled, emptied of what it staged; anything else there is refused."""
    target, origin = staging_dir.resolve(), source.resolve()
    if target == origin or origin in target.parents or target in origin.parents:
        raise ValueError(f"The staging folder {staging_dir} must be outside the model folder {source} and vice versa.")
    return claim_output_dir(staging_dir, STAGING_OUTPUTS, overwrite=overwrite)


# --- stage and verify --------------------------------------------------------------------------


def stage(
    model_dir: str | Path,
    staging_dir: str | Path,
    repo_id: str | None = None,
    *,
    overwrite: bool = False,
    custom_code: bool = True,
) -> list[Path]:
    """Copies the files to share from ``model_dir`` into ``staging_dir`` and renders the card there.

    Copied: the safetensors weights (one file, or shards and their index), ``config.json`` (it must
    have this package's ``auto_map``), the three code files, and the tokenizer files present among
    ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``, ``vocab.txt``,
    ``added_tokens.json``. ``README.md`` is rendered anew from ``metrics.json`` (if any) for
    ``repo_id``. A folder with pickle weights only, or without code or tokenizer, is refused.
    ``staging_dir`` must be new or empty; ``overwrite`` empties a folder a previous staging filled.
    ``custom_code=False`` stages the stock form instead (`stock_export.save_stock_form`: weights,
    ``config.json`` without ``auto_map``, tokenizer; no code files), with the card saying so.
    Returns the staged paths, sorted.
    """
    from ..running.stock_export import save_stock_form
    from .model_card import write_model_card

    source = Path(model_dir)
    names = _select(source)
    with _prepare_staging(Path(staging_dir), source, overwrite) as claim:
        target = claim.path
        if custom_code:
            for name in names:
                copy_file(source / name, target / name)  # regular files only, never through a symlink
        else:
            save_stock_form(source, target)
            names = [path.name for path in target.iterdir() if not is_bookkeeping(path.name)]
        metrics = _read_json(source / METRICS) if (source / METRICS).is_file() else {}
        # Rendered from the source's config: the stock config no longer says which layer of how many it is.
        write_model_card(source, metrics, out_dir=target, repo_id=repo_id, custom_code=custom_code)
        scrub_tree(target)  # nothing uploaded holds a secret the process knows (our copies; the source is untouched)
        claim.finish()
    return sorted(target / name for name in {*names, CARD})


def _source_outputs(source: Path, text: str, decoding: str | None = None) -> dict[str, Any]:
    """The source folder through the installed package, in this process: ids, logits, entities, depth.

    ``decoding``: how the entities are decoded (default: as the pipeline the model ships; ``"argmax"``
    as the stock pipeline).
    """
    import torch

    from ..model.auto import AutoModelForLayerTokenClassification, family_of
    from ..model.tokenization import load_tokenizer
    from ..running.decoding import DEFAULT_DECODING
    from ..running.texts import predict_texts

    try:
        model, info = AutoModelForLayerTokenClassification.from_pretrained(str(source), output_loading_info=True)
        tokenizer = load_tokenizer(source)
    except Exception as error:  # a truncated or garbled file fails in safetensors, json, tokenizers...
        raise VerificationError(f"The model in {source} does not load: {type(error).__name__}: {error}") from error
    bad = {key: sorted(info[key]) for key in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(key)}
    if bad:
        raise VerificationError(f"The weights in {source} do not fit the model: {bad}")
    model.eval()
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits[0]
    return {
        "input_ids": encoded["input_ids"][0].tolist(),
        "logits": logits,
        # What `predict` finds (with --decoding argmax, what the stock pipeline finds).
        "entities": next(predict_texts(model, tokenizer, [text], decoding=decoding or DEFAULT_DECODING)),
        "num_layers_built": len(model.encoder_layers),
        "auto_map": expected_auto_map(model.config.model_type),
        "stock_class": family_of(model.config.model_type).stock_class_name,
    }


def _check_folder(staging: Path, custom_code: bool = True) -> None:
    """Cheap checks first: the file set, the code files (or none), config and card metadata."""
    from huggingface_hub import ModelCard

    if not staging.is_dir():
        raise VerificationError(f"{staging} is not a folder.")
    names = sorted(p.name for p in staging.iterdir() if not is_bookkeeping(p.name))
    allowed = _is_allowed if custom_code else _is_stock_allowed
    extra = [name for name in names if not allowed(name) or not (staging / name).is_file()]
    missing = [name for name in (CONFIG, *(CODE_FILES if custom_code else ()), CARD) if name not in names]
    if not ({WEIGHTS, WEIGHTS_INDEX} & set(names)):
        missing.append(WEIGHTS)
    if extra or missing:
        raise VerificationError(f"{staging}: unexpected files {extra}, missing files {missing}.")
    if custom_code:
        _check_code(staging)
    else:
        code = [key for key in ("auto_map", "custom_pipelines") if key in _read_json(staging / CONFIG)]
        if code:
            raise VerificationError(f"{staging / CONFIG} has {', '.join(code)}: the stock form runs no custom code.")
    data = ModelCard((staging / CARD).read_text(encoding="utf-8")).data
    if data.library_name != "transformers" or data.pipeline_tag != "token-classification":
        raise VerificationError(f"{staging / CARD}: the card metadata lacks library_name / pipeline_tag.")


def _check_code(staging: Path) -> None:
    """The staged code files are the installed package's, byte for byte, and ``auto_map`` names them."""
    for name in CODE_FILES:
        if (staging / name).read_bytes() != (MODEL_DIR / name).read_bytes():
            raise VerificationError(
                f"{name} in {staging} is not the installed hf_layer_tokclf's {name}: the file was edited, or the "
                "model was saved by another version. Re-save it with this version "
                "(AutoModelForLayerTokenClassification.from_pretrained(DIR).save_pretrained(DIR) rewrites the code "
                "files), or share it with the version that made it."
            )
    try:
        _check_auto_map(_read_json(staging / CONFIG), staging / CONFIG)
    except ValueError as error:
        raise VerificationError(str(error)) from None


def verify(
    staging_dir: str | Path,
    source_dir: str | Path,
    text: str = SAMPLE,
    *,
    python_path: str | None = None,
    custom_code: bool = True,
) -> dict[str, Any]:
    """Checks that the staged folder, loaded by a stranger, is the model in ``source_dir``.

    ``source_dir`` is loaded here with the installed package; ``staging_dir`` in a fresh process
    where it cannot be imported, through ``AutoConfig`` / ``AutoTokenizer`` /
    ``AutoModelForTokenClassification`` / ``AutoModel`` / ``pipeline`` with ``trust_remote_code``
    (``python_path``: another transformers, see `run_remote_check`). The staged files must be
    exactly the allowed ones, the code files byte-identical to this package's, the card's metadata
    readable; then token ids equal, logits within 1e-5, the same entities (type, offsets, word; score
    within 1e-4) with character offsets, and no loading warning about weights. Raises
    `VerificationError` listing what differed; returns the fresh process's report plus
    ``max_abs_diff``.

    ``custom_code=False`` checks a staged stock form (`stage(..., custom_code=False)`): no code files
    and no ``auto_map``; loaded in a fresh ``python -I`` without ``trust_remote_code``
    (`plain_check.run_plain_check`; ``python_path`` does not apply), it must give the family's stock
    class with as many layers as the source builds, and the source's entities decoded as the stock
    pipeline decodes them (argmax per token).
    """
    staging, source = Path(staging_dir), Path(source_dir)
    _check_folder(staging, custom_code)
    expected = _source_outputs(source, text, decoding=None if custom_code else "argmax")
    report = _fresh_report(staging, text, python_path, custom_code)
    problems = _class_problems(report, expected) if custom_code else _stock_class_problems(report, expected)
    logit_problems, max_diff = _logit_problems(report, expected)
    problems += logit_problems + _entity_problems(report, expected, text)
    bad_warnings = [warning for warning in report.get("warnings", []) if BAD_WARNING.search(warning)]
    if bad_warnings:
        problems.append(f"loading warned: {bad_warnings}")
    if problems:
        raise VerificationError(
            f"The staged folder {staging} is not the model in {source}: " + "; ".join(problems) + ".", problems
        )
    return {**report, "max_abs_diff": max_diff}


def _fresh_report(staging: Path, text: str, python_path: str | None, custom_code: bool) -> dict[str, Any]:
    """The staged folder loaded in a fresh process: through remote code, or (stock form) plainly."""
    from .plain_check import run_plain_check
    from .remote_check import run_remote_check

    try:
        if custom_code:
            return run_remote_check(staging, text, python_path=python_path)
        return run_plain_check(staging, text)
    except RuntimeError as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        how = "through remote code" if custom_code else "with plain transformers (no trust_remote_code)"
        raise VerificationError(f"The staged folder does not load {how}: {lines[-1]}") from error


def _stock_class_problems(report: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """The plain Auto class must give transformers' own class, as deep as the source, with nothing of ours."""
    problems = []
    found = f"{report.get('model_module')}.{report.get('model_class')}"
    if report.get("model_class") != expected["stock_class"] or not found.startswith("transformers."):
        problems.append(f"AutoModelForTokenClassification gave {found}, not transformers' {expected['stock_class']}")
    if report.get("num_hidden_layers") != expected["num_layers_built"]:
        problems.append(f"{report.get('num_hidden_layers')} layers, not {expected['num_layers_built']}")
    if report.get("imported_ours"):
        problems.append(f"loading it imported {report['imported_ours']}")
    return problems


def _class_problems(report: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """The Auto classes must give this package's classes, building as many layers as the source model."""
    problems = []
    classes = {key: value.split(".")[-1] for key, value in expected["auto_map"].items()}
    if report.get("config_class") != classes["AutoConfig"] or report.get("auto_model_class") != classes["AutoModel"]:
        problems.append(f"the Auto classes gave {report.get('config_class')} / {report.get('auto_model_class')}")
    if report.get("model_class") != classes["AutoModelForTokenClassification"]:
        problems.append(f"AutoModelForTokenClassification gave {report.get('model_class')}")
    if report.get("num_layers_built") != expected["num_layers_built"]:
        problems.append(f"{report.get('num_layers_built')} layers built, not {expected['num_layers_built']}")
    return problems


def _logit_problems(report: dict[str, Any], expected: dict[str, Any]) -> tuple[list[str], float]:
    """Same token ids, then logits within `ATOL`; returns the problems and the largest difference (inf if none)."""
    import torch

    if report["input_ids"] != expected["input_ids"]:
        return ["the staged tokenizer gives other token ids"], math.inf
    logits = torch.tensor(report["logits"])
    if logits.shape != expected["logits"].shape:
        return [f"the logits have shape {list(logits.shape)}, not {list(expected['logits'].shape)}"], math.inf
    max_diff = float((logits - expected["logits"]).abs().max())
    if not max_diff <= ATOL:  # NaN fails too
        return [f"the logits differ (max |difference| {max_diff:.3g} > {ATOL:g})"], max_diff
    return [], max_diff


def _entity_problems(report: dict[str, Any], expected: dict[str, Any], text: str) -> list[str]:
    """The pipeline's entities: offsets inside ``text``, and the source's entities (scores within `SCORE_ATOL`)."""
    problems = []
    entities, want = report["entities"], expected["entities"]
    for entity in entities:
        start, end = entity.get("start"), entity.get("end")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            problems.append(f"the pipeline gave an entity without character offsets: {entity}")
            break
    key = ("entity_group", "start", "end", "word")
    if [tuple(e.get(k) for k in key) for e in entities] != [tuple(e.get(k) for k in key) for e in want] or any(
        abs(a["score"] - b["score"]) > SCORE_ATOL for a, b in zip(entities, want, strict=False)
    ):
        problems.append(f"the pipeline found {entities}, the source model {want}")
    return problems


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
    from .. import __version__

    remember_secret(token)
    token = _check_push(repo_id, revision, dry_run, token)
    source = Path(model_dir)
    _select(source)  # a folder we cannot share fails before a staging folder appears
    if not custom_code:
        _check_stock_form(source)
    temporary = staging_dir is None
    folder = Path(tempfile.mkdtemp(prefix="hf-layer-tokclf-push-")) if temporary else Path(staging_dir)
    keep = dry_run or not temporary
    try:
        files = stage(source, folder, repo_id=repo_id, overwrite=overwrite_staging, custom_code=custom_code)
        how = "remote code" if custom_code else "the stock form, no trust_remote_code"
        echo(f"Verifying {folder} in a fresh Python process ({how}, no hf_layer_tokclf)...")
        try:
            report = verify(folder, source, text, custom_code=custom_code)
        except VerificationError as error:
            where = f" The staged folder stays at {folder}." if keep else ""
            raise VerificationError(f"{error} Nothing was uploaded.{where}", error.problems) from error
        sizes = [(path.name, path.stat().st_size) for path in files]
        _echo_verified(sizes, repo_id, report, echo)
        result = PushResult(repo_id, folder, sizes, report, dry_run, revision)
        if dry_run:
            echo(f"Dry run: nothing was uploaded. The staged folder is {folder}")
            return result
        form = "" if custom_code else ", stock form without custom code"
        message = commit_message or f"Upload {source.resolve().name} (hf-layer-tokclf {__version__}{form})"
        _commit(result, files, private=private, commit_message=message, token=token, echo=echo, custom_code=custom_code)
        return result
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def _check_stock_form(source: Path) -> None:
    """A `stock_export.NotExportableError` (a ValueError) now, for a model without an exact stock form."""
    from ..model.auto import AutoLayerConfig
    from ..running.stock_export import check_exportable

    check_exportable(AutoLayerConfig.from_pretrained(str(source)), source)


def _check_push(repo_id: str, revision: str | None, dry_run: bool, token: str | None) -> str | None:
    """The repository id and branch, and (unless a dry run) the token and the network: all before any work."""
    check_repo_id(repo_id)
    if revision is not None and not str(revision).strip():
        raise ValueError("--revision must name a branch.")
    if not dry_run:
        token = resolve_token(token)
        check_online()
    return token


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

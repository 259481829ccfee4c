"""Staging a model folder for the Hub: what a model repository holds, and nothing else, in a folder of its own.

`stage` copies the safetensors weights, ``config.json`` (with ``auto_map`` and ``custom_pipelines``), the three
code files, the tokenizer files, and renders a ``README.md`` model card for the repository id. Optimizer states,
checkpoints, logs, ``metrics.json``, tokens and dotfiles stay behind: the list is an allow-list (`is_allowed`;
`is_stock_allowed` for the stock form, ``custom_code=False``). `select_files` checks a folder can be shared
before anything is written; `check_auto_map` holds a config to this package's code files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..base.files import copy_file
from ..base.locations import check_model_folder, no_such_folder

# The model folder's file names, shared with what --overwrite-output-dir may replace.
from ..base.manifest import (
    CARD,
    CONFIG,
    METRICS,
    SHARD,
    TOKENIZER_FILES,
    TRAVELLING_FILES,
    WEIGHTS,
    WEIGHTS_INDEX,
    code_files_of,
    is_bookkeeping,
)
from ..base.outputs import OutputClaim, Outputs, claim_output_dir
from ..base.redaction import scrub_tree

__all__ = [
    "STAGING_OUTPUTS",
    "check_auto_map",
    "expected_auto_map",
    "is_allowed",
    "is_stock_allowed",
    "read_json",
    "select_files",
    "stage",
]


def expected_auto_map(model_type: str | None, where: Any = None) -> dict[str, str]:
    """What save_pretrained writes for the classes of a family (by ``model_type``).

    Another module there would be code we did not check.
    """
    from ..model.auto import family_of, is_multitask

    family = family_of(model_type, where)
    if is_multitask({"model_type": model_type}):
        return {
            "AutoConfig": f"configuration_layer_tokclf.{family.multitask_config_class.__name__}",
            "AutoModelForTokenClassification": f"modeling_multitask_layer_tokclf.{family.multitask_class.__name__}",
        }
    return {
        "AutoConfig": f"configuration_layer_tokclf.{family.config_class.__name__}",
        "AutoModelForTokenClassification": f"modeling_layer_tokclf.{family.classifier_class.__name__}",
        "AutoModel": f"modeling_layer_tokclf.{family.encoder_class.__name__}",
    }


def is_allowed(name: str) -> bool:
    """Whether a file of this name is shared: the weights (or shards and index), config, code, tokenizer and card."""
    return name in (WEIGHTS, WEIGHTS_INDEX, CONFIG, *TRAVELLING_FILES, *TOKENIZER_FILES, CARD) or bool(
        SHARD.match(name)
    )


def is_stock_allowed(name: str) -> bool:
    """The stock form's files: no code, and the tokenizer files transformers 4.x also writes."""
    from ..running.stock_export import STOCK_TOKENIZER_FILES

    return (is_allowed(name) and name not in TRAVELLING_FILES) or name in STOCK_TOKENIZER_FILES


def _is_staged(name: str) -> bool:
    return is_allowed(name) or is_stock_allowed(name)


# A staging folder holds the staged files and nothing else (one staged before manifests: config.json among them).
STAGING_OUTPUTS = Outputs(
    "push",
    _is_staged,
    legacy=lambda folder: (folder / CONFIG).is_file(),
    exclusive=True,
    flag="--overwrite-staging-dir",
)


def read_json(path: Path) -> Any:
    """The JSON in ``path``; a ``ValueError`` naming the file if it cannot be read or parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not readable JSON: {error}") from None


def check_auto_map(config: dict[str, Any], where: Path) -> None:
    """A ``ValueError`` unless ``config``'s ``auto_map`` points at this package's code files (`expected_auto_map`)."""
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
        index = read_json(source / WEIGHTS_INDEX)
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


def select_files(source: Path) -> list[str]:
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
    check_auto_map(read_json(source / CONFIG), source / CONFIG)
    weights = _weight_files(source)
    code = code_files_of(read_json(source / CONFIG))
    missing = [name for name in code if not (source / name).is_file()]
    if missing:
        raise ValueError(f"{source} lacks {', '.join(missing)}: the remote code would not load.")
    tokenizer = [name for name in TOKENIZER_FILES if (source / name).is_file()]
    if "tokenizer_config.json" not in tokenizer or not {"tokenizer.json", "vocab.txt"} & set(tokenizer):
        raise ValueError(f"{source} holds no tokenizer (tokenizer_config.json with tokenizer.json or vocab.txt).")
    if "auto_map" in read_json(source / "tokenizer_config.json"):
        raise ValueError(f"{source / 'tokenizer_config.json'} has an auto_map: custom tokenizer code is not shared.")
    return [*weights, CONFIG, *code, *tokenizer]


def _prepare_staging(staging_dir: Path, source: Path, overwrite: bool) -> OutputClaim:
    """Claims the staging folder (`outputs.claim_output_dir`): new or empty, or (``overwrite``) one a previous
    staging filled, emptied of what it staged; anything else there is refused."""
    target, origin = staging_dir.resolve(), source.resolve()
    if target == origin or origin in target.parents or target in origin.parents:
        raise ValueError(f"The staging folder {staging_dir} must be outside the model folder {source} and vice versa.")
    return claim_output_dir(staging_dir, STAGING_OUTPUTS, overwrite=overwrite)


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
    names = select_files(source)
    with _prepare_staging(Path(staging_dir), source, overwrite) as claim:
        target = claim.path
        if custom_code:
            for name in names:
                copy_file(source / name, target / name)  # regular files only, never through a symlink
        else:
            save_stock_form(source, target)
            names = [path.name for path in target.iterdir() if not is_bookkeeping(path.name)]
        metrics = read_json(source / METRICS) if (source / METRICS).is_file() else {}
        # Rendered from the source's config: the stock config no longer says which layer of how many it is.
        write_model_card(source, metrics, out_dir=target, repo_id=repo_id, custom_code=custom_code)
        scrub_tree(target)  # nothing uploaded holds a secret the process knows (our copies; the source is untouched)
        claim.finish()
    return sorted(target / name for name in {*names, CARD})

"""Verifying a staged folder like a stranger: `verify` loads it in a fresh process and compares it with the source.

The staged folder is loaded where this package cannot be imported (`remote_check.run_remote_check`: Auto classes
and the pipeline, with remote code) and compared with the source folder loaded here by the installed package:
same token ids, logits within 1e-5, same entities with character offsets, no warning about weights. The staged
code files must also be byte-identical to the installed package's: the verification vouches for the code people
will run, and an edited file could change nothing in the logits and still do anything else. A model saved by
another version of this package is refused with the way out (load it with this version and ``save_pretrained`` it
again, which rewrites the code files).

The stock form (``custom_code=False``) is verified in a fresh process without ``trust_remote_code``
(`plain_check.run_plain_check`) against the source model decoded as the stock pipeline decodes (argmax per token).
A folder that does not match raises `VerificationError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..base.manifest import CARD, CONFIG, WEIGHTS, WEIGHTS_INDEX, code_files_of, is_bookkeeping
from .staging import check_auto_map, expected_auto_map, is_allowed, is_stock_allowed, read_json

__all__ = ["BAD_WARNING", "SAMPLE", "VerificationError", "verify"]

SAMPLE = "Germline mutations in BRCA1 cause hereditary breast and ovarian cancer."
MODEL_DIR = Path(__file__).resolve().parent.parent / "model"  # the travelling files

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
        scores = model(**encoded).logits
    # A multi-task model's logits: a dict, task name -> scores.
    logits = {name: task[0] for name, task in scores.items()} if isinstance(scores, dict) else scores[0]
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
    allowed = is_allowed if custom_code else is_stock_allowed
    extra = [name for name in names if not allowed(name) or not (staging / name).is_file()]
    code = code_files_of(read_json(staging / CONFIG)) if custom_code and CONFIG in names else ()
    missing = [name for name in (CONFIG, *code, CARD) if name not in names]
    if not ({WEIGHTS, WEIGHTS_INDEX} & set(names)):
        missing.append(WEIGHTS)
    if extra or missing:
        raise VerificationError(f"{staging}: unexpected files {extra}, missing files {missing}.")
    if custom_code:
        _check_code(staging)
    else:
        code = [key for key in ("auto_map", "custom_pipelines") if key in read_json(staging / CONFIG)]
        if code:
            raise VerificationError(f"{staging / CONFIG} has {', '.join(code)}: the stock form runs no custom code.")
    data = ModelCard((staging / CARD).read_text(encoding="utf-8")).data
    if data.library_name != "transformers" or data.pipeline_tag != "token-classification":
        raise VerificationError(f"{staging / CARD}: the card metadata lacks library_name / pipeline_tag.")


def _check_code(staging: Path) -> None:
    """The staged code files are the installed package's, byte for byte, and ``auto_map`` names them."""
    for name in code_files_of(read_json(staging / CONFIG)):
        if (staging / name).read_bytes() != (MODEL_DIR / name).read_bytes():
            raise VerificationError(
                f"{name} in {staging} is not the installed hf_layer_tokclf's {name}: the file was edited, or the "
                "model was saved by another version. Re-save it with this version "
                "(AutoModelForLayerTokenClassification.from_pretrained(DIR).save_pretrained(DIR) rewrites the code "
                "files), or share it with the version that made it."
            )
    try:
        check_auto_map(read_json(staging / CONFIG), staging / CONFIG)
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
    encoder = classes.get("AutoModel")  # a multi-task model has no encoder-only class
    if report.get("config_class") != classes["AutoConfig"] or report.get("auto_model_class") != encoder:
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
    want, got = expected["logits"], report["logits"]
    tasks = [sorted(logits) if isinstance(logits, dict) else None for logits in (got, want)]
    if tasks[0] != tasks[1]:  # a multi-task model's logits are a dict: task name -> scores
        return [f"the logits are of tasks {tasks[0]}, not {tasks[1]}"], math.inf
    pairs = [(f"task {name}'s ", got[name], want[name]) for name in want] if tasks[1] else [("", got, want)]
    max_diff = 0.0
    for what, reported, expected_logits in pairs:
        logits = torch.tensor(reported)
        if logits.shape != expected_logits.shape:
            return [f"{what}logits have shape {list(logits.shape)}, not {list(expected_logits.shape)}"], math.inf
        diff = float((logits - expected_logits).abs().max())
        max_diff = max(max_diff, diff)
        if not diff <= ATOL:  # NaN fails too
            return [f"the {what}logits differ (max |difference| {diff:.3g} > {ATOL:g})"], diff
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
    key = ("entity_group", "start", "end", "word", "task")  # a multi-task model's entities say their task
    if [tuple(e.get(k) for k in key) for e in entities] != [tuple(e.get(k) for k in key) for e in want] or any(
        abs(a["score"] - b["score"]) > SCORE_ATOL for a, b in zip(entities, want, strict=False)
    ):
        problems.append(f"the pipeline found {entities}, the source model {want}")
    return problems

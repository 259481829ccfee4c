"""The stock form of a layer classifier: transformers' own ``*ForTokenClassification``, no custom code.

A model reading one layer ``k`` (no pooling over several layers, no CRF) computes exactly what the
family's stock classifier computes when it is built with ``num_hidden_layers=k``: the same backbone
class cut after layer ``k``, then dropout and a linear head. `export_transformers` writes that form::

    OUT_DIR/model.safetensors         the k layers, the embeddings and the head, under the stock names
    OUT_DIR/config.json               the backbone's config with num_hidden_layers=k: no auto_map,
                                      no custom_pipelines, no hidden_layer / layer_pooling / use_crf
    OUT_DIR/tokenizer.json ...        the tokenizer files
    OUT_DIR/transformers_export.json  how it was made: source, layer, largest logit difference

so that ``AutoModelForTokenClassification.from_pretrained(OUT_DIR)`` and ``pipeline("token-classification",
model=OUT_DIR)`` load it with no ``trust_remote_code`` and no ``hf_layer_tokclf``, on transformers 4.57 and 5.x
(EuroBERT: 5.x only). What it loses: the stock pipeline decodes each token on its own (argmax), so label
sequences the scheme forbids (``O I-X``) are possible, where this package's pipeline decodes valid ones.

Which families are exact (checked against transformers 4.57.6 and 5.24; `stock_form_problem` refuses
the rest, saying why): BERT, RoBERTa, XLM-R, ELECTRA and DeBERTa-v2 at any layer (DeBERTa from layer 1),
EuroBERT at its last layer only, ModernBERT never (see `stock_form_problem`). Every export is checked
before it is moved into place: the folder is loaded back with the plain Auto class and its logits must
equal the source model's within `MAX_DIFF`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..base.files import write_json
from ..base.locations import check_model_location
from ..base.manifest import CONFIG, SHARD, TOKENIZER_FILES, WEIGHTS, WEIGHTS_INDEX, output_names
from ..base.outputs import Outputs, atomic_folder, claim_output_dir
from ..model.auto import AutoLayerConfig, Family, family_of, is_multitask
from ..model.tokenization import save_tokenizer

__all__ = [
    "EXPORT_INFO",
    "MAX_DIFF",
    "ExportMismatchError",
    "NotExportableError",
    "check_exportable",
    "export_transformers",
    "save_stock_form",
    "stock_config",
    "stock_form_problem",
    "stock_form_reason",
    "stock_model",
]

EXPORT_INFO = "transformers_export.json"
# The same weights through the same modules: anything above float32 noise means a wrong mapping.
MAX_DIFF = 1e-5
# What save_pretrained of a model and a tokenizer may write (4.57 also writes the slow tokenizers' files).
STOCK_TOKENIZER_FILES = (*TOKENIZER_FILES, "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spm.model")
# A folder of an older version (no manifest) is an export if it has transformers_export.json; it holds nothing else.
STOCK_OUTPUTS = Outputs(
    "export-transformers",
    output_names((WEIGHTS, WEIGHTS_INDEX, CONFIG, EXPORT_INFO, *STOCK_TOKENIZER_FILES), (SHARD,)),
    legacy=lambda folder: (folder / EXPORT_INFO).is_file(),
    exclusive=True,
    flag="--overwrite",
)
# Fields of our configs that the stock class does not know, and the ones that would make it run code.
LAYER_FIELDS = ("hidden_layer", "layer_pooling", "use_crf")
CODE_FIELDS = ("auto_map", "custom_pipelines")
SAMPLE_TEXTS = (
    "Germline mutations in BRCA1 cause hereditary breast and ovarian cancer.",
    "Ataxia-telangiectasia is rare.",
    "The risk of colorectal cancer in HNPCC families, and of endometrial cancer, is high.",
)
SHARE_WITH_CODE = "share it with its code instead (push without --no-custom-code, or export-onnx for serving)"


class NotExportableError(ValueError):
    """The model has no exact stock ``*ForTokenClassification`` equivalent; the message says why."""


class ExportMismatchError(RuntimeError):
    """The stock form does not compute the source model's logits: a bug, never a file to share."""


def stock_form_reason(config: Any) -> str | None:
    """Why a layer classifier with this config is not a stock ``*ForTokenClassification``, or None if it is.

    ``config`` is one of our layer configs (installed or remote-code class: only its fields are read). The
    reason alone, for any export to state (`stock_form_problem` adds what to do instead of a stock export).
    """
    import transformers

    if is_multitask(config):
        tasks = ", ".join(f"{name!r} at layer {task['hidden_layer']}" for name, task in config.tasks.items())
        return (
            f"it is a multi-task model, one head per task ({tasks}), each with its own labels, and no stock "
            "transformers class has several heads (a *ForTokenClassification has one classifier over one label set)"
        )
    family = family_of(config.model_type)
    stock, layers, depth = family.stock_class_name, config.layers, config.num_hidden_layers
    if len(layers) > 1:
        return (
            f"it combines hidden_layer={layers} by layer_pooling={config.layer_pooling!r}, and the stock {stock} "
            "reads one layer (its last)"
        )
    if getattr(config, "use_crf", False):
        return (
            f"it has a CRF head (use_crf=True), and the stock {stock} has none: it decodes each token on its own "
            "(argmax), so the model's learned label transitions would be lost"
        )
    if getattr(transformers, stock, None) is None:
        return f"transformers {transformers.__version__} has no {stock}"
    k = layers[0]
    if family.backbone_type == "modernbert":
        return (
            f"the stock {stock} runs the final norm and a prediction head (dense, activation, norm) before its "
            f"classifier, and this model reads layer {k} with dropout and a linear head only, so no stock "
            "ModernBERT computes its logits"
        )
    if family.backbone_type == "eurobert" and k < depth:
        return (
            f"EuroBertModel applies its final norm after its last layer, and this model reads the raw output of "
            f"layer {k} of {depth}, so a {k}-layer {stock} would compute something else (only hidden_layer={depth}, "
            "the last, is exact)"
        )
    if family.backbone_type == "deberta-v2" and k == 0:
        return (
            f"DeBERTa-v2's encoder cannot run without a layer: this model reads the embeddings (hidden_states[0]), "
            f"which no {stock} reads"
        )
    return None


def stock_form_problem(config: Any) -> str | None:
    """`stock_form_reason`, with what to do instead of a stock export; None if the model has a stock form."""
    reason = stock_form_reason(config)
    if reason is None:
        return None
    pooled = len(config.layers) > 1 and not is_multitask(config)
    return f"{reason}; {'export a model trained on one hidden_layer, or ' if pooled else ''}{SHARE_WITH_CODE}"


def check_exportable(config: Any, where: Any = None) -> Family:
    """The model's family if it has an exact stock form; a `NotExportableError` saying why not otherwise."""
    prefix = f"{where}: " if where is not None else ""
    family = family_of(getattr(config, "model_type", None), where)
    if config.model_type == family.backbone_type:
        # A stock classifier already: re-saving it would change nothing anyone could not do with its files.
        raise NotExportableError(
            f"{prefix}this is already transformers' own {type(config).__name__.replace('Config', '')} model "
            f"(model_type {config.model_type!r}), which loads without custom code: share or use it as it is."
        )
    problem = stock_form_problem(config)
    if problem:
        raise NotExportableError(f"{prefix}no stock {family.stock_class_name} computes this model: {problem}.")
    return family


def stock_config(config: Any) -> Any:
    """The stock class's config: the backbone's fields with ``num_hidden_layers`` = the layer read.

    Drops our fields (``hidden_layer``, ``layer_pooling``, ``use_crf``) and those that name code
    (``auto_map``, ``custom_pipelines``); keeps the labels and ``classifier_dropout``.
    """
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    family = check_exportable(config)
    dropped = {*LAYER_FIELDS, *CODE_FIELDS, "model_type", "architectures", "transformers_version", "_name_or_path"}
    fields = {key: value for key, value in config.to_dict().items() if key not in dropped}
    # DeBERTa-v2 builds max(k, 1) layers; k >= 1 here (check_exportable), so the stock depth is k.
    fields["num_hidden_layers"] = config.num_layers_used
    fields["architectures"] = [family.stock_class_name]
    return CONFIG_MAPPING[family.backbone_type].from_dict(fields)


def stock_model(model: Any) -> Any:
    """The stock ``*ForTokenClassification`` holding ``model``'s weights (eval mode, float32 as ``model``).

    Our classifiers keep the backbone under the family's ``base_model_prefix`` and the head as
    ``classifier``, as the stock classes do (checked for every exact family on 4.57 and 5.24), so the
    names map by prefix; every tensor must find its place and every place a tensor, or it is an error.
    """
    import transformers

    config = stock_config(model.config)
    stock_class = getattr(transformers, config.architectures[0])
    stock = stock_class(config)
    ours, theirs = model.base_model_prefix, stock.base_model_prefix
    state = {
        (theirs + key[len(ours) :] if key.startswith(f"{ours}.") else key): v for key, v in model.state_dict().items()
    }
    result = stock.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ExportMismatchError(
            f"{type(model).__name__}'s weights do not fit {stock_class.__name__}: missing {result.missing_keys}, "
            f"unexpected {result.unexpected_keys}."
        )
    return stock.to(next(model.parameters()).dtype).eval()


def _masked_logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        logits = model(**batch).logits
    return logits[batch["attention_mask"].bool()]


def check_stock_folder(folder: str | Path, model: Any, tokenizer: Any, texts: tuple[str, ...] = SAMPLE_TEXTS) -> float:
    """Loads ``folder`` with the plain Auto classes and returns its largest logit difference from ``model``.

    Raises `ExportMismatchError` if it loads another class, reports weights it did not load, tokenizes
    differently, or differs by more than `MAX_DIFF`.
    """
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    loaded, info = AutoModelForTokenClassification.from_pretrained(
        str(folder), trust_remote_code=False, output_loading_info=True
    )
    name = family_of(model.config.model_type).stock_class_name
    if type(loaded).__name__ != name or not type(loaded).__module__.startswith("transformers."):
        raise ExportMismatchError(f"{folder} loads as {type(loaded).__module__}.{type(loaded).__name__}, not {name}.")
    bad = {key: sorted(info[key]) for key in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(key)}
    if bad:
        raise ExportMismatchError(f"{folder}: the weights do not fit {name}: {bad}")
    batch = dict(tokenizer(list(texts), padding=True, return_tensors="pt"))
    reloaded = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)(
        list(texts), padding=True, return_tensors="pt"
    )
    if not torch.equal(reloaded["input_ids"], batch["input_ids"]):
        raise ExportMismatchError(f"the tokenizer saved in {folder} gives other token ids than the source's.")
    diff = float((_masked_logits(loaded.eval(), batch) - _masked_logits(model, batch)).abs().max())
    if not diff <= MAX_DIFF:  # NaN fails too
        raise ExportMismatchError(
            f"the stock form's logits differ from the source model's by {diff:.3g} (> {MAX_DIFF:g})."
        )
    return diff


def save_stock_form(
    model_dir: str | Path, folder: str | Path, *, trust_remote_code: bool | None = None
) -> dict[str, Any]:
    """Writes the stock form of the model in ``model_dir`` into ``folder`` (weights, config, tokenizer), checked.

    ``folder`` is written in place (`export_transformers` and `staging.stage` choose it); returns what
    ``transformers_export.json`` records. Raises `NotExportableError` for a model without an exact stock form.
    """
    import transformers

    from .loading import load_model

    model, tokenizer = load_model(model_dir, trust_remote_code=trust_remote_code)
    model = model.float().eval()
    family = check_exportable(model.config, model_dir)
    stock = stock_model(model)
    stock.save_pretrained(str(folder))
    save_tokenizer(tokenizer, folder)
    written = Path(folder)
    config = json.loads((written / CONFIG).read_text(encoding="utf-8"))
    leftover = [key for key in (*CODE_FIELDS, *LAYER_FIELDS) if key in config]
    if leftover or not ({WEIGHTS, WEIGHTS_INDEX} & {p.name for p in written.iterdir()}):
        raise ExportMismatchError(f"{written}: the stock save kept {leftover} or wrote no safetensors weights.")
    diff = check_stock_folder(written, model, tokenizer)
    return {
        "form": "transformers (no custom code)",
        "class": family.stock_class_name,
        "model_type": family.backbone_type,
        "source": str(model_dir),
        "source_class": type(model).__name__,
        "hidden_layer": model.config.layers[0],
        "num_hidden_layers": stock.config.num_hidden_layers,
        "backbone_num_hidden_layers": model.config.num_hidden_layers,
        "max_abs_diff_vs_source": diff,
        "decoding": "argmax per token (the stock pipeline); label sequences the scheme forbids are possible",
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }


def export_transformers(
    model_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False, trust_remote_code: bool | None = None
) -> Path:
    """Exports a one-layer layer classifier as its family's stock ``*ForTokenClassification``, to ``out_dir``.

    The folder (weights, ``config.json``, tokenizer files, ``transformers_export.json``) is built beside
    ``out_dir`` and renamed into place only after `check_stock_folder` passed, so a failure leaves
    nothing half-written. A non-empty ``out_dir`` is refused unless ``overwrite``, which replaces an
    earlier export and refuses a folder holding other files (`outputs.claim_output_dir`).

    Args:
        model_dir: A trained output directory of this package (one ``hidden_layer``, no CRF).
        out_dir: The folder to write.
        overwrite: Replace an earlier export in ``out_dir``.
        trust_remote_code: Run a model folder's own code, as `loading.load_model` does.

    Returns:
        ``out_dir``. Raises `NotExportableError` (a ``ValueError``) naming why a model has no stock form.
    """
    out_dir = Path(out_dir)
    # From the config alone, before anything is written: a model without a stock form (a multi-task one) is refused
    # (a mistyped folder first said as such, not as a Hub error).
    check_model_location(model_dir)
    check_exportable(AutoLayerConfig.from_pretrained(str(model_dir)), model_dir)
    with (
        claim_output_dir(out_dir, STOCK_OUTPUTS, overwrite=overwrite, in_place=False),
        atomic_folder(out_dir, STOCK_OUTPUTS) as folder,
    ):
        record = save_stock_form(model_dir, folder, trust_remote_code=trust_remote_code)
        write_json(folder / EXPORT_INFO, record)
    return out_dir

"""Export for serving: the truncated encoder + head as ONNX, optionally int8 (`onnx_runner` runs it).

`export_onnx` writes a serving folder::

    OUT_DIR/model.onnx          the model to serve: fp32, or int8 with quantize="int8"
    OUT_DIR/config.json         the model's config (id2label, max_position_embeddings, ...): see `serving_config`
    OUT_DIR/tokenizer.json ...  the tokenizer files
    OUT_DIR/onnx_export.json    how it was made: precision, opset, exporter, check against PyTorch, stock form
    OUT_DIR/README.md           what it is and how to load it: with Optimum, or with this package and why

A model with a stock form (`stock_export.stock_form_reason`: one layer, no pooling, no CRF, a family
exact at that layer) gets its family's stock config with ``num_hidden_layers`` = the layers in the
graph, so that ``optimum.onnxruntime.ORTModelForTokenClassification.from_pretrained(OUT_DIR)`` loads the
folder as it is, without ``trust_remote_code`` (Optimum looks for ``model.onnx``, feeds the inputs below
by name and reads ``logits``). Any other keeps this package's config, which only this package reads.

``model.onnx`` is always the file to serve, whatever its precision (``onnx_export.json`` says
which), so that a serving folder has one model and one loading path. Its inputs are
``input_ids``, ``attention_mask`` and, for families with token types, ``token_type_ids`` (int64,
batch x sequence; DeBERTa-v3 and ModernBERT have none); its output is
``logits`` (float32, batch x sequence x labels); batch and sequence are dynamic. Only the encoder
layers the model uses are in the graph, so layer 3 of 12 exports about a quarter of BERT.

A multi-task model (``config.tasks``) exports as one graph, the encoder up to its deepest task's layer, with one
output per task, ``logits_<task>`` (batch x sequence x that task's labels; `onnx_runner.task_output_names` makes the
name an identifier: ``logits_gene_2`` for task ``gene-2``), and for a task with a CRF its scores
``start_transitions_<task>``, ``transitions_<task>``, ``end_transitions_<task>``; ``onnx_export.json``'s
``task_outputs`` maps each task to its output. Its ``config.json`` keeps the tasks (labels, layers, schemes).
No stock class has several heads, so neither transformers nor Optimum's ``ORTModelForTokenClassification``
(which reads one ``logits``) loads it: this package's runner does, giving the logits as a dict by task.

`onnx_runner.OnnxTokenClassifier` runs such a folder with onnxruntime.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..base.defaults import DEFAULT_OPSET
from ..base.files import write_json
from ..base.manifest import CARD, CONFIG, TOKENIZER_FILES, output_names
from ..base.outputs import Outputs, atomic_folder, claim_output_dir
from ..model.auto import family_of, is_multitask
from ..model.tokenization import save_tokenizer
from .features import MODEL_INPUT_NAMES
from .onnx_runner import (
    CRF_OUTPUTS,
    EXPORT_INFO,
    MODEL_FILE,
    OUTPUT_NAME,
    OnnxTokenClassifier,
    inference_session,
    is_onnx_dir,
    require_onnx,
    run_session,
    session_feed,
    task_crf_output_names,
    task_output_names,
    to_numpy,
)
from .stock_export import CODE_FIELDS, LAYER_FIELDS, stock_config, stock_form_reason

__all__ = ["DEFAULT_OPSET", "OPTIMUM_CLASS", "export_onnx", "serving_config", "serving_readme", "verify_onnx"]

QUANTIZATIONS = (None, "int8")
# The class of Optimum (optimum-onnx) that loads a stock export's folder as it is.
OPTIMUM_CLASS = "ORTModelForTokenClassification"
# What an export writes (an earlier one's tokenizer may have had other files): all that --overwrite replaces.
# A folder of an older version (no manifest) is an export if it has onnx_export.json; it holds nothing else
# (those versions wrote no README.md: one there is somebody's own, refused rather than replaced).
ONNX_OUTPUTS = Outputs(
    "export-onnx",
    output_names((MODEL_FILE, CONFIG, EXPORT_INFO, CARD, *TOKENIZER_FILES)),
    legacy=lambda folder: (folder / EXPORT_INFO).is_file() and not (folder / CARD).exists(),
    exclusive=True,
    flag="--overwrite",
)
# An fp32 export whose logits differ from PyTorch's by more than this is refused as broken.
MAX_EXPORT_DIFF = 1e-3
_SAMPLE_TEXTS = (
    "Germline mutations in BRCA1 cause hereditary breast and ovarian cancer.",
    "Ataxia-telangiectasia is rare.",
)


class _LogitsOnly(torch.nn.Module):
    """The token classifier with positional inputs (``names``, in order), as the exporters want it.

    Its outputs (`output_names`): the logits, and for a CRF model its emission scores' companions, the
    start, transition and end scores (`CRF_OUTPUTS`), decoded after the graph (`onnx_runner.OnnxTokenClassifier.crf`).
    A multi-task model's: each task's logits (`onnx_runner.task_output_names`), then each CRF task's scores.
    """

    def __init__(self, model: torch.nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self.tasks = model_task_outputs(model.config)
        if self.tasks:
            crfs = getattr(model, "crfs", {})
            self.crfs = [crfs[task] for task in self.tasks if task in crfs]
            crf_names = [task_crf_output_names(out) for task, out in self.tasks.items() if task in crfs]
            self.logits_names = list(self.tasks.values())
        else:
            crf = getattr(model, "crf", None)
            self.crfs, crf_names = ([crf], [CRF_OUTPUTS]) if crf is not None else ([], [])
            self.logits_names = [OUTPUT_NAME]
        self.output_names = [*self.logits_names, *(name for names in crf_names for name in names)]

    def forward(self, *inputs):
        logits = self.model(**dict(zip(self.names, inputs, strict=True)), return_dict=True).logits
        logits = [logits[task] for task in self.tasks] if self.tasks else [logits]
        return tuple(logits + [score for crf in self.crfs for score in crf.scores()])


def model_task_outputs(config: Any) -> dict[str, str]:
    """Task name -> its logits output in the graph (`onnx_runner.task_output_names`); empty for a single-task model."""
    tasks = getattr(config, "tasks", None) if is_multitask(config) else None
    return task_output_names(list(tasks)) if tasks else {}


def graph_input_names(config: Any) -> list[str]:
    """The graph's inputs: ``token_type_ids`` only for families that have token types (not DeBERTa-v3, ModernBERT)."""
    with_types = bool(getattr(config, "type_vocab_size", 0))
    return [name for name in MODEL_INPUT_NAMES if with_types or name != "token_type_ids"]


def _sample_inputs(tokenizer: Any, texts: Sequence[str], names: Sequence[str]) -> dict[str, torch.Tensor]:
    batch = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
    inputs = {name: batch[name] for name in names if name in batch}
    if "token_type_ids" in names:
        inputs.setdefault("token_type_ids", torch.zeros_like(inputs["input_ids"]))
    return inputs


def _torch_export(module: _LogitsOnly, inputs: dict[str, torch.Tensor], path: Path, opset: int) -> str:
    """Exports with the TorchScript exporter (fast, robust with BERT); the dynamo one if that is gone."""
    names = module.names
    args = tuple(inputs[name] for name in names)
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        # Deprecation notices of the TorchScript exporter and tracer warnings about Python-level
        # checks in the attention-mask code (the export is checked against PyTorch afterwards).
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=names,
                output_names=module.output_names,
                dynamic_axes={name: axes for name in (*names, *module.logits_names)},
                do_constant_folding=True,
            )
            return "torchscript"
        except Exception as error:  # a torch without the TorchScript exporter
            torchscript_error = error
        try:
            batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=True,
                opset_version=max(opset, 18),
                input_names=names,
                output_names=module.output_names,
                dynamic_shapes=tuple({0: batch, 1: sequence} for _ in names),
                external_data=False,
            )
            return "dynamo"
        except Exception as error:
            raise RuntimeError(
                f"ONNX export failed: TorchScript exporter: {torchscript_error}; dynamo exporter: {error}"
            ) from error


def _masked_max_diff(a: Any, b: Any, attention_mask: Any) -> float:
    """The largest absolute difference on real tokens; of a multi-task model's logits (dicts), over every task."""
    import numpy as np

    if isinstance(b, dict):
        return max(_masked_max_diff(a[task], b[task], attention_mask) for task in b)
    keep = np.asarray(to_numpy(attention_mask)).astype(bool)
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32))[keep].max())


def export_onnx(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    quantize: str | None = None,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    trust_remote_code: bool | None = None,
) -> Path:
    """Exports a trained token classifier (ours of any family, or a family's own) to ``out_dir/model.onnx``.

    The model is loaded with eager attention and traced on a padded batch; the graph has dynamic
    batch and sequence axes. The fp32 graph is checked against PyTorch before anything is moved
    into place (a difference above 1e-3 is an error). With ``quantize="int8"``, ``model.onnx`` is
    the fp32 graph after onnxruntime's dynamic quantization (int8 weights, per output channel, of
    the matrix multiplications and embeddings; activations quantized on the fly): about a quarter
    of the size and about twice as fast on CPU.
    The whole folder (``model.onnx``, ``config.json``, the tokenizer files and ``onnx_export.json``)
    is built in a temporary folder beside ``out_dir`` and swapped in only when complete
    (`outputs.atomic_folder`): a crash leaves the old folder or the new one, and no stale file of an
    earlier export survives.

    Args:
        model_dir: A trained output directory (or any token classification checkpoint).
        out_dir: The serving folder; created if missing, refused if not empty unless ``overwrite``.
        quantize: ``None`` (fp32) or ``"int8"``.
        opset: ONNX opset (17 or higher; 18 or higher if the dynamo exporter is used).
        overwrite: Replace an earlier export in ``out_dir``. A folder holding files that no export
            writes is refused (the error names them) and left as it is, as are the home folder and
            the working directory (or above it).
        trust_remote_code: Run a model's own code, as `loading.load_model` does.

    Returns:
        The path of ``model.onnx``.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize={quantize!r} is not supported; expected one of {QUANTIZATIONS}.")
    if opset < 14:
        raise ValueError(f"opset={opset} is too old: the exporter needs 14 or higher (17 recommended).")
    require_onnx()  # without the onnx extra, fail before loading anything
    from .loading import load_model

    out_dir = Path(out_dir)
    if is_onnx_dir(model_dir):
        raise ValueError(f"{model_dir} is already an ONNX export; export from the trained model's directory.")
    # Checked and locked before the export's minutes; the new folder replaces the old one whole when complete.
    with claim_output_dir(out_dir, ONNX_OUTPUTS, overwrite=overwrite, in_place=False):
        model, tokenizer = load_model(model_dir, attn_implementation="eager", trust_remote_code=trust_remote_code)
        model = model.float().eval()
        config, no_stock_form = serving_config(model.config)
        with atomic_folder(out_dir, ONNX_OUTPUTS) as folder:
            exporter, diff = _write_onnx(model, tokenizer, folder / MODEL_FILE, opset, quantize)
            save_tokenizer(tokenizer, folder)
            config.to_json_file(str(folder / CONFIG))
            info = _export_info(model, model_dir, folder, quantize, opset, exporter, diff)
            info.update(_form_info(model.config, config, no_stock_form))
            (folder / CARD).write_text(serving_readme(info, out_dir.name), encoding="utf-8")
            write_json(folder / EXPORT_INFO, info)
    return out_dir / MODEL_FILE


def serving_config(config: Any) -> tuple[Any, str | None]:
    """The ``config.json`` of a serving folder, and why Optimum cannot load the folder (None when it can).

    A layer classifier with a stock form gets its family's stock config with ``num_hidden_layers`` = the
    layers in the graph (`stock_export.stock_config`: ``model_type`` the family's, no ``auto_map``, the
    labels and ``label_scheme`` kept), which Optimum's `OPTIMUM_CLASS` loads as it is. A classifier of
    transformers' own keeps its config, a stock one already. Any other keeps its config (this package
    reads it) without ``auto_map`` and ``custom_pipelines``: the folder holds no code for them to name. A
    multi-task model has no stock form (`stock_export.stock_form_reason`) and keeps its config, tasks and all.
    """
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = getattr(config, "model_type", None)
    try:
        ours = family_of(model_type).model_type == model_type
    except ValueError:
        ours = False
    if ours or is_multitask(config):  # a multi-task model: its reason, not that of a model_type of its own code
        reason = stock_form_reason(config)
        if reason is None:
            return stock_config(config), None
    elif model_type in CONFIG_MAPPING and not getattr(config, "auto_map", None):
        return config, None
    else:
        reason = f"its model_type {model_type!r} is defined by its own code, which this folder does not hold"
    config = copy.deepcopy(config)
    for field in CODE_FIELDS:
        if hasattr(config, field):
            delattr(config, field)
    return config, reason


def _form_info(source: Any, written: Any, no_stock_form: str | None) -> dict[str, Any]:
    """``onnx_export.json``'s record of the config written: stock or ours, why, and the source's layer fields."""
    return {
        "config": "stock" if no_stock_form is None else "hf-layer-tokclf",
        "model_type": written.model_type,
        "architectures": getattr(written, "architectures", None),
        "no_stock_form": no_stock_form,
        "source_model_type": source.model_type,
        **{field: getattr(source, field) for field in LAYER_FIELDS if hasattr(source, field)},
    }


def _export_info(
    model: Any, model_dir: str | Path, folder: Path, quantize: str | None, opset: int, exporter: str, diff: float
) -> dict[str, Any]:
    """``onnx_export.json``: what was exported, how, how far from PyTorch, and with which versions."""
    onnx, onnxruntime = require_onnx()
    from transformers import __version__ as transformers_version

    graph = onnx.load(str(folder / MODEL_FILE), load_external_data=False).graph
    return {
        "file": MODEL_FILE,
        "quantize": quantize,
        "precision": "int8 weights per channel (dynamic quantization)" if quantize == "int8" else "float32",
        "opset": opset if exporter == "torchscript" else max(opset, 18),
        "exporter": exporter,
        "inputs": [i.name for i in graph.input],
        "outputs": [o.name for o in graph.output],
        **({"task_outputs": tasks} if (tasks := model_task_outputs(model.config)) else {}),
        "dynamic_axes": {"0": "batch", "1": "sequence"},
        "source": str(model_dir),
        "encoder_layers": _encoder_layers(model),
        "matmul_nodes": sum(node.op_type.startswith(("MatMul", "DynamicQuantizeMatMul")) for node in graph.node),
        "fp32_max_abs_diff_vs_pytorch": diff,
        "torch_version": torch.__version__,
        "transformers_version": transformers_version,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": onnxruntime.__version__,
    }


def serving_readme(info: dict[str, Any], name: str) -> str:
    """The serving folder's ``README.md``: what ``model.onnx`` is and how to load the folder, from ``onnx_export.json``.

    ``name`` is the folder's name, for the examples. A stock folder loads with Optimum (and with this package);
    another only with this package, and the README says why.
    """
    layers = info.get("encoder_layers")
    depth = f"{layers} encoder layer{'s' if layers != 1 else ''}" if layers is not None else "its encoder"
    inputs = ", ".join(f"`{i}`" for i in info["inputs"])
    outputs = ", ".join(f"`{o}`" for o in info["outputs"])
    head = (
        f"# {name}: an ONNX export of a token classifier\n\n"
        f"`model.onnx` is the {info['precision']} ONNX graph (opset {info['opset']}) of `{info['source']}`: "
        f"{depth} and its token-classification head, with inputs {inputs} (int64, batch x sequence) and "
        f"outputs {outputs}; batch and sequence are dynamic. Written by `hf-layer-tokclf export-onnx`; "
        "`onnx_export.json` says how (exporter, versions, the largest logit difference from PyTorch).\n\n"
    ) + _tasks_paragraph(info)
    ours = (
        'With hf-layer-tokclf (`pip install "hf-layer-tokclf[onnx]"`), which decodes valid label sequences '
        "(`--decoding viterbi`, the default; `argmax` decodes each token on its own):\n\n"
        f'```bash\nhf-layer-tokclf predict {name} --text "Germline mutations in BRCA1 cause breast cancer."\n```\n\n'
        "```python\nfrom hf_layer_tokclf.running.onnx_runner import OnnxTokenClassifier\n\n"
        f'runner, tokenizer = OnnxTokenClassifier.load("{name}")  # or loading.load_model("{name}")\n```\n'
    )
    if info["no_stock_form"] is not None:
        return head + (
            "## Load it with hf-layer-tokclf (not with Optimum)\n\n"
            f"This model has no stock transformers form: {info['no_stock_form']}. So `config.json` keeps the "
            f"model's own type (`{info['model_type']}`), which neither transformers' Auto classes nor Optimum's "
            f"`{OPTIMUM_CLASS}` know without this package: load this folder with hf-layer-tokclf.\n\n" + ours
        )
    stock = (info.get("architectures") or ["the family's *ForTokenClassification"])[0]
    return head + (
        "## Load it with Optimum\n\n"
        f"`config.json` is the stock config of `{stock}` (`model_type` `{info['model_type']}`) with "
        f"`num_hidden_layers` = the layers in the graph: Optimum loads this folder as it is, without "
        "`trust_remote_code` (optimum-onnx runs on transformers 4.x):\n\n"
        "```python\nfrom optimum.onnxruntime import ORTModelForTokenClassification\n"
        "from transformers import AutoTokenizer, pipeline\n\n"
        f'model = ORTModelForTokenClassification.from_pretrained("{name}")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{name}")\n'
        'ner = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="first")\n'
        "```\n\n"
        "Its pipeline decodes each token on its own (argmax), as `hf-layer-tokclf predict --decoding argmax` does, "
        "so label sequences the scheme forbids (`O I-X`) are possible.\n\n## Load it with hf-layer-tokclf\n\n" + ours
    )


def _tasks_paragraph(info: dict[str, Any]) -> str:
    """A multi-task export's README paragraph: which output holds which task's logits; empty for one task."""
    tasks = info.get("task_outputs")
    if not tasks:
        return ""
    pairs = ", ".join(f"`{output}` (task `{task}`)" for task, output in tasks.items())
    return (
        f"One head per task, each its own output: {pairs}; `config.json`'s `tasks` holds each task's labels, "
        "layer and scheme. The runner below gives `logits` as a dict by task, as the PyTorch model does; Optimum's "
        "`ORTModelForCustomTasks`, given `config=PretrainedConfig.from_json_file(...)` of this folder's `config.json`, "
        "runs the graph and returns each output by name.\n\n"
    )


def _write_onnx(model: Any, tokenizer: Any, path: Path, opset: int, quantize: str | None) -> tuple[str, float]:
    """Writes the graph to ``path``, fp32 and checked against PyTorch, then int8 if asked; (exporter, max diff)."""
    onnx, onnxruntime = require_onnx()
    names = graph_input_names(model.config)
    inputs = _sample_inputs(tokenizer, _SAMPLE_TEXTS, names)
    with torch.inference_mode():
        expected = model(**inputs).logits
    fp32_path = path if quantize is None else path.with_name(f"{path.stem}.fp32.onnx")
    module = _LogitsOnly(model, names).eval()
    exporter = _torch_export(module, inputs, fp32_path, opset)
    _name_outputs(onnx, fp32_path, module.output_names)
    onnx.checker.check_model(str(fp32_path))
    session = inference_session(onnx, onnxruntime, fp32_path)
    if module.tasks:  # every task's logits output against the model's logits of that task
        got = dict(zip(module.tasks, session.run(module.logits_names, session_feed(session, inputs)), strict=True))
    else:
        got = run_session(session, inputs)
    diff = _masked_max_diff(got, expected, inputs["attention_mask"])
    del session
    if not diff <= MAX_EXPORT_DIFF:
        raise RuntimeError(f"the ONNX export's logits differ from PyTorch's by {diff:.2e} (> {MAX_EXPORT_DIFF})")
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # its advice to pre-process first, logged on the root logger
        try:
            quantize_dynamic(str(fp32_path), str(path), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            logging.disable(previous)
        fp32_path.unlink()  # an intermediate, not part of the serving folder
    return exporter, diff


def _name_outputs(onnx: Any, path: Path, names: Sequence[str]) -> None:
    """Gives the graph's outputs their names: the exporter names a constant output (a CRF's scores) by number."""
    model = onnx.load(str(path))
    graph = model.graph
    if [output.name for output in graph.output] == list(names):
        return
    for output, name in zip(graph.output, names, strict=True):
        if output.name != name:
            graph.node.append(onnx.helper.make_node("Identity", [output.name], [name]))
            output.name = name
    onnx.save(model, str(path))


def _encoder_layers(model: Any) -> int | None:
    """The layers in the graph: ours build only those used; other classifiers, None."""
    return len(model.encoder_layers) if hasattr(model, "encoder_layers") else None


def verify_onnx(onnx_path: str | Path, model_dir: str | Path, texts: Sequence[str]) -> float:
    """Largest absolute difference between the ONNX model's logits and PyTorch's on ``texts`` (of every task's).

    The texts are run as one padded batch; padding positions are left out of the comparison.
    """
    from .loading import load_model

    model, tokenizer = load_model(model_dir)
    model = model.float().eval()
    runner = OnnxTokenClassifier(onnx_path)
    inputs = _sample_inputs(tokenizer, texts, [i.name for i in runner.session.get_inputs()])
    with torch.inference_mode():
        expected = model(**inputs).logits
    return _masked_max_diff(runner.logits(**inputs), expected, inputs["attention_mask"])

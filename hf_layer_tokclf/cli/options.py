"""Options several commands share: where and in which precision a model runs, how its scores become labels,
how windows are batched, whether a model's own code may run, and the NAME=PATH files of several tasks."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """--device and --dtype: where and in which precision a model runs (`loading.pick_dtype`)."""
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="Where the model runs: auto = the GPU (sdpa attention) when there is one, else the CPU.",
    )
    parser.add_argument(
        "--dtype",
        choices=["auto", "float32", "float16", "bfloat16"],
        default="auto",
        help="Precision: auto = float32 on the CPU; on a GPU bfloat16 where it is native (Ampere and newer), "
        "else float16 (T4, V100).",
    )


def add_decoding_option(parser: argparse.ArgumentParser) -> None:
    """--decoding: how word scores become labels (`decoding.word_labels`)."""
    from ..base.defaults import DECODINGS, DEFAULT_DECODING

    parser.add_argument(
        "--decoding",
        choices=DECODINGS,
        default=DEFAULT_DECODING,
        help="viterbi = the best label sequence the labels' scheme allows (IOB2, IOBES: no 'O I-X'), with the "
        "model's CRF where it has one; argmax = each word's best label alone, as the stock pipeline. "
        f"Default: {DEFAULT_DECODING}.",
    )


def probability(value: str) -> float:
    """An option's value as a number in [0, 1] (--min-score), else argparse's error naming it."""
    number = float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not a probability in [0, 1]")
    return number


def add_max_batch_tokens_option(parser: argparse.ArgumentParser) -> None:
    """--max-batch-tokens: batches of windows by padded tokens rather than a count (`features.token_budget_batches`)."""
    parser.add_argument(
        "--max-batch-tokens",
        type=at_least_one,
        default=None,
        metavar="N",
        help="Batch windows by size instead: as many as fit N tokens with their padding (windows x the longest), "
        "so that a batch of short sentences holds more of them than a batch of long abstracts; --batch-size is "
        "then not used (a window longer than N runs alone). Default: --batch-size windows a batch.",
    )


def at_least_one(value: str) -> int:
    """An option's value as a whole number of at least 1 (--max-batch-tokens), else argparse's error naming it."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a whole number of at least 1")
    return number


def add_trust_option(parser: argparse.ArgumentParser) -> None:
    """--trust-remote-code, off by default as in transformers' own tools."""
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        default=None,  # not given: HF_LAYER_TOKCLF_TRUST_REMOTE_CODE decides (code_consent.may_run_code)
        help="Allow a model folder or Hub repository to run the Python code it ships (an auto_map to classes "
        "nobody installed), as transformers' trust_remote_code=True; HF_LAYER_TOKCLF_TRUST_REMOTE_CODE=1 does the "
        "same for every command. Off by default. Models of this package and of transformers' own types load with "
        "the installed classes and never run their folder's code. Read the code first.",
    )


# NAME=PATH of a task's file: NAME as train takes a task's name (a letter, then letters, digits, '_' or '-').
_TASK_FILE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)=(.+)$")


def task_files(values: Sequence[str], option: str) -> dict[str, str] | None:
    """The files of a repeatable ``--option NAME=PATH`` by task name, or `None` for one bare path (single-task).

    A value that is an existing file is a path even if it holds '=' (``data/a=b.tsv``); a ``ValueError`` names the
    value for a bare path among named ones, several bare paths, a task named twice, or ``NAME=`` with no path.
    """
    values = list(values)
    named = [(value, _TASK_FILE.match(value)) for value in values]
    bare = [value for value, match in named if match is None or Path(value).is_file()]
    if len(values) == 1 and bare:
        return None
    if bare:
        raise ValueError(
            f"{option} {bare[0]!r}: with several {option} options, give each as NAME=PATH (the task it trains)"
        )
    files: dict[str, str] = {}
    for value, match in named:
        task, path = match.group(1), match.group(2)
        if task in files:
            raise ValueError(f"{option} {value!r}: task {task!r} is given twice ({files[task]!r} and {path!r})")
        files[task] = path
    return files

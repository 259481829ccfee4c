"""Options several commands share: where and in which precision a model runs, how its scores become labels,
how windows are batched, whether a model's own code may run, and the NAME=PATH files of several tasks."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


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


def task_word(word: str) -> tuple[str, str] | None:
    """``(NAME, VALUE)`` of a ``NAME=VALUE`` word whose NAME can name a task (`arguments.TASK_NAME`), else `None`:
    a bare value, or a path holding '=' (``data/a=b.tsv``, or any existing file)."""
    from ..training.arguments import TASK_NAME

    name, equals, value = word.partition("=")
    named = equals and value and TASK_NAME.fullmatch(name) and not Path(word).is_file()
    return (name, value) if named else None


def task_values(option: str, words: Sequence[str], convert: Callable[[str], Any] = str, *, single: bool = True) -> Any:
    """The values of a repeatable ``--option [NAME=]VALUE``: ``{NAME: convert(VALUE)}`` when every word names its
    task, else the bare word (``single``) or words; `None` for none.

    A ``ValueError`` names the word for a bare value among named ones, several bare values where one is taken, a
    task named twice, or a value ``convert`` refuses.
    """
    words = list(words)
    named = [task_word(word) for word in words]
    if not words:
        return None
    if all(pair is None for pair in named):
        if single and len(words) > 1:
            raise ValueError(
                f"{option} is given {len(words)} times ({', '.join(words)}): give one, or NAME=... per task"
            )
        return words[0] if single else words
    bare = [word for word, pair in zip(words, named, strict=True) if pair is None]
    if bare:
        raise ValueError(f"{option} {bare[0]} has no task name: with several tasks, give every {option} as NAME=...")
    tasks: dict[str, Any] = {}
    for name, value in named:
        if name in tasks:
            raise ValueError(f"{option}: task {name!r} is given twice ({name}={tasks[name]}, {name}={value})")
        try:
            tasks[name] = convert(value)
        except ValueError:
            raise ValueError(
                f"{option} {name}={value}: {value!r} is not a {convert.__name__.replace('_', ' ')}"
            ) from None
    return tasks


def task_files(values: Sequence[str], option: str) -> dict[str, str] | None:
    """The files of a repeatable ``--option NAME=PATH`` by task name, or `None` for one bare path (single-task)."""
    files = task_values(option, values)
    return files if isinstance(files, dict) else None

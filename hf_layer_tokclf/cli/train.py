"""``hf-layer-tokclf train``: the package's and run_ner.py's options beside every TrainingArguments one, and the
switches run_ner.py takes (--do-train, --do-eval, --do-predict), checked against what train does.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
from collections.abc import Iterator, Sequence
from typing import Any

from ..base.redaction import remember_secret
from .interrupts import KEPT_ON_INTERRUPT, checkpoint_kept
from .parsing import (
    CommandParser,
    add_dataclass_options,
    add_model_argument,
    add_progress_option,
    add_refused_option,
    boolean,
)


class _TrainerHelp(argparse.Action):
    """``train --help-trainer``: every TrainingArguments option (this imports transformers)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        from transformers import HfArgumentParser, TrainingArguments

        trainer = HfArgumentParser(TrainingArguments, prog=f"{parser.prog} (TrainingArguments)", allow_abbrev=False)
        print(trainer.format_help())
        parser.exit()


class TrainParser(CommandParser):
    """``train``'s options: the package's and run_ner.py's (`arguments`), declared here without torch or
    transformers, and every TrainingArguments option, which transformers' HfArgumentParser reads."""

    def parse_args_into_dataclasses(self, argv: Sequence[str]) -> tuple[Any, Any, Any, Any]:
        """(ModelArguments, DataArguments, RunArguments, TrainingArguments) of a command line."""
        ours, theirs = self.split_words(argv)
        args = self.parse_args(ours)  # --help and our errors: before transformers is imported
        from transformers import HfArgumentParser, TrainingArguments

        from ..training.arguments import DataArguments, ModelArguments, RunArguments, resolve_tasks
        from ..training.trainer import TRAINING_DEFAULTS

        values = vars(args)
        values.update(self.task_values(values))
        model_args = ModelArguments(
            **{f.name: values[f.name] for f in dataclasses.fields(ModelArguments) if values.get(f.name) is not None}
        )
        data_args = DataArguments(**{f.name: values[f.name] for f in dataclasses.fields(DataArguments)})
        run_args = RunArguments(**{f.name: values[f.name] for f in dataclasses.fields(RunArguments)})
        try:
            resolve_tasks(model_args, data_args)  # a task named in one option but not in --train-file, ...
        except ValueError as error:
            self.error(str(error))
        trainer = HfArgumentParser(TrainingArguments, allow_abbrev=False)
        trainer.set_defaults(**TRAINING_DEFAULTS)
        theirs += ["--output_dir", args.output_dir, "--disable_tqdm", str(args.no_progress)]
        training_args, rest = trainer.parse_args_into_dataclasses(theirs, return_remaining_strings=True)
        if rest:
            self.more_options = list(trainer._option_string_actions)  # argparse has no public list of them
            self.error(
                f"unrecognized arguments: {' '.join(rest)} (neither an option of train, see --help, nor of "
                "TrainingArguments, see --help-trainer)"
            )
        return model_args, data_args, run_args, training_args

    def task_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """The `TASK_OPTIONS` as the dataclasses take them: bare as today (a path, layers, a switch), or per task
        (``NAME=PATH`` -> a dict, ``--crf NAME`` -> a list of names); a mix of the two is an error."""
        out: dict[str, Any] = {}
        for name in ("train_file", "validation_file", "test_file"):
            out[name] = self._named(_option(name), values[name] or [], str, single=True)
        layers = values["hidden_layer"] or []
        out["hidden_layer"] = self._named("--hidden-layer", [w for ws in layers for w in ws], _layer, single=False)
        if isinstance(out["hidden_layer"], list):  # bare: the last --hidden-layer's values, as before
            out["hidden_layer"] = [_layer(word) for word in layers[-1]]
        switches = values["crf"] or []
        if all(_is_boolean(word) for word in switches):
            out["crf"] = boolean(switches[-1]) if switches else False
        elif any(_is_boolean(word) for word in switches):
            self.error(f"--crf {' --crf '.join(switches)}: give --crf alone (every task) or --crf NAME per task.")
        else:
            out["crf"] = switches
        return out

    def _named(self, option: str, words: list[str], convert: Any, *, single: bool) -> Any:
        """``NAME=VALUE`` words -> {NAME: convert(VALUE)}; bare words -> the one word (``single``) or all of them."""
        named = [_task_word(word) for word in words]
        if not words:
            return None
        if all(pair is None for pair in named):
            if single and len(words) > 1:
                self.error(
                    f"{option} is given {len(words)} times ({', '.join(words)}): give one, or NAME=PATH per task."
                )
            return words[0] if single else words
        bare = [word for word, pair in zip(words, named, strict=True) if pair is None]
        if bare:
            self.error(f"{option} {bare[0]} has no task name beside {option} NAME=...: give every {option} as NAME=...")
        tasks: dict[str, Any] = {}
        for name, value in named:
            if name in tasks:
                self.error(f"{option}: task {name!r} is given twice ({name}={tasks[name]}, {name}={value}).")
            try:
                tasks[name] = convert(value)
            except ValueError:
                self.error(f"{option} {name}={value}: {value!r} is not a layer number.")
        return tasks

    def split_words(self, argv: Sequence[str]) -> tuple[list[str], list[str]]:
        """The words of ``argv`` that are this parser's (its options, their values, MODEL) and the Trainer's.

        A word goes with the option before it; an option is ours if this parser knows its name.
        """
        self.add_underscore_spellings()
        ours: list[str] = []
        theirs: list[str] = []
        target = ours
        for word in argv:
            if word.startswith("-") and not _is_number(word):
                target = ours if word.split("=", 1)[0] in self._option_string_actions else theirs
            target.append(word)
        return ours, theirs


# Options that take one value, or one value per task (NAME=VALUE): declared here, not from the dataclasses' types.
TASK_OPTIONS = ("train_file", "validation_file", "test_file", "hidden_layer", "crf")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _task_word(word: str) -> tuple[str, str] | None:
    """``(NAME, VALUE)`` of a ``NAME=VALUE`` word whose NAME can name a task, else None (a path: ``a/b=c.tsv``)."""
    from ..training.arguments import TASK_NAME

    name, equals, value = word.partition("=")
    return (name, value) if equals and value and TASK_NAME.fullmatch(name) else None


def _layer(word: str) -> int:
    return int(word)


def _is_boolean(word: str) -> bool:
    try:
        boolean(word)
    except argparse.ArgumentTypeError:
        return False
    return True


def add_task_option(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
    """One of the `TASK_OPTIONS`, repeatable (``action="append"``): its words are read by `TrainParser.task_values`."""
    options: dict[str, Any] = dict(dest=field.name, action="append", default=None, metavar=field.metadata["metavar"])
    if field.name == "hidden_layer":
        options["nargs"] = "+"
    elif field.name == "crf":
        options.update(nargs="?", const="true")
    parser.add_argument(_option(field.name), *field.metadata.get("aliases", ()), help=field.metadata["help"], **options)


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def train_parser() -> TrainParser:
    from ..base.defaults import TRAINER_DEFAULTS
    from ..training.arguments import DataArguments, ModelArguments, RunArguments

    parser = TrainParser(
        prog="hf-layer-tokclf train",
        description="Fine-tune the layer classifier of the backbone's family (BertForLayerTokenClassification, "
        "RobertaForLayerTokenClassification, ...) with the Hugging Face Trainer. Every TrainingArguments option is "
        "accepted too (--num-train-epochs, --learning-rate, --per-device-train-batch-size, "
        "--gradient-accumulation-steps, --warmup-steps, --weight-decay, --seed, --bf16, --push-to-hub, ...): "
        "--help-trainer lists them. Defaults that differ from the Trainer's: "
        + ", ".join(f"{k}={v}" for k, v in TRAINER_DEFAULTS.items())
        + ", and batches of similar length.",
    )
    add_model_argument(
        parser,
        "Backbone: a checkpoint folder or Hub id of BERT, RoBERTa, XLM-R, ELECTRA, DeBERTa-v2/v3, ModernBERT or "
        "EuroBERT, or a trained NER model of one to continue from. Default: the packaged all-MiniLM-L6-v2.",
        required=False,
    )
    parser.add_argument(
        "--output-dir", required=True, help="Where the model, its tokenizer, metrics.json and model card go."
    )
    for cls in (ModelArguments, DataArguments, RunArguments):
        add_dataclass_options(parser, cls, skip=("model",), declare=dict.fromkeys(TASK_OPTIONS, add_task_option))
    add_progress_option(parser, "No progress bars (TrainingArguments' disable_tqdm).")
    add_refused_option(
        parser,
        "--cache-dir",
        "run_ner.py's --cache-dir is not taken: set HF_HUB_CACHE (or HF_HOME) to choose where Hub downloads are kept.",
    )
    add_refused_option(
        parser,
        "--model-revision",
        "run_ner.py's --model-revision is not taken: download that revision first (hf download REPO --revision REV "
        "--local-dir DIR) and give DIR as the model.",
    )
    parser.add_argument(
        "--help-trainer", action=_TrainerHelp, nargs=0, help="List every TrainingArguments option, and exit."
    )
    return parser


@contextlib.contextmanager
def hub_token(token: str | None) -> Iterator[None]:
    """run_ner.py's ``--token``: the Hub token of this command's downloads (as ``HF_TOKEN`` while it runs; the
    value is masked in every file written, see `redaction`)."""
    if not token:
        yield
        return
    remember_secret(token)
    before = os.environ.get("HF_TOKEN")
    os.environ["HF_TOKEN"] = token
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_TOKEN", None)
        else:
            os.environ["HF_TOKEN"] = before


def train_command(argv: Sequence[str]) -> int:
    model_args, data_args, run_args, training_args = train_parser().parse_args_into_dataclasses(list(argv))
    from ..training.train import train

    _check_do_flags(argv, data_args)
    KEPT_ON_INTERRUPT.append(lambda line: checkpoint_kept(training_args.output_dir, line, run_args.resume))
    command = shlex.join(["hf-layer-tokclf", "train", *argv])
    with hub_token(model_args.token):
        metrics = train(model_args, data_args, training_args, run_args, command=command)
    tasks = [name for name in data_args.train_file or ()] if isinstance(data_args.train_file, dict) else []
    for task in tasks:
        if f"test_{task}_f1" in metrics:
            print(f"{task} test F1: {100 * metrics[f'test_{task}_f1']:.2f}")
    if "test_f1" in metrics:
        mean = " (the tasks' mean)" if tasks else ""
        print(f"test F1{mean}: {100 * metrics['test_f1']:.2f}  ({training_args.output_dir}/metrics.json)")
    if os.environ.get("RANK", "0") == "0":  # once, not in every process torchrun started
        print(_next_commands(training_args.output_dir, data_args))
    return 0


def _next_commands(output_dir: str, data_args: Any) -> str:
    """What to run on the model `train` saved, its folder and test data filled in, shell-quoted to paste."""
    if isinstance(data_args.test_file or data_args.validation_file, dict):  # several tasks: predict and push
        data = []
    elif data_args.test_file:
        data = [data_args.test_file]
    elif data_args.dataset_name:
        data = [data_args.dataset_name, "--split", "test"]
    else:
        data = [data_args.validation_file or "TEST.tsv"]
    commands = [
        *([["evaluate", output_dir, "--data", *data]] if data else []),
        ["predict", output_dir, "--text", "A sentence to tag."],
        ["push", output_dir, "--repo-id", "YOUR-NAME/MODEL-NAME"],
    ]
    return "next:\n" + "\n".join(f"  {shlex.join(['hf-layer-tokclf', *command])}" for command in commands)


def _do_flags(argv: Sequence[str]) -> dict[str, bool]:
    """The run_ner.py switches given on the command line (--do-train, --do_eval=false, ...) and their values.

    Read from argv, not from TrainingArguments: transformers turns ``do_eval`` on by itself whenever
    ``eval_strategy`` is set, so the parsed value cannot tell what the user asked for.
    """
    words = list(argv)
    flags = {}
    for i, word in enumerate(words):
        name, equals, value = word.partition("=")
        key = name.lstrip("-").replace("-", "_")
        if not name.startswith("--") or key not in ("do_train", "do_eval", "do_predict"):
            continue
        if not equals:
            following = words[i + 1] if i + 1 < len(words) else "--"
            value = "true" if following.startswith("-") else following
        flags[key] = boolean(value)
    return flags


def _check_do_flags(argv: Sequence[str], data_args) -> None:
    """`train` always trains, then scores the dev and test data it is given: run_ner.py's switches must agree."""
    flags = _do_flags(argv)
    off = [name for name, value in flags.items() if not value]
    if off:
        raise ValueError(
            f"--{off[0].replace('_', '-')} false is not supported: train always trains, and scores the dev and test "
            "data given (leave out --validation-file / --test-file to skip them; evaluate a trained model with "
            "`hf-layer-tokclf evaluate`)."
        )
    if flags.get("do_eval") and not (data_args.validation_file or data_args.dataset_name):
        raise ValueError("--do-eval needs dev data: give --validation-file (or --dataset-name with a dev split).")
    if flags.get("do_predict") and not (data_args.test_file or data_args.dataset_name):
        raise ValueError("--do-predict needs test data: give --test-file (or --dataset-name with a test split).")

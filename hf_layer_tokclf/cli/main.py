"""The ``hf-layer-tokclf`` command: a thin layer over the package's functions.

Each subcommand parses its options and calls one function that the tests call directly.
Errors the user can fix (bad data, an output that exists) print one line and exit with 2; Ctrl-C prints
one line, what was kept and the command that goes on from it, and exits with 130.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import glob
import os
import re
import shlex
import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..base.extras import require
from ..base.files import CARD, check_output_path, is_bookkeeping, write_json
from ..base.redaction import redact_command, remember_secret, remember_secrets_in, scrub_text
from ..sharing.hub import HubError

# Every parser here is a CommandParser, built with allow_abbrev=False: argparse would otherwise take --hub-tok for
# --hub-token, a spelling that redaction by option name cannot know, and a typo for another option.

USAGE = """hf-layer-tokclf <command> [options]

Token classification from a chosen hidden layer of an encoder (BERT, RoBERTa, DeBERTa, ModernBERT, ...).

commands:
  train      fine-tune a model on CoNLL / JSON lines / datasets data (the Trainer's options apply)
  evaluate   entity-level precision, recall and F1 of a trained model on labeled data
  predict    entities in raw text (JSON lines out), or labels for pre-tokenized CoNLL
  push       share a trained model on the Hugging Face Hub, verified first (as push_to_hub.py)
  sweep      which layer? one linear probe per layer from one pass over the data; F1 vs cost
  export-onnx  the model as ONNX for serving (dynamic batch and sequence), optionally int8-quantized
  export-transformers  a one-layer model as its family's stock *ForTokenClassification (no custom code)

Run `hf-layer-tokclf <command> --help` for a command's options.
"""


class CommandParser(argparse.ArgumentParser):
    """The parser of every subcommand, so that all share one grammar.

    - Every ``--dashed-option`` is also accepted as ``--dashed_option``, as run_ner.py spells options, and is
      listed once in ``--help`` (the epilog says so).
    - Abbreviations are refused (``allow_abbrev=False``; see the comment above).
    - Options and positionals may come in any order (``parse_intermixed_args``): ``MODEL OUT_DIR`` around options.
    - Where a command takes a model (`add_model_argument`), it is MODEL or ``--model``, once.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", UNDERSCORES)
        super().__init__(allow_abbrev=False, **kwargs)
        self.model_required: bool | None = None  # None: the command takes no model

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        self.add_underscore_spellings()
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed = self.parse_intermixed_args(args, namespace)
        if self.model_required is not None:
            self._resolve_model(parsed)
        return parsed

    def error(self, message: str) -> typing.NoReturn:
        """``PROG: error: MESSAGE`` and where the options are listed, with the option a mistyped one is nearest to;
        not argparse's synopsis first, which for train runs to thirty lines before the error."""
        self.add_underscore_spellings()
        hint = near_options(message, [*self._option_string_actions, *self.more_options])
        self.exit(2, f"{self.prog}: error: {message}{hint}\n{self.short_usage()}  (--help lists every option)\n")

    def short_usage(self) -> str:
        """``usage: PROG [options] (MODEL | --model MODEL) OUT_DIR``: the words a command needs, in one line."""
        words = ["[options]"]
        for action in self._actions:
            if action.option_strings:
                continue
            name, optional = action.metavar or action.dest.upper(), not action.required
            if action.dest == "model":
                name, optional = "MODEL | --model MODEL", not self.model_required
            words.append(f"[{name}]" if optional else f"({name})" if " " in name else name)
        return f"usage: {self.prog} {' '.join(words)}"

    more_options: Sequence[str] = ()  # options read by another parser after this one (train: TrainingArguments')

    def add_underscore_spellings(self) -> None:
        """Makes ``--a_b`` parse as ``--a-b`` for every option (not shown in --help: its actions keep their names)."""
        for name, action in list(self._option_string_actions.items()):
            if name.startswith("--"):
                self._option_string_actions.setdefault("--" + name[2:].replace("-", "_"), action)

    def _resolve_model(self, parsed: argparse.Namespace) -> None:
        given = [value for value in (parsed.model, parsed.model_option) if value is not None]
        if len(given) == 2:
            self.error(
                f"the model is given twice, as MODEL {parsed.model} and --model {parsed.model_option}: give it once, "
                "as MODEL or --model, not both."
            )
        if not given and self.model_required:
            self.error("a model is required: give MODEL (a trained output directory or a Hub id) or --model MODEL.")
        parsed.model = given[0] if given else None
        del parsed.model_option


def near_options(message: str, options: Sequence[str]) -> str:
    """``; did you mean --output?`` for each ``--option`` in an argparse error ``message`` that is none of
    ``options`` but close to one (difflib), else an empty string."""
    unknown = [word for word in re.findall(r"--[\w-]+", message) if word not in options]
    near = {word: difflib.get_close_matches(word, options, n=1, cutoff=0.75) for word in unknown}
    return "".join(f"; did you mean {match[0]}?" for match in near.values() if match)


UNDERSCORES = "Every option is also accepted spelled --like_this, as transformers' run_ner.py spells them."
MODEL_OPTIONS = ("--model", "--model-name-or-path", "--model_name_or_path")


class _Once(argparse.Action):
    """An option that may be given once: a second, different value is refused rather than silently winning."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        before = getattr(namespace, self.dest, None)
        if before is not None and before != values:
            parser.error(f"the model is given twice ({before}, {values}): give it once.")
        setattr(namespace, self.dest, values)


def add_model_argument(parser: CommandParser, help: str, required: bool = True) -> None:
    """MODEL, or ``--model`` / ``--model-name-or-path`` (run_ner.py's), in every command that takes a model."""
    parser.add_argument("model", nargs="?", default=None, metavar="MODEL", help=help)
    parser.add_argument(
        *MODEL_OPTIONS, dest="model_option", action=_Once, default=None, metavar="MODEL", help="The same as MODEL."
    )
    parser.model_required = required


def _boolean(value: str) -> bool:
    """A switch's value as run_ner.py's parser reads it: true/false, yes/no, 1/0."""
    if value.lower() in ("true", "yes", "y", "t", "1"):
        return True
    if value.lower() in ("false", "no", "n", "f", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not true or false")


def add_progress_option(parser: argparse.ArgumentParser, help: str) -> None:
    """--no-progress, and the Trainer's --disable-tqdm [BOOL] as its alias (its own, so that MODEL may follow it)."""
    parser.add_argument("--no-progress", action="store_true", help=help)
    parser.add_argument(
        "--disable-tqdm",
        dest="no_progress",
        nargs="?",
        const=True,
        type=_boolean,
        default=argparse.SUPPRESS,
        metavar="BOOL",
        help="The same as --no-progress (the Trainer's spelling).",
    )


class _Refused(argparse.Action):
    """A run_ner.py option this package does not take: refused with the reason, whatever its value."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        parser.error(self.help)


def add_refused_option(parser: argparse.ArgumentParser, name: str, reason: str) -> None:
    """``name`` (with or without a value) stops the parse with ``reason``, which its --help line shows."""
    parser.add_argument(name, action=_Refused, nargs="?", metavar="VALUE", help=reason)


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One option per field of ``cls``, as transformers' HfArgumentParser makes them (``--field-name`` and the
    field's ``aliases``; a bool is ``--flag [BOOL]``), without importing transformers."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.init:
            continue
        kind = hints[field.name]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        options: dict[str, Any] = {"dest": field.name, "help": field.metadata.get("help")}
        options["default"] = None if field.default is dataclasses.MISSING else field.default
        if kind is bool:
            options.update(nargs="?", const=True, type=_boolean, metavar="BOOL")
        elif typing.get_origin(kind) is typing.Literal:
            options["choices"] = typing.get_args(kind)
        elif typing.get_origin(kind) is list:
            options.update(nargs="+", type=typing.get_args(kind)[0])
        else:
            options["type"] = kind
        parser.add_argument("--" + field.name.replace("_", "-"), *field.metadata.get("aliases", ()), **options)


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

        from ..training.arguments import DataArguments, ModelArguments, RunArguments
        from ..training.trainer import TRAINING_DEFAULTS

        values = vars(args)
        model_args = ModelArguments(
            **{f.name: values[f.name] for f in dataclasses.fields(ModelArguments) if values.get(f.name) is not None}
        )
        data_args = DataArguments(**{f.name: values[f.name] for f in dataclasses.fields(DataArguments)})
        run_args = RunArguments(**{f.name: values[f.name] for f in dataclasses.fields(RunArguments)})
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
        add_dataclass_options(parser, cls, skip=("model",))
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
    _KEPT_ON_INTERRUPT.append(lambda line: _checkpoint_kept(training_args.output_dir, line, run_args.resume))
    command = shlex.join(["hf-layer-tokclf", "train", *argv])
    with hub_token(model_args.token):
        metrics = train(model_args, data_args, training_args, run_args, command=command)
    if "test_f1" in metrics:
        print(f"test F1: {100 * metrics['test_f1']:.2f}  ({training_args.output_dir}/metrics.json)")
    if os.environ.get("RANK", "0") == "0":  # once, not in every process torchrun started
        print(_next_commands(training_args.output_dir, data_args))
    return 0


def _next_commands(output_dir: str, data_args: Any) -> str:
    """What to run on the model `train` saved, its folder and test data filled in, shell-quoted to paste."""
    if data_args.test_file:
        data = [data_args.test_file]
    elif data_args.dataset_name:
        data = [data_args.dataset_name, "--split", "test"]
    else:
        data = [data_args.validation_file or "TEST.tsv"]
    commands = [
        ["evaluate", output_dir, "--data", *data],
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
        flags[key] = _boolean(value)
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


def _add_device_options(parser: argparse.ArgumentParser) -> None:
    """--device and --dtype: where and in which precision a model runs (`inference.pick_dtype`)."""
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


def _add_decoding_option(parser: argparse.ArgumentParser) -> None:
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


def _probability(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not a probability in [0, 1]")
    return number


def _add_max_batch_tokens_option(parser: argparse.ArgumentParser) -> None:
    """--max-batch-tokens: batches of windows by padded tokens rather than a count (`features.token_budget_batches`)."""
    parser.add_argument(
        "--max-batch-tokens",
        type=_at_least_one,
        default=None,
        metavar="N",
        help="Batch windows by size instead: as many as fit N tokens with their padding (windows x the longest), "
        "so that a batch of short sentences holds more of them than a batch of long abstracts; --batch-size is "
        "then not used (a window longer than N runs alone). Default: --batch-size windows a batch.",
    )


def _at_least_one(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a whole number of at least 1")
    return number


def _add_trust_option(parser: argparse.ArgumentParser) -> None:
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


def evaluate_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="hf-layer-tokclf evaluate",
        description="Score a trained model on labeled data: seqeval entity-level precision, recall and F1, "
        "overall and per entity type, over every gold token (long sentences go through windows).",
    )
    add_model_argument(parser, "A trained output directory (or any token classification model).")
    parser.add_argument("--data", required=True, help="Labeled data: CoNLL, JSON lines, or a save_to_disk folder.")
    parser.add_argument("--split", default=None, help="The split to use when --data is a DatasetDict.")
    _add_column_options(parser)
    parser.add_argument(
        "--output",
        default=None,
        help="JSON file for the scores (default: MODEL_DIR/eval_<data>.json for a local folder, "
        "./eval_<owner>--<name>_<data>.json for a Hub id).",
    )
    parser.add_argument("--predictions", default=None, help="Also write CoNLL: token, gold label, predicted label.")
    parser.add_argument("--overwrite", action="store_true", help="Replace --output / --predictions if they exist.")
    parser.add_argument("--batch-size", type=int, default=32, help="Windows per forward pass.")
    _add_max_batch_tokens_option(parser)
    parser.add_argument("--max-length", type=int, default=None, help="Window length in subwords (default: model max).")
    parser.add_argument("--stride", type=int, default=None, help="Overlap between windows, in subwords.")
    _add_decoding_option(parser)
    _add_device_options(parser)
    _add_trust_option(parser)
    return parser


def _add_column_options(parser: argparse.ArgumentParser) -> None:
    """run_ner.py's --text-column-name / --label-column-name, and --label-names for integer labels."""
    parser.add_argument("--text-column-name", default="tokens", help="The JSON lines / dataset field with the words.")
    parser.add_argument("--label-column-name", default="ner_tags", help="The field with each word's label.")
    parser.add_argument(
        "--label-names",
        nargs="+",
        default=None,
        help="Names of integer label ids, in id order (O B-Disease I-Disease, or comma-separated), or a datasets "
        "folder whose label column is a ClassLabel.",
    )


def _columns(args: argparse.Namespace) -> Any:
    from ..formats.data import Columns, label_names_from

    names = label_names_from(args.label_names, args.label_column_name) if args.label_names else None
    return Columns(args.text_column_name, args.label_column_name, names)


def _default_eval_output(model: str, data: str) -> Path:
    """Beside a local model; for a Hub id, in the working directory under a flat name (owner/name: owner--name).

    Never ``./owner/name/eval_x.json``: that folder would then be loaded in place of the Hub's ``owner/name``.
    """
    stem = Path(data).name.split(".")[0] or "data"
    if Path(model).is_dir():
        return Path(model) / f"eval_{stem}.json"
    flat = re.sub(r"[^A-Za-z0-9._-]+", "--", str(model)).strip("-.") or "model"
    return Path(f"eval_{flat}_{stem}.json")


def evaluate_command(argv: Sequence[str]) -> int:
    args = evaluate_parser().parse_args(list(argv))
    from ..formats.data import check_conll_columns, check_known_labels, load_sentences, normalize_labels
    from ..running.inference import evaluate_sentences, flat_scores, label_scheme, load_model, write_conll
    from ..running.metrics import format_scores
    from ..running.serving import check_onnx_extra

    check_onnx_extra(args.model, "evaluate")
    output = check_output_path(args.output or _default_eval_output(args.model, args.data), args.overwrite)
    if args.predictions:
        check_output_path(args.predictions, args.overwrite)
    as_read = load_sentences(args.data, split=args.split, columns=_columns(args))
    sentences, scheme = normalize_labels(as_read)
    for sentence in sentences if args.predictions else ():  # what --predictions could not write, refused now
        check_conll_columns(sentence)
    print(f"label scheme of {args.data}: {scheme}")
    model, tokenizer = load_model(
        args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )
    # Named as the file writes them (I-Diseas, not its IOB2 form B-Diseas), with file and line.
    check_known_labels(as_read, model.config.label2id, known_as=f"the labels of {args.model}")
    scores, predictions = evaluate_sentences(
        model,
        tokenizer,
        sentences,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        max_length=args.max_length,
        stride=args.stride,
        decoding=args.decoding,
    )
    print(format_scores(scores))
    record = {**flat_scores(scores, "eval"), "decoding": args.decoding, "data": str(args.data)}
    write_json(output, {**record, "model": str(args.model)})
    print(f"scores written to {output}")
    if args.predictions:  # in the scheme the model was trained in, both columns
        write_conll(args.predictions, sentences, predictions, scheme=label_scheme(model))
    return 0


def predict_parser() -> argparse.ArgumentParser:
    from ..base.defaults import CORPUS_CHUNK_SIZE, DEFAULT_STRATEGY, ON_ERROR, STRATEGIES
    from ..formats.documents import INPUT_FORMATS, PREDICT_FORMATS

    parser = CommandParser(
        prog="hf-layer-tokclf predict",
        description="Find entities with a trained model. Documents are written in --format, else in the format "
        "the --output's name says, else in their own (PubTator, BioC) or as JSON lines (text, PubMed XML): "
        "{'text', 'entities': [{entity_group, score, word, start, end}]}, with character offsets; JSON lines of "
        "documents ({'id': ..., 'text': ...}) keep their other fields beside the entities. Pre-tokenized CoNLL "
        "gives CoNLL with a predicted label column (after the gold one, if the file has one), in the label scheme "
        "the model was trained in.",
    )
    add_model_argument(parser, "A trained output directory (or any token classification model).")
    parser.add_argument("--text", action="append", help="A document to tag; repeat for several.")
    parser.add_argument(
        "--input",
        default=None,
        help="A file: text (one document per line), JSON lines, PubMed XML (.xml, .xml.gz), BioC, PubTator or CoNLL.",
    )
    parser.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        default="auto",
        help="How --input is read. auto: PubMed XML, BioC (XML, JSON) and PubTator by their first lines; CoNLL "
        "for .conll/.conllu/.tsv/.iob/.bio files and for files whose lines are tokens (one per line, with or "
        "without label columns); JSON lines for .jsonl/.json; else text.",
    )
    parser.add_argument(
        "--text-column-name",
        default=None,
        help="The JSON lines field with the text (default: 'text'), or with a word list (default: 'tokens').",
    )
    parser.add_argument(
        "--format",
        choices=PREDICT_FORMATS,
        default=None,
        help="What to write: documents as JSON lines, PubTator, BioC XML or JSON (offsets as each defines them), or "
        "an HTML page with the entities highlighted (displaCy; needs the spacy extra); CoNLL input as CoNLL. Default: "
        "the format --output's name says (.jsonl, .json, .pubtator, .bioc.xml, .xml, .bioc.json, .html, "
        ".conll, .tsv), else the input's own where it can be written back (PubTator, BioC, JSON lines, CoNLL), "
        "else JSON lines. A --format the name contradicts, or one the input cannot be written as, is refused.",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="Where to write (default: standard output); its name says the format (see --format). Not compressed: "
        "a .gz name is refused.",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace --output if it exists.")
    parser.add_argument(
        "--aggregation-strategy",
        choices=STRATEGIES,
        default=DEFAULT_STRATEGY,
        help="How subword predictions become entities (the pipeline's option; 'first' uses each word's first "
        "subword, as training does).",
    )
    _add_decoding_option(parser)
    parser.add_argument(
        "--min-score",
        type=_probability,
        default=None,
        help="Drop entities whose probability is below this (0 to 1): the product of its words' probabilities, "
        "or with a CRF its marginal (with --decoding argmax on text, the stock pipeline's mean score). CoNLL "
        "output labels a dropped entity's words O.",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="Texts or windows per forward pass.")
    _add_max_batch_tokens_option(parser)
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="Documents (or CoNLL sentences) read at a time and sorted by length into batches; memory stays "
        f"flat however long the input. A chunk is what a killed run does again, and what --shard deals out "
        f"(default: {CORPUS_CHUNK_SIZE} documents, 4096 sentences; under torchrun, fewer where that deals the "
        "documents evenly to every process).",
    )
    parser.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="Annotate only shard I of N (0 <= I < N) of the documents: chunk c is shard c %% N's, the same "
        "slice on every run. Under torchrun each process takes its own (leave --shard out).",
    )
    parser.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="skip",
        help="A document that cannot be read (bad JSON, an article without a PMID, ...): skip = warn, naming "
        "its file and record, count it and go on; stop = fail on it. Default: skip.",
    )
    parser.add_argument(
        "--num-threads",
        type=int,
        default=None,
        help="CPU threads per process, PyTorch's or an ONNX folder's onnxruntime's (default: torch's choice; under "
        "torchrun, the cores shared out among the processes).",
    )
    _add_device_options(parser)  # an ONNX folder from export-onnx runs on the CPU with onnxruntime
    _add_trust_option(parser)
    add_progress_option(
        parser,
        "No progress: a bar on a terminal, else (a batch job's log) a line every 30 s of documents done, "
        "documents/s, time left and errors.",
    )
    _add_engine_options(parser)
    return parser


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    """predict's ``--engine`` and ``--ray-*`` options (read by `ray_engine.predict_command_ray`)."""
    group = parser.add_argument_group("Ray (pip install 'hf-layer-tokclf[ray]')")
    group.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local = this process; ray = Ray Data, on this machine or a cluster (--ray-address): Ray reads "
        "--input (a corpus file, a folder of them, or a glob), and writes --output as a FOLDER of files, one per "
        "write task (JSON lines: *.jsonl; together, the records single-process predict writes).",
    )
    group.add_argument(
        "--ray-address",
        default=None,
        help="The Ray cluster to run on: auto (the one `ray start` started on this node), HEAD_IP:6379, "
        "ray://HEAD_IP:10001, or local (a new instance on this machine). Default: as ray.init() does, RAY_ADDRESS, "
        "else the cluster `ray start` started on this machine, else a new local instance.",
    )
    group.add_argument(
        "--ray-concurrency", type=int, default=1, help="Model actors: each loads the model once (default: 1)."
    )
    group.add_argument(
        "--ray-num-gpus", type=float, default=0, help="GPUs per actor (0.5 puts two on a GPU; default: 0, the CPU)."
    )
    group.add_argument("--ray-num-cpus", type=float, default=None, help="CPUs per actor (Ray's default: 1).")
    group.add_argument("--ray-batch-size", type=int, default=32, help="Documents per call of an actor (default: 32).")


def _predict_input(args: argparse.Namespace) -> tuple[str, str | None, bool]:
    """(format, JSON field with the text, whether pre-tokenized) of predict's input, checked before the model loads;
    ``args.format`` becomes the format to write (`documents.pick_output_format`: the one rule of every engine)."""
    from ..formats.data import read_json_records
    from ..formats.documents import detect_input_format, pick_output_format, text_column

    if args.text and args.input:
        raise ValueError("Give --text or --input, not both.")
    input_format = detect_input_format(args.input, args.input_format)
    if input_format != "text" and not args.input:
        raise ValueError(f"--input-format {input_format} needs --input FILE.")
    column, tokenized = None, False
    if input_format == "jsonl" and next(read_json_records(args.input), None) is not None:  # else: warned, empty output
        column, tokenized = text_column(args.input, args.text_column_name)
    args.format = pick_output_format(args.format, args.output, input_format, tokenized)
    if args.format == "html":
        require("spacy", "predict's HTML output")

    return input_format, column, tokenized


def predict_command(argv: Sequence[str]) -> int:
    args = predict_parser().parse_args(list(argv))
    import torch

    from ..annotation.annotate import Shard
    from ..annotation.parallel import World, pick_world_device, worker_threads, world_from_env
    from ..running.inference import label_scheme, load_model
    from ..running.serving import check_onnx_extra

    check_onnx_extra(args.model, "predict")
    if args.engine == "ray":
        require("ray", "predict --engine ray")
        from ..annotation.ray_engine import predict_command_ray

        return predict_command_ray(args)
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ValueError(f"--chunk-size must be at least 1, got {args.chunk_size}.")
    input_format, column, tokenized = _predict_input(args)
    world = world_from_env()
    if args.output:  # before the model loads: a refused output costs nothing
        _check_predict_output(args, world is not None)
        _KEPT_ON_INTERRUPT.append(lambda line: _partial_kept(args.output, line))
    shard = Shard.parse(args.shard) if args.shard else Shard()
    if (args.shard or world) and (input_format == "conll" or tokenized):
        raise ValueError("--shard and torchrun split documents; this input is pre-tokenized (CoNLL or word lists).")
    if world is not None:
        if args.shard or not args.output:
            raise ValueError("Under torchrun each process takes its shard and rank 0 merges them: give --output, "
                             "and no --shard.")  # fmt: skip
        args.device = pick_world_device(world, args.device)
    if world is not None or args.num_threads is not None:
        torch.set_num_threads(worker_threads(world or World(), args.num_threads))
    options = dict(
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        progress=not args.no_progress,
        decoding=args.decoding,
        min_score=args.min_score,
    )
    model, tokenizer = load_model(
        args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )
    if input_format == "conll":
        _predict_conll(args, model, tokenizer, label_scheme(model), _chunked(options, args.chunk_size))
    elif tokenized:
        _predict_word_lists(args, model, tokenizer, column, label_scheme(model), _chunked(options, args.chunk_size))
    else:
        _predict_documents(args, model, tokenizer, input_format, column, options, shard, world)
    return 0


def _check_predict_output(args: argparse.Namespace, world: bool) -> None:
    """predict's --output, checked as its writer will write it: documents and pre-tokenized sentences to a
    resumable file with its progress files (`annotate.ResumableOutput`), HTML (and torchrun's merged output)
    atomically."""
    from ..annotation.annotate import ResumableOutput

    if args.format == "html" or world:
        check_output_path(args.output, args.overwrite)
    else:
        ResumableOutput.check(args.output, args.overwrite)


def _chunked(options: dict[str, Any], chunk_size: int | None) -> dict[str, Any]:
    return {**options, "chunk_size": chunk_size} if chunk_size else options


def _predict_conll(args: argparse.Namespace, model: Any, tokenizer: Any, scheme: str, options: dict) -> None:
    """CoNLL in, CoNLL out: token, the gold label where the file has a label column, the predicted label.

    Streamed (`annotate.label_sentences`: chunk by chunk, resumable to --output). A first pass over the file,
    in flat memory (`data.scan_conll`), counts its sentences and decides, on the whole file as when it was read
    whole, whether its last column is labels and in which scheme: gold, kept beside the predictions in the
    model's scheme.
    """
    from ..annotation.annotate import label_sentences
    from ..formats.data import iter_conll, scan_conll, with_iob2
    from ..running.inference import conll_lines

    total, gold_scheme = scan_conll(args.input)
    sentences = iter_conll(args.input, labeled=gold_scheme is not None)
    if gold_scheme:  # in IOB2 as the model's labels are; both are written back in the model's scheme
        sentences = (with_iob2(sentence, gold_scheme) for sentence in sentences)
    label_sentences(
        model, tokenizer, sentences, lambda chunk, labels: "".join(conll_lines(chunk, labels, scheme=scheme)),
        args.output, run=_corpus_run(args, "conll"), overwrite=args.overwrite, total=total, **options,
    )  # fmt: skip


def _predict_word_lists(
    args: argparse.Namespace, model: Any, tokenizer: Any, column: str, scheme: str, options: dict
) -> None:
    """JSON lines of word lists (``Dataset.to_json``): each record back, with ``predictions`` (one label per word),
    streamed as CoNLL is (`annotate.label_sentences`)."""
    import json

    from ..annotation.annotate import label_sentences
    from ..formats.corpus import count_records
    from ..formats.data import Columns, from_iob2, iter_word_lists

    def render(chunk: list[Any], labels: list[list[str]]) -> str:
        return "".join(
            json.dumps({**sentence.fields, "predictions": from_iob2(own, scheme)}, ensure_ascii=False) + "\n"
            for sentence, own in zip(chunk, labels, strict=True)
        )

    sentences = iter_word_lists(args.input, Columns(tokens=column))
    total = count_records(args.input, "jsonl")
    label_sentences(
        model, tokenizer, sentences, render, args.output, run=_corpus_run(args, "jsonl"), overwrite=args.overwrite,
        total=total, **options,
    )  # fmt: skip


def _documents(args: argparse.Namespace, input_format: str, column: str | None) -> Iterator[Any]:
    """predict's documents (`corpus.Document`, or `corpus.RecordError` for a record that cannot be read), lazily."""
    from ..formats.corpus import Document, Passage, read_corpus, read_text_lines

    if input_format != "text":
        return read_corpus(args.input, input_format, **({"column": column} if column else {}))
    if not args.text:
        return read_text_lines(args.input)  # a file, or standard input
    return (
        Document(str(number), [Passage(text)], "--text", number, {"text": text})
        for number, text in enumerate(args.text, start=1)
    )


def _predict_documents(
    args: argparse.Namespace,
    model: Any,
    tokenizer: Any,
    input_format: str,
    column: str | None,
    options: dict[str, Any],
    shard: Any,
    world: Any,
) -> None:
    """Documents in, entities out (`annotate.annotate_corpus`): resumable to --output, merged under torchrun."""
    from ..annotation.annotate import CORPUS_CHUNK_SIZE, annotate_corpus, annotated_chunks, summary_path
    from ..formats.corpus import count_lines, count_records, get_writer
    from ..formats.documents import format_name

    common = dict(
        model=model,
        tokenizer=tokenizer,
        records=_documents(args, input_format, column),
        chunk_size=args.chunk_size or CORPUS_CHUNK_SIZE,
        on_error=args.on_error,
        aggregation_strategy=args.aggregation_strategy,
        **options,
    )
    if args.format == "html":
        _write_html(args, input_format, annotated_chunks(shard=shard, **common))
        return
    if args.text:
        total = len(args.text)
    elif args.input:
        total = count_lines(args.input) if input_format == "text" else count_records(args.input, input_format)
    else:
        total = None
    if world is not None:  # this rank's shard; a small input is dealt to every rank unless --chunk-size says
        shard = world.shard
        if total and not args.chunk_size:
            from ..annotation.parallel import world_chunk_size

            common["chunk_size"] = world_chunk_size(total, world.size)
    note = shard.short_input_note(total, common["chunk_size"], args.input) if total and args.input else None
    if note and (world is None or world.rank == 0):  # once: rank 0 speaks for all; empty parts are still written
        print(f"warning: {note}", file=sys.stderr)
    kwargs = dict(common, writer=get_writer(args.format), run=_corpus_run(args, input_format), total=total)
    if world is not None:
        from ..annotation.parallel import annotate_with_world

        summary = annotate_with_world(world, args.output, overwrite=args.overwrite, **kwargs)
    else:
        summary = annotate_corpus(output=args.output, shard=shard, overwrite=args.overwrite, **kwargs)
    if summary is not None:
        _warn_if_no_document(args, summary["records"])
    if summary is not None and args.output:
        print(f"{summary['documents']} documents annotated, written as {format_name(args.format)}, "
              f"{summary['errors']} skipped; summary in {summary_path(args.output)}", file=sys.stderr)  # fmt: skip


def _warn_if_no_document(args: argparse.Namespace, records: int) -> None:
    """An input without a single record is most likely the wrong one: said, though the (empty) output is written."""
    if records == 0:
        source = args.input or "standard input"
        print(f"warning: found no document in {source}; the output holds none.", file=sys.stderr)


def _corpus_run(args: argparse.Namespace, input_format: str) -> dict[str, Any]:
    """What a resumed run must share with the one it continues: the same input, model and options.

    The model's content and the input's are checked too: `annotate.describe_run` adds the model's
    digests, and `annotate.ResumableOutput.checked_input` hashes the records read.
    """
    source = Path(args.input) if args.input else None
    stat = source.stat() if source else None
    return {
        "input": str(source.resolve()) if source else None,
        "input_bytes": stat.st_size if stat else None,
        "input_format": input_format,
        "text_column_name": args.text_column_name,
        "output_format": args.format,
        "model": str(Path(args.model).resolve()) if Path(args.model).exists() else args.model,
        "aggregation_strategy": args.aggregation_strategy,
        "decoding": args.decoding,
        "min_score": args.min_score,
        "batch_size": args.batch_size,
        "device": args.device,
        "dtype": args.dtype,
    }


def _title(document: Any, input_format: str) -> str | None:
    """A document's id where its input has one (a JSON lines record may not; text lines have none)."""
    if input_format == "text":
        return None
    return document.fields.get("id") if input_format == "jsonl" else document.id


def _write_html(args: argparse.Namespace, input_format: str, chunks: Iterator[Any]) -> None:
    """An HTML page of the annotated documents with their entities highlighted (displaCy)."""
    from ..formats.corpus import document_text
    from ..formats.rendering import entities_html, write_html

    read = [0]

    def counted(chunks: Iterator[Any]) -> Iterator[Any]:
        for chunk in chunks:
            read[0] += chunk.records
            yield chunk

    records = (
        {"id": _title(document, input_format), "text": document_text(document), "entities": entities}
        for chunk in counted(chunks)
        for document, entities in zip(chunk.documents, chunk.entities, strict=True)
    )
    if args.output:
        write_html(args.output, records)
    else:
        sys.stdout.write(entities_html(records))
    _warn_if_no_document(args, read[0])


def push_parser(prog: str = "hf-layer-tokclf push") -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=prog,
        description="Share a trained output directory as a Hugging Face Hub model repository. The folder is "
        "staged (safetensors weights, config.json with auto_map, the three code files, tokenizer files, a README.md "
        "model card; nothing else), loaded in a fresh Python process through the Auto classes and the pipeline "
        "with trust_remote_code=True and compared with the source model, and only then uploaded, in one commit.",
    )
    add_model_argument(parser, "A trained output directory (hf-layer-tokclf train --output-dir).")
    parser.add_argument("--repo-id", required=True, help="The Hub repository, OWNER/NAME; created if missing.")
    parser.add_argument("--private", action="store_true", help="Create the repository private.")
    parser.add_argument("--revision", default=None, help="A branch to commit to (created if missing; default main).")
    parser.add_argument("--commit-message", default=None, help="The commit's title.")
    parser.add_argument(
        "--dry-run", action="store_true", help="Stage and verify, print the files, upload nothing, keep the folder."
    )
    parser.add_argument("--staging-dir", default=None, help="Stage here (new or empty) instead of a temporary folder.")
    parser.add_argument(
        "--overwrite-staging-dir", action="store_true", help="Empty a --staging-dir that a previous run filled."
    )
    parser.add_argument(
        "--token", default=None, help="A Hub token with write access (default: HF_TOKEN, else `hf auth login`'s)."
    )
    parser.add_argument(
        "--no-custom-code",
        action="store_true",
        help="Share the stock form instead (as export-transformers writes it): the family's own "
        "*ForTokenClassification with the layers used, no code files, no auto_map; verified without "
        "trust_remote_code. The stock pipeline decodes each token on its own (argmax). Refused for models that "
        "pool several layers or have a CRF.",
    )
    return parser


def push_command(argv: Sequence[str] | None = None, prog: str = "hf-layer-tokclf push") -> int:
    """The command line of ``hf-layer-tokclf push`` and ``push_to_hub.py``: 0, 2 for user errors, 1 for the Hub's."""
    from ..sharing.hub import push_to_hub

    args = push_parser(prog).parse_args(None if argv is None else list(argv))
    try:
        push_to_hub(
            args.model,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            dry_run=args.dry_run,
            staging_dir=args.staging_dir,
            token=args.token,
            overwrite_staging=args.overwrite_staging_dir,
            custom_code=not args.no_custom_code,
        )
    except ValueError as error:
        print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except HubError as error:
        print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    return 0


def sweep_parser() -> argparse.ArgumentParser:
    from ..base.defaults import SWEEP_DEFAULTS

    d = SWEEP_DEFAULTS
    parser = CommandParser(
        prog="hf-layer-tokclf sweep",
        description="Which layer? Runs the frozen encoder once over the data with all hidden states, trains "
        "one linear probe per layer on the cached first-subword vectors (all at once), and scores each with "
        "seqeval entity F1 on the dev data. Writes sweep.md (table), sweep.json and sweep.png (F1 and "
        "relative compute cost per layer; needs the plot extra, or --no-plot) to --output-dir, recommends the "
        "shallowest layer within "
        "--tolerance F1 of the best, and prints the `train` command that uses it.",
    )
    add_model_argument(
        parser, "Checkpoint folder or Hub id of a supported family (default: the packaged MiniLM).", required=False
    )
    parser.add_argument("--train-file", required=True, help="Training data: CoNLL, JSON lines or save_to_disk.")
    parser.add_argument("--validation-file", required=True, help="Dev data the probes are scored on.")
    parser.add_argument("--output-dir", required=True, help="Where sweep.md, sweep.json and sweep.png go.")
    parser.add_argument(
        "--layers", type=int, nargs="+", default=None, help="hidden_states indices to probe (default: all, 0..L)."
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=d["tolerance"],
        help="Recommend the shallowest layer within this many F1 points of the best (default: %(default)s).",
    )
    _add_probe_options(parser, d)
    _add_cache_options(parser, d)
    _add_finetune_options(parser, d)
    parser.add_argument(
        "--save-probe", action="store_true", help="Save the recommended layer's probe as a model in OUTPUT_DIR."
    )
    parser.add_argument(
        "--overwrite-output-dir",
        action="store_true",
        help="Replace an earlier sweep's files in a non-empty --output-dir; other files are kept.",
    )
    parser.add_argument("--seed", type=int, default=d["seed"], help="Order of the probe's training words.")
    parser.add_argument(
        "--no-plot",
        action="store_true",
        help='Write no sweep.png (it needs matplotlib: pip install "hf-layer-tokclf[plot]"); the table and JSON '
        "hold every figure.",
    )
    parser.add_argument(
        "--allow-rare-labels",
        action="store_true",
        help="Read the training labels as they are where they look like typos (as train's option).",
    )
    add_progress_option(parser, "No progress bars.")
    _add_decoding_option(parser)  # of the probes' dev predictions
    _add_device_options(parser)  # the encoder pass; the probes train on the CPU
    return parser


def _add_probe_options(parser: argparse.ArgumentParser, d: dict) -> None:
    """How the probes train, how the encoder pass cuts and batches the data, and how much of it is used."""
    parser.add_argument(
        "--epochs", type=int, default=d["epochs"], help="Probe epochs (default: >= 3 epochs and 600 steps)."
    )
    parser.add_argument(
        "--learning-rate", type=float, default=d["learning_rate"], help="Probe learning rate (default: %(default)s)."
    )
    parser.add_argument(
        "--batch-size", type=int, default=d["batch_size"], help="Windows per encoder pass (default: %(default)s)."
    )
    parser.add_argument(
        "--probe-batch-size",
        type=int,
        default=d["probe_batch_size"],
        help="Words per probe step (default: %(default)s).",
    )
    parser.add_argument("--max-length", type=int, default=None, help="Window length in subwords (default: model max).")
    parser.add_argument("--stride", type=int, default=None, help="Overlap between windows, in subwords.")
    parser.add_argument("--max-train-samples", type=int, default=None, help="Use only the first N training sentences.")
    parser.add_argument("--max-eval-samples", type=int, default=None, help="Use only the first N dev sentences.")


def _add_cache_options(parser: argparse.ArgumentParser, d: dict) -> None:
    """Where the cached features live while the probes train, and in which precision."""
    parser.add_argument(
        "--cache",
        choices=["memory", "disk"],
        default=None,
        help="Where the features live while the probes train (default: memory; disk with --cache-dir).",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="Folder for the disk cache (a temporary folder in it, deleted at the end)."
    )
    parser.add_argument(
        "--cache-dtype",
        choices=["float16", "float32"],
        default=d["cache_dtype"],
        help="Precision of the cached training features (default: %(default)s).",
    )


def _add_finetune_options(parser: argparse.ArgumentParser, d: dict) -> None:
    """--finetune-top: full fine-tuning runs at the best-value layers, beside the probes."""
    parser.add_argument(
        "--finetune-top",
        type=int,
        default=0,
        help="Also fine-tune the encoder at the N best-value layers (the recommended one, then by probe F1) "
        "with `train`'s defaults and add their dev F1 to the table and plot.",
    )
    parser.add_argument(
        "--finetune-epochs", type=float, default=d["finetune_epochs"], help="Epochs of each fine-tuning run."
    )
    parser.add_argument(
        "--finetune-learning-rate",
        type=float,
        default=d["finetune_learning_rate"],
        help="Learning rate of each fine-tuning run (default: %(default)s).",
    )


def sweep_command(argv: Sequence[str]) -> int:
    args = sweep_parser().parse_args(list(argv))
    from ..training.sweep import run_sweep

    result = run_sweep(
        args.train_file,
        args.validation_file,
        args.output_dir,
        model=args.model,
        layers=args.layers,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        finetune_top=args.finetune_top,
        finetune_epochs=args.finetune_epochs,
        finetune_learning_rate=args.finetune_learning_rate,
        overwrite_output_dir=args.overwrite_output_dir,
        save_probe=args.save_probe,
        plot=not args.no_plot,
        allow_rare_labels=args.allow_rare_labels,
        progress=not args.no_progress,
        tolerance=args.tolerance,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        probe_batch_size=args.probe_batch_size,
        max_length=args.max_length,
        stride=args.stride,
        cache=args.cache or ("disk" if args.cache_dir else "memory"),
        cache_dir=args.cache_dir,
        cache_dtype=args.cache_dtype,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        decoding=args.decoding,
    )
    print(result.table())
    k = result.recommended_layer
    print(
        f"\nrecommended: layer {k} (dev F1 {100 * result.f1[k]:.2f}, relative cost {result.relative_cost[k]:.2f}); "
        f"best: layer {result.best_layer} (dev F1 {100 * result.f1[result.best_layer]:.2f})"
    )
    written = [name for name in ("sweep.md", "sweep.json", "sweep.png") if Path(args.output_dir, name).is_file()]
    print(f"written to {args.output_dir}: {', '.join(written)}")  # no plot claimed when it was skipped
    print(f"\nfine-tune at layer {k}:\n  {result.train_command}")
    return 0


def export_onnx_parser() -> argparse.ArgumentParser:
    from ..base.defaults import DEFAULT_OPSET

    parser = CommandParser(
        prog="hf-layer-tokclf export-onnx",
        description="Export a trained model for serving: OUT_DIR/model.onnx (the encoder layers the model uses "
        "plus its head; inputs input_ids, attention_mask and, where the family has them, token_type_ids; output "
        "logits; dynamic batch and "
        "sequence axes), checked against PyTorch, with config.json, the tokenizer files and onnx_export.json "
        "beside it. With --quantize int8, model.onnx is the int8 model (onnxruntime dynamic quantization), "
        "for CPU serving. `predict` and `evaluate` accept OUT_DIR in place of a model directory.",
    )
    _add_export_options(parser, "A trained output directory (or any token classification model).")
    parser.add_argument(
        "--quantize", choices=["int8"], default=None, help="Quantize the weights to int8 (default: float32)."
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version (default: %(default)s).")
    return parser


def _add_export_options(parser: argparse.ArgumentParser, model_help: str) -> None:
    """MODEL_DIR OUT_DIR, --overwrite and --trust-remote-code: what every export takes."""
    add_model_argument(parser, model_help)
    parser.add_argument(
        "out_dir", metavar="OUT_DIR", help="The folder to write (refused if not empty, unless --overwrite)."
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace an earlier export in OUT_DIR (refused if it holds other files).",
    )
    _add_trust_option(parser)


def export_onnx_command(argv: Sequence[str]) -> int:
    import json

    args = export_onnx_parser().parse_args(list(argv))
    from ..running.export import OPTIMUM_CLASS, export_onnx
    from ..running.serving import EXPORT_INFO

    path = export_onnx(
        args.model,
        args.out_dir,
        quantize=args.quantize,
        opset=args.opset,
        overwrite=args.overwrite,
        trust_remote_code=args.trust_remote_code,
    )
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({'int8' if args.quantize else 'float32'}, {size:.1f} MiB) and the tokenizer beside it")
    info = json.loads((path.parent / EXPORT_INFO).read_text(encoding="utf-8"))
    if info["no_stock_form"] is None:
        print(
            f"config.json is the stock {info['model_type']} config ({', '.join(info['architectures'] or [])}): "
            f"Optimum loads it as it is, {OPTIMUM_CLASS}.from_pretrained({str(args.out_dir)!r}); see its README.md"
        )
    else:
        print(
            f"no stock form, so Optimum cannot load it: {info['no_stock_form']}. Load it with hf-layer-tokclf "
            f"(predict, evaluate, serving.OnnxTokenClassifier); see {Path(args.out_dir, CARD)}"
        )
    return 0


def export_transformers_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="hf-layer-tokclf export-transformers",
        description="Write a model that reads one hidden layer (no layer pooling, no CRF) as its family's stock "
        "transformers class, e.g. BertForTokenClassification with num_hidden_layers=k: OUT_DIR then loads with "
        "plain AutoModelForTokenClassification.from_pretrained(OUT_DIR) and pipeline('token-classification', "
        "model=OUT_DIR), without trust_remote_code or this package, on transformers 4.57 and 5.x. Checked at "
        "export: the same logits as the source model. The stock pipeline decodes each token on its own (argmax).",
    )
    _add_export_options(parser, "A trained output directory (one --hidden-layer, no --crf).")
    return parser


def export_transformers_command(argv: Sequence[str]) -> int:
    import json

    args = export_transformers_parser().parse_args(list(argv))
    from ..running.stock_export import EXPORT_INFO, export_transformers

    out_dir = export_transformers(
        args.model, args.out_dir, overwrite=args.overwrite, trust_remote_code=args.trust_remote_code
    )
    info = json.loads((out_dir / EXPORT_INFO).read_text(encoding="utf-8"))
    files = ", ".join(sorted(path.name for path in out_dir.iterdir() if not is_bookkeeping(path.name)))
    print(
        f"wrote {out_dir}: {info['class']} with {info['num_hidden_layers']} layers (hidden_layer="
        f"{info['hidden_layer']} of {info['backbone_num_hidden_layers']}), logits within "
        f"{info['max_abs_diff_vs_source']:.1g} of the source ({files})"
    )
    return 0


# What a command leaves behind to go on from, should Ctrl-C stop it: a command that keeps something adds
# a note (given the command line, it says what is kept and how to go on); `main` prints it in one line.
_KEPT_ON_INTERRUPT: list[Callable[[str], str | None]] = []


def _partial_kept(output: str, line: str) -> str | None:
    """predict's note: the partial output (torchrun's shards' too), if one was started, and the command that resumes."""
    output_path = Path(output)
    partials = sorted(output_path.parent.glob(f"{glob.escape(output_path.name)}*.partial"))
    if not partials:
        return None
    return f"the partial output {', '.join(map(str, partials))} is kept, and the same command resumes it: {line}"


def _checkpoint_kept(output_dir: str, line: str, resume: bool) -> str:
    """train's note: the last complete checkpoint, if one was saved, and the command that goes on from it."""
    from ..training.trainer import last_complete_checkpoint

    again = line if resume else f"{line} --resume"
    checkpoint = last_complete_checkpoint(output_dir) if output_dir else None
    if checkpoint is None:
        return f"no checkpoint was saved in {output_dir} yet; this starts again: {again}"
    return f"checkpoint {checkpoint} is kept, and --resume continues from it: {again}"


# Each subcommand's parser: its --help, and the README's option table (`cli_reference`).
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "train": train_parser,
    "evaluate": evaluate_parser,
    "predict": predict_parser,
    "push": push_parser,
    "sweep": sweep_parser,
    "export-onnx": export_onnx_parser,
    "export-transformers": export_transformers_parser,
}

COMMANDS = {
    "train": train_command,
    "evaluate": evaluate_command,
    "predict": predict_command,
    "push": push_command,
    "sweep": sweep_command,
    "export-onnx": export_onnx_command,
    "export-transformers": export_transformers_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the subcommand ``argv`` names (default: the command line's) and returns the exit status.

    A reader that leaves early (``predict ... | head``) ends the run quietly, with the status of a process
    SIGPIPE ended (141), as other command-line tools do: no "Broken pipe" error, no traceback.
    """
    try:
        try:
            return _run_command(argv)
        finally:
            sys.stdout.flush()  # here, not at the interpreter's exit: a reader that left is caught below
    except BrokenPipeError:
        _stdout_to_devnull()
        return SIGPIPE_STATUS


SIGPIPE_STATUS = 128 + 13  # the shell's status of a process that SIGPIPE ended


def _stdout_to_devnull() -> None:
    """Points standard output at /dev/null, as Python's documentation advises after a BrokenPipeError: what is
    still buffered then goes nowhere, instead of failing again when the interpreter flushes it at exit."""
    try:
        descriptor = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (a test's capture): nothing is flushed at exit
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)


def _run_command(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    remember_secrets_in(argv)  # their values are masked in every file written from here on (redaction)
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"hf-layer-tokclf: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    _KEPT_ON_INTERRUPT.clear()
    try:
        return command(argv[1:])
    except KeyboardInterrupt:  # Ctrl-C: what was kept and how to go on, in one line, not a traceback
        line = redact_command(["hf-layer-tokclf", *argv])  # printed: secret options' values hidden
        notes = [note for note in (kept(line) for kept in _KEPT_ON_INTERRUPT) if note]
        return _say(argv[0], f"interrupted; {'; '.join(notes) or 'nothing was kept to resume from'}", 130)
    except ValueError as error:  # DataError, OutputExistsError and bad option values: the user can fix them
        return _say(argv[0], f"error: {error}", 2)
    except HubError as error:  # train --push-to-hub: the model is saved, the Hub failed
        return _say(argv[0], f"error: {error}", 1)
    except BrokenPipeError:  # the reader of standard output left (| head): `main` ends quietly
        raise
    except OSError as error:  # a Hub id that cannot be fetched, a full disk: the environment, not a bug
        return _say(argv[0], f"error: {' '.join(str(error).split())}", 1)


def _say(command: str, message: str, code: int) -> int:
    """Prints ``hf-layer-tokclf COMMAND: MESSAGE`` on stderr, any secret the process knows masked; returns ``code``."""
    print(f"hf-layer-tokclf {command}: {scrub_text(message)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())

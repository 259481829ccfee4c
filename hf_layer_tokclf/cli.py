"""The ``hf-layer-tokclf`` command: a thin layer over the package's functions.

Each subcommand parses its options and calls one function that the tests call directly.
Errors the user can fix (bad data, an output that exists) print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from .files import check_output_file, write_json
from .hub import HubError

USAGE = """hf-layer-tokclf <command> [options]

Token classification from a chosen hidden layer of a BERT encoder.

commands:
  train      fine-tune a model on CoNLL / JSON lines / datasets data (the Trainer's options apply)
  evaluate   entity-level precision, recall and F1 of a trained model on labeled data
  predict    entities in raw text (JSON lines out), or labels for pre-tokenized CoNLL
  push       share a trained model on the Hugging Face Hub, verified first (as push_to_hub.py)

Run `hf-layer-tokclf <command> --help` for a command's options.
"""


def _train_parser():
    from transformers import HfArgumentParser, TrainingArguments

    from .training import TRAINING_DEFAULTS, DataArguments, ModelArguments, RunArguments

    parser = HfArgumentParser(
        (ModelArguments, DataArguments, RunArguments, TrainingArguments),
        prog="hf-layer-tokclf train",
        description="Fine-tune BertForLayerTokenClassification with the Hugging Face Trainer. Every "
        "TrainingArguments option is accepted, spelled --like-this or --like_this. Defaults that differ "
        "from the Trainer's: " + ", ".join(f"{k}={v}" for k, v in TRAINING_DEFAULTS.items()) + ".",
    )
    parser.set_defaults(**TRAINING_DEFAULTS)
    return parser


def train_command(argv: Sequence[str]) -> int:
    from .training import train

    model_args, data_args, run_args, training_args = _train_parser().parse_args_into_dataclasses(list(argv))
    command = shlex.join(["hf-layer-tokclf", "train", *argv])
    metrics = train(model_args, data_args, training_args, run_args, command=command)
    if "test_f1" in metrics:
        print(f"test F1: {100 * metrics['test_f1']:.2f}  ({training_args.output_dir}/metrics.json)")
    return 0


def _evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-layer-tokclf evaluate",
        description="Score a trained model on labeled data: seqeval entity-level precision, recall and F1, "
        "overall and per entity type, over every gold token (long sentences go through windows).",
    )
    parser.add_argument("model_dir", help="A trained output directory (or any token classification model).")
    parser.add_argument("--data", required=True, help="Labeled data: CoNLL, JSON lines, or a save_to_disk folder.")
    parser.add_argument("--split", default=None, help="The split to use when --data is a DatasetDict.")
    parser.add_argument(
        "--output", default=None, help="JSON file for the scores (default: MODEL_DIR/eval_<data>.json)."
    )
    parser.add_argument("--predictions", default=None, help="Also write CoNLL: token, gold label, predicted label.")
    parser.add_argument("--overwrite", action="store_true", help="Replace --output / --predictions if they exist.")
    parser.add_argument("--batch-size", type=int, default=32, help="Windows per forward pass.")
    parser.add_argument("--max-length", type=int, default=None, help="Window length in subwords (default: model max).")
    parser.add_argument("--stride", type=int, default=None, help="Overlap between windows, in subwords.")
    return parser


def evaluate_command(argv: Sequence[str]) -> int:
    args = _evaluate_parser().parse_args(list(argv))
    from .data import load_sentences, normalize_labels
    from .inference import evaluate_sentences, flat_scores, load_model, write_conll
    from .metrics import format_scores

    stem = Path(args.data).name.split(".")[0] or "data"
    output = check_output_file(args.output or Path(args.model_dir) / f"eval_{stem}.json", args.overwrite)
    if args.predictions:
        check_output_file(args.predictions, args.overwrite)
    sentences, _ = normalize_labels(load_sentences(args.data, split=args.split))
    model, tokenizer = load_model(args.model_dir)
    scores, predictions = evaluate_sentences(
        model, tokenizer, sentences, batch_size=args.batch_size, max_length=args.max_length, stride=args.stride
    )
    print(format_scores(scores))
    write_json(output, {**flat_scores(scores, "eval"), "data": str(args.data), "model": str(args.model_dir)})
    print(f"scores written to {output}")
    if args.predictions:
        write_conll(args.predictions, sentences, predictions)
    return 0


def _predict_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-layer-tokclf predict",
        description="Find entities with a trained model. Raw text (--text, --input, or standard input; one "
        "document per line) gives JSON lines: {'text', 'entities': [{entity_group, score, word, start, end}]}, "
        "with character offsets. Pre-tokenized CoNLL (--input-format conll) gives CoNLL with a predicted "
        "label column.",
    )
    parser.add_argument("model_dir", help="A trained output directory (or any token classification model).")
    parser.add_argument("--text", action="append", help="A document to tag; repeat for several.")
    parser.add_argument("--input", default=None, help="A file: one document per line, or CoNLL.")
    parser.add_argument("--input-format", choices=["text", "conll"], default="text", help="How --input is read.")
    parser.add_argument("--output", default=None, help="Where to write (default: standard output).")
    parser.add_argument("--overwrite", action="store_true", help="Replace --output if it exists.")
    parser.add_argument(
        "--aggregation-strategy",
        choices=["none", "simple", "first", "average", "max"],
        default="first",
        help="How subword predictions become entities (the pipeline's option; 'first' uses each word's first "
        "subword, as training does).",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="Texts or windows per forward pass.")
    return parser


def _lines(path: str | None) -> Iterator[str]:
    stream = sys.stdin if path is None else open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        for line in stream:
            yield line.rstrip("\r\n")
    finally:
        if path is not None:
            stream.close()


def predict_command(argv: Sequence[str]) -> int:
    args = _predict_parser().parse_args(list(argv))
    from .data import load_sentences
    from .inference import conll_lines, load_model, predict_sentences, predict_texts, write_conll, write_jsonl

    if args.text and args.input:
        raise ValueError("Give --text or --input, not both.")
    if args.output:
        check_output_file(args.output, args.overwrite)
    model, tokenizer = load_model(args.model_dir)
    if args.input_format == "conll":
        if not args.input:
            raise ValueError("--input-format conll needs --input FILE.")
        sentences = load_sentences(args.input, labeled=False)
        predictions = predict_sentences(model, tokenizer, sentences, batch_size=args.batch_size)
        if args.output:
            write_conll(args.output, sentences, predictions)
        else:
            sys.stdout.writelines(conll_lines(sentences, predictions))
        return 0
    texts = list(args.text) if args.text else list(_lines(args.input))
    entities = predict_texts(
        model, tokenizer, texts, aggregation_strategy=args.aggregation_strategy, batch_size=args.batch_size
    )
    records = ({"text": text, "entities": found} for text, found in zip(texts, entities, strict=True))
    if args.output:
        write_jsonl(args.output, records)
    else:
        import json

        for record in records:
            print(json.dumps(record, ensure_ascii=False), flush=True)
    return 0


def push_command(argv: Sequence[str]) -> int:
    from .hub import command

    return command(argv, prog="hf-layer-tokclf push")


COMMANDS = {"train": train_command, "evaluate": evaluate_command, "predict": predict_command, "push": push_command}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"hf-layer-tokclf: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return command(argv[1:])
    except ValueError as error:  # DataError, OutputExistsError and bad option values: the user can fix them
        print(f"hf-layer-tokclf {argv[0]}: error: {error}", file=sys.stderr)
        return 2
    except HubError as error:  # train --push-to-hub: the model is saved, the Hub failed
        print(f"hf-layer-tokclf {argv[0]}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

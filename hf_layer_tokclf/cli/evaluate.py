"""``hf-layer-tokclf evaluate``: a trained model's entity-level scores on labeled data."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..base.files import write_json
from ..base.outputs import check_output_path
from .options import add_decoding_option, add_device_options, add_max_batch_tokens_option, add_trust_option
from .parsing import CommandParser, add_model_argument


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
    add_max_batch_tokens_option(parser)
    parser.add_argument("--max-length", type=int, default=None, help="Window length in subwords (default: model max).")
    parser.add_argument("--stride", type=int, default=None, help="Overlap between windows, in subwords.")
    add_decoding_option(parser)
    add_device_options(parser)
    add_trust_option(parser)
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
    from ..formats.loading import label_names_from
    from ..formats.records import Columns

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
    from ..formats.conll import check_conll_columns
    from ..formats.labels import check_known_labels, normalize_labels
    from ..formats.loading import load_sentences
    from ..running.loading import load_model
    from ..running.metrics import format_scores
    from ..running.sentences import evaluate_sentences, flat_scores, label_scheme, write_conll
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

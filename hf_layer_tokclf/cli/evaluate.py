"""``hf-layer-tokclf evaluate``: a trained model's entity-level scores on labeled data."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..base.files import write_json
from ..base.outputs import check_output_path
from .options import add_decoding_option, add_device_options, add_max_batch_tokens_option, add_trust_option, task_values
from .parsing import CommandParser, add_model_argument


def evaluate_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="hf-layer-tokclf evaluate",
        description="Score a trained model on labeled data: seqeval entity-level precision, recall and F1, "
        "overall and per entity type, over every gold token (long sentences go through windows).",
    )
    add_model_argument(parser, "A trained output directory (or any token classification model).")
    parser.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="[TASK=]PATH",
        help="Labeled data: CoNLL, JSON lines, or a save_to_disk folder. A multi-task model is scored task by task, "
        "each on its own data: --data disease=PATH --data cg=PATH (a bare PATH only where the model has one task).",
    )
    parser.add_argument("--split", default=None, help="The split to use when --data is a DatasetDict.")
    _add_column_options(parser)
    parser.add_argument(
        "--output",
        default=None,
        help="JSON file for the scores (default: MODEL_DIR/eval_<data>.json for a local folder, "
        "./eval_<owner>--<name>_<data>.json for a Hub id).",
    )
    parser.add_argument(
        "--predictions",
        action="append",
        default=None,
        metavar="[TASK=]PATH",
        help="Also write CoNLL: token, gold label, predicted label (for a multi-task model: TASK=PATH, per task).",
    )
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
    ``data``: the path, or for several tasks' data ``TASK-STEM_TASK-STEM`` (`_data_stem`).
    """
    stem = Path(data).name.split(".")[0] or "data"
    if Path(model).is_dir():
        return Path(model) / f"eval_{stem}.json"
    flat = re.sub(r"[^A-Za-z0-9._-]+", "--", str(model)).strip("-.") or "model"
    return Path(f"eval_{flat}_{stem}.json")


def _data_stem(datasets: dict[str | None, str]) -> str:
    """The data part of the default output name: the one path, or ``disease-test_cg-test`` for tasks' data."""
    if None in datasets:
        return datasets[None]
    return "_".join(f"{task}-{Path(path).name.split('.')[0] or 'data'}" for task, path in datasets.items())


def _per_task(option: str, values: Sequence[str]) -> dict[str | None, str]:
    """``--option [TASK=]PATH`` values by task (`options.task_values`); a bare path is ``{None: path}``."""
    found = task_values(option, values)
    return {} if found is None else found if isinstance(found, dict) else {None: found}


def evaluate_command(argv: Sequence[str]) -> int:
    args = evaluate_parser().parse_args(list(argv))
    from ..running.loading import load_model
    from ..running.onnx_runner import check_onnx_extra
    from ..running.sentences import flat_scores, write_conll

    check_onnx_extra(args.model, "evaluate")
    datasets = _per_task("--data", args.data)
    predictions = _per_task("--predictions", args.predictions or [])
    if set(predictions) - set(datasets):
        raise ValueError(f"--predictions names {_tasks_named(set(predictions) - set(datasets))}, but --data does not.")
    output = check_output_path(args.output or _default_eval_output(args.model, _data_stem(datasets)), args.overwrite)
    for path in predictions.values():
        check_output_path(path, args.overwrite)
    loaded = {task: _load_data(args, path, task in predictions) for task, path in datasets.items()}
    model, tokenizer = load_model(
        args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )
    heads = {task: _checked_head(model, args.model, task, *loaded[task]) for task in datasets}  # before any scoring
    record: dict[str, Any] = {}
    for task, (_, sentences) in loaded.items():
        scores, predicted = _scores(args, model, tokenizer, task, sentences)
        record.update(flat_scores(scores, "eval" if task is None else f"eval_{task}"))
        if task in predictions:  # in the scheme the model was trained in, both columns
            write_conll(predictions[task], sentences, predicted, scheme=heads[task].scheme)
    data = datasets[None] if None in datasets else dict(datasets)
    write_json(output, {**record, "decoding": args.decoding, "data": data, "model": str(args.model)})
    print(f"scores written to {output}")
    return 0


def _tasks_named(tasks: Any) -> str:
    return ", ".join(task or "a bare PATH" for task in sorted(tasks, key=str))


def _load_data(args: argparse.Namespace, path: str, predictions: bool) -> tuple[list[Any], list[Any]]:
    """The sentences of ``path`` as read and in IOB2; those --predictions could not write are refused now."""
    from ..formats.conll import check_conll_columns
    from ..formats.labels import normalize_labels
    from ..formats.loading import load_sentences

    as_read = load_sentences(path, split=args.split, columns=_columns(args))
    sentences, scheme = normalize_labels(as_read)
    for sentence in sentences if predictions else ():
        check_conll_columns(sentence)
    print(f"label scheme of {path}: {scheme}")
    return as_read, sentences


def _checked_head(model: Any, model_name: str, task: str | None, as_read: list[Any], sentences: list[Any]) -> Any:
    """The head ``task``'s data is scored with (`tasks.task_head`), its labels checked against the data's: named as
    the file writes them (I-Diseas, not its IOB2 form B-Diseas), with file and line."""
    from ..formats.labels import check_known_labels
    from ..running.tasks import task_head

    head = task_head(model, task)
    known_as = f"the labels of {model_name}" + ("" if head.name is None else f" for task {head.name!r}")
    check_known_labels(as_read, head.label2id, known_as=known_as)
    return head


def _scores(
    args: argparse.Namespace, model: Any, tokenizer: Any, task: str | None, sentences: list[Any]
) -> tuple[dict[str, Any], list[list[str]]]:
    """``task``'s scores on its own data (`sentences.evaluate_sentences`), printed."""
    from ..running.metrics import format_scores
    from ..running.sentences import evaluate_sentences

    scores, predicted = evaluate_sentences(
        model,
        tokenizer,
        sentences,
        task=task,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        max_length=args.max_length,
        stride=args.stride,
        decoding=args.decoding,
    )
    if task is not None:
        print(f"task {task}:")
    print(format_scores(scores))
    return scores, predicted

"""``hf-layer-tokclf predict``: its options, the input and output checked before the model loads, and the
engine that runs it (this process and `predict_local`, torchrun's processes, or Ray: `predict_ray`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ..base.extras import require
from ..base.outputs import check_output_path
from .interrupts import KEPT_ON_INTERRUPT, partial_kept
from .options import (
    add_decoding_option,
    add_device_options,
    add_max_batch_tokens_option,
    add_trust_option,
    probability,
)
from .parsing import CommandParser, add_model_argument, add_progress_option
from .predict_local import predict_conll, predict_documents, predict_word_lists


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
    add_decoding_option(parser)
    parser.add_argument(
        "--tasks",
        default=None,
        metavar="NAME,NAME",
        help="A multi-task model's tasks to predict, comma-separated (default: all, in the model's order). Each "
        "entity says its task ('task': 'disease'); entities of different tasks may overlap, and all are kept. CoNLL "
        "output gets a label column per task, in this order (or the model's).",
    )
    parser.add_argument(
        "--min-score",
        type=probability,
        default=None,
        help="Drop entities whose probability is below this (0 to 1): the product of its words' probabilities, "
        "or with a CRF its marginal (with --decoding argmax on text, the stock pipeline's mean score). CoNLL "
        "output labels a dropped entity's words O.",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="Texts or windows per forward pass.")
    add_max_batch_tokens_option(parser)
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
    add_device_options(parser)  # an ONNX folder from export-onnx runs on the CPU with onnxruntime
    add_trust_option(parser)
    add_progress_option(
        parser,
        "No progress: a bar on a terminal, else (a batch job's log) a line every 30 s of documents done, "
        "documents/s, time left and errors.",
    )
    _add_engine_options(parser)
    return parser


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    """predict's ``--engine`` and ``--ray-*`` options (read by `predict_ray.predict_command_ray`)."""
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
    from ..formats.documents import detect_input_format, pick_output_format, text_column
    from ..formats.records import read_json_records

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

    from ..annotation.chunks import Shard
    from ..annotation.parallel import World, pick_world_device, worker_threads, world_from_env
    from ..running.loading import load_model
    from ..running.onnx_runner import check_onnx_extra
    from ..running.sentences import label_scheme
    from ..running.tasks import model_heads, parse_tasks

    check_onnx_extra(args.model, "predict")
    if args.engine == "ray":
        require("ray", "predict --engine ray")
        from .predict_ray import predict_command_ray

        return predict_command_ray(args)
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ValueError(f"--chunk-size must be at least 1, got {args.chunk_size}.")
    input_format, column, tokenized = _predict_input(args)
    world = world_from_env()
    if args.output:  # before the model loads: a refused output costs nothing
        _check_predict_output(args, world is not None)
        KEPT_ON_INTERRUPT.append(lambda line: partial_kept(args.output, line))
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
        tasks=parse_tasks(args.tasks),
    )
    model, tokenizer = load_model(
        args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )
    model_heads(model, options["tasks"])  # an unknown task refused before any output is written
    scheme = label_scheme(model, options["tasks"])
    if input_format == "conll":
        predict_conll(args, model, tokenizer, scheme, _chunked(options, args.chunk_size))
    elif tokenized:
        predict_word_lists(args, model, tokenizer, column, scheme, _chunked(options, args.chunk_size))
    else:
        predict_documents(args, model, tokenizer, input_format, column, options, shard, world)
    return 0


def _check_predict_output(args: argparse.Namespace, world: bool) -> None:
    """predict's --output, checked as its writer will write it: documents and pre-tokenized sentences to a
    resumable file with its progress files (`resumable.ResumableOutput`), HTML (and torchrun's merged output)
    atomically."""
    from ..annotation.resumable import ResumableOutput

    if args.format == "html" or world:
        check_output_path(args.output, args.overwrite)
    else:
        ResumableOutput.check(args.output, args.overwrite)


def _chunked(options: dict[str, Any], chunk_size: int | None) -> dict[str, Any]:
    return {**options, "chunk_size": chunk_size} if chunk_size else options

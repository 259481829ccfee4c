"""Past one machine: entities of a corpus with Ray Data (``pip install "hf-layer-tokclf[ray]"``).

`annotate_dataset` maps a ``ray.data.Dataset`` of documents to the same rows with an ``entities``
column: ``map_batches`` runs a pool of actors (``concurrency`` of them, ``num_gpus`` each), each of
which loads the model once and annotates blocks of rows with `annotate.annotate_documents`, so the
entities are those single-process ``predict`` finds, with the same options, offsets into the document.

`predict_with_ray` is ``predict --engine ray``: Ray reads the corpus files (any number of them: a
file, a folder, a glob, a list; local paths on a shared filesystem, or ``s3://``, ``gs://``), a task
per file parses it with `corpus.read_corpus`, the actors annotate, and Ray writes a FOLDER of
files, one per write task, each a complete file of the output format (`corpus.get_writer`: header,
documents, footer). Documents are spread over the actors by file and block, so a corpus of one huge
file is annotated by one actor: split it (the PubMed baseline comes as ~1,200 files).

On a cluster every node needs this package, its dependencies and the same Ray version, and the
model folder must be readable on every node (a shared filesystem, or a Hub id)::

    ray start --head                       # on the head node
    ray start --address=HEAD_IP:6379       # on each worker node
    hf-layer-tokclf predict MODEL --input corpus/ --input-format jsonl --output entities/ \\
        --engine ray --ray-address auto --ray-concurrency 8 --ray-num-gpus 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
import ray.data
from ray.data.datasource import BlockBasedFileDatasink

from ..base.code_consent import caller_consent
from ..base.files import OutputExistsError
from ..base.manifest import output_names
from ..base.outputs import OutputClaim, Outputs, claim_output_dir
from ..formats.corpus import (
    CORPUS_FORMATS,
    OUTPUT_FORMATS,
    Document,
    Passage,
    RecordError,
    get_writer,
    read_corpus,
    render_document,
)
from ..formats.documents import format_name, pick_output_format
from .annotate import ON_ERROR, annotate_documents

__all__ = [
    "RayPrediction",
    "annotate_dataset",
    "connect",
    "entities_type",
    "predict_command_ray",
    "predict_with_ray",
    "read_corpus_dataset",
]

logger = logging.getLogger(__name__)

# The file name Ray gives an output file of the format; a name a format has no entry for is used as the extension.
OUTPUT_EXTENSIONS = {"jsonl": "jsonl", "bioc": "xml", "bioc-json": "json", "pubtator": "pubtator"}

# The parsed documents, as rows. Arrow needs one schema for every block, so what varies in shape (a JSON
# record's other fields, BioC's infons) travels as JSON text; ``error`` is set, and nothing else, on a
# record `read_corpus` could not read (kept as a row so that the write step can count and name it).
PASSAGE_TYPE = pa.struct([("text", pa.string()), ("offset", pa.int64()), ("infons", pa.string())])
DOCUMENT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("passages", pa.list_(PASSAGE_TYPE)),
        ("source", pa.string()),
        ("record", pa.int64()),
        ("fields", pa.string()),
        ("error", pa.string()),
    ]
)


def entities_type(aggregation_strategy: str = "first") -> pa.DataType:
    """The Arrow type of an ``entities`` cell: a list of ``{entity_group, score, word, start, end}``.

    Typed up front, not inferred, so that a block whose documents have no entities (a list of nothing)
    and one with entities concatenate. ``"none"`` names the label ``entity``, as the pipeline does.
    """
    label = "entity" if aggregation_strategy == "none" else "entity_group"
    return pa.list_(
        pa.struct(
            [
                (label, pa.string()),
                ("score", pa.float64()),  # a float32 probability, exactly, as predict's JSON has it
                ("word", pa.string()),
                ("start", pa.int64()),
                ("end", pa.int64()),
            ]
        )
    )


def _row_document(row: dict[str, Any], text_column: str) -> Document:
    """The `corpus.Document` of a row: its ``passages`` (text, offset) where it has them, else its text column."""
    if row.get("passages") is not None:
        passages = [
            Passage(p["text"], p.get("offset") or 0, json.loads(p.get("infons") or "{}")) for p in row["passages"]
        ]
    else:
        passages = [Passage(row[text_column])]
    fields = row.get("fields")
    return Document(
        str(row.get("id", "")),
        passages,
        row.get("source") or "",
        row.get("record") or 0,
        json.loads(fields) if isinstance(fields, str) else {},
    )


def _document_row(document: Document) -> dict[str, Any]:
    """A `corpus.Document` as a row of `DOCUMENT_SCHEMA` (what `_row_document` reads back)."""
    return {
        "id": document.id,
        "passages": [{"text": p.text, "offset": p.offset, "infons": json.dumps(p.infons)} for p in document.passages],
        "source": document.source,
        "record": document.record,
        "fields": json.dumps(document.fields, ensure_ascii=False),
        "error": None,
    }


class _Annotator:
    """One per actor of the pool: loads the model once, then annotates each batch of rows it is given."""

    def __init__(
        self,
        model_dir: str,
        text_column: str,
        device: str | None,
        dtype: str,
        trust_remote_code: bool | None,
        options: dict[str, Any],
    ) -> None:
        from ..running.loading import load_model

        self.model, self.tokenizer = load_model(
            model_dir, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        self.text_column = text_column
        self.options = options
        self.type = entities_type(options.get("aggregation_strategy", "first"))

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        readable = [i for i, row in enumerate(rows) if not row.get("error")]  # unreadable records get no entities
        documents = [_row_document(rows[i], self.text_column) for i in readable]
        found: list[list[dict]] = [[] for _ in rows]
        if documents:
            entities = annotate_documents(self.model, self.tokenizer, documents, **self.options)
            for i, own in zip(readable, entities, strict=True):
                found[i] = own
        if "entities" in batch.column_names:  # a dataset annotated before: its entities are replaced
            batch = batch.drop_columns(["entities"])
        return batch.append_column("entities", pa.array(found, type=self.type))


def annotate_dataset(
    dataset: ray.data.Dataset,
    model_dir: str | Path,
    *,
    text_column: str = "text",
    concurrency: int | tuple[int, int] = 1,
    num_gpus: float = 0,
    num_cpus: float | None = None,
    batch_size: int = 32,
    device: str | None = None,
    dtype: str = "auto",
    trust_remote_code: bool | None = None,
    **predict_options: Any,
) -> ray.data.Dataset:
    """The rows of ``dataset`` with an ``entities`` column: each document's entities, offsets into its text.

    Args:
        dataset: Rows with a ``text_column`` (or ``passages``: a list of ``{text, offset}``, as
            `read_corpus_dataset` makes them); other columns pass through.
        model_dir: A model folder every worker can read (or a Hub id).
        concurrency: Actors in the pool, each holding a copy of the model; ``(min, max)`` lets Ray scale it.
        num_gpus: GPUs for each actor (a fraction shares one); with any, the model runs on its GPU.
        num_cpus: CPUs for each actor (Ray's default: 1; torch then runs one thread).
        batch_size: Rows per call of an actor (one `annotate.annotate_documents`, sorted by length there).
        device, dtype, trust_remote_code: as `inference.load_model` takes them, in each actor.
        predict_options: `inference.predict_texts` options: ``forward_batch_size`` (its ``batch_size``,
            windows per forward pass), ``aggregation_strategy``, ``decoding``, ``min_score``,
            ``max_length``, ``stride``.

    Returns:
        A lazy dataset: nothing runs until it is consumed (written, iterated, materialized).
    """
    if "forward_batch_size" in predict_options:
        predict_options["batch_size"] = predict_options.pop("forward_batch_size")
    predict_options["progress"] = False  # a bar per actor would interleave; Ray shows its own progress
    if device is None:
        device = "cuda" if num_gpus else "cpu"
    if isinstance(concurrency, int):
        compute = ray.data.ActorPoolStrategy(size=concurrency)
    else:
        compute = ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    resources = {"num_cpus": num_cpus} if num_cpus is not None else {}
    return dataset.map_batches(
        _Annotator,
        # The driver's answer, as a bool: an actor on another node must not answer from its own environment.
        fn_constructor_args=(
            str(model_dir),
            text_column,
            device,
            dtype,
            caller_consent(trust_remote_code),
            predict_options,
        ),
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=compute,
        num_gpus=num_gpus,
        **resources,
    )


def _parse_files(batch: pa.Table, corpus_format: str, read_options: dict[str, Any], on_error: str) -> pa.Table:
    """The documents of each file of ``batch`` (``path`` and ``bytes`` columns), as rows of `DOCUMENT_SCHEMA`."""
    rows = []
    for path, data in zip(batch.column("path").to_pylist(), batch.column("bytes").to_pylist(), strict=True):
        # read_corpus reads a path: the bytes go to a local file named as the original (a reader may go by
        # the name's suffix, as .gz), and the documents and errors name the original.
        suffix = "".join(Path(path).suffixes)[-20:]
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / f"corpus{suffix}"
            local.write_bytes(data)
            for item in read_corpus(local, corpus_format, **read_options):
                if isinstance(item, RecordError):
                    if on_error == "stop":
                        raise RecordError(path, item.record, item.reason, item.unit)
                    rows.append({"source": path, "record": item.record, "passages": [], "error": item.reason})
                    continue
                item.source = path
                rows.append(_document_row(item))
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def read_corpus_dataset(
    input_path: str | Sequence[str],
    input_format: str,
    *,
    text_column: str = "text",
    on_error: str = "skip",
) -> ray.data.Dataset:
    """A corpus as a dataset of documents (`DOCUMENT_SCHEMA`): Ray reads the files, a task per file parses one.

    Every format goes through `corpus.read_corpus` (JSON lines too, rather than ``ray.data.read_json``):
    the same documents as the single-process path (ids, passage offsets, other fields kept), and a
    record that cannot be read is a row naming its file and record (``on_error="skip"``) or stops the
    run (``"stop"``), where Arrow's JSON reader would fail the whole file.
    """
    if input_format not in CORPUS_FORMATS:
        raise ValueError(f"unknown corpus format {input_format!r}; expected one of {', '.join(CORPUS_FORMATS)}")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}; expected one of {', '.join(ON_ERROR)}")
    paths = [input_path] if isinstance(input_path, (str, Path)) else list(input_path)
    files = ray.data.read_binary_files([str(p) for p in paths], include_paths=True)
    # A worker's exception reaches the driver as itself, not as Ray Data's UserCodeException (whose cause stays
    # in the worker): on_error="stop"'s record, a model that fails to load, are reported as they are. (The
    # context is this dataset's and those made from it, not Ray's global one.)
    files.context.raise_original_map_exception = True
    options = {"column": text_column} if input_format == "jsonl" else {}
    return files.map_batches(
        _parse_files,
        fn_kwargs={"corpus_format": input_format, "read_options": options, "on_error": on_error},
        batch_size=1,  # one file per call: a file is parsed whole, by one task
        batch_format="pyarrow",
    )


# The names Ray gives the files a write task writes ({dataset uuid}_{write uuid}_{task:06}.EXT; older
# versions add _{block:06}): what an overwrite may delete in the output folder, and nothing else.
_RAY_OUTPUT_NAME = r"^[0-9a-f]{32}(_[0-9a-f]{32})?(_\d{6})+\.{extension}$"


class _CorpusDatasink(BlockBasedFileDatasink):
    """Writes each write task's documents as one file of ``output_format`` (header, documents, footer).

    The lines are `corpus.get_writer`'s, byte for byte those of the single-process path (Ray's
    ``write_json`` would round scores to 10 digits and flatten a record's fields into columns).
    Rows of unreadable records are not written: each task returns them, and the driver names them. A
    record the writer cannot write (`corpus.render_document`) is one of them, or, with ``on_error="stop"``,
    stops the run.
    """

    def __init__(self, path: str, output_format: str, text_column: str = "text", on_error: str = "skip") -> None:
        super().__init__(path, file_format=OUTPUT_EXTENSIONS.get(output_format, output_format))
        self.output_format, self.text_column, self.on_error = output_format, text_column, on_error
        self.written, self.skipped = 0, []

    def write(self, blocks: Any, ctx: Any) -> dict[str, Any]:
        self.written, self.skipped = 0, []  # this copy of the sink is the task's own
        super().write(blocks, ctx)
        return {"written": self.written, "skipped": self.skipped}

    def write_block_to_file(self, block: Any, file: Any) -> None:
        writer = get_writer(self.output_format)
        documents = []
        for row in block.to_arrow().to_pylist():
            if row.get("error"):
                self.skipped.append((row["source"], row["record"], row["error"]))
                continue
            try:
                documents.append(render_document(writer, _row_document(row, self.text_column), row["entities"]))
            except RecordError as error:
                if self.on_error == "stop":
                    raise
                self.skipped.append((error.source, error.record, error.reason))
        self.written += len(documents)
        # BioC JSON's documents need "," between them (`separator`).
        separator = writer.separator.encode("utf-8")
        file.write(writer.header().encode("utf-8") + separator.join(documents) + writer.footer().encode("utf-8"))

    def on_write_complete(self, write_result: Any) -> None:
        super().on_write_complete(write_result)
        # Older Ray versions pass the list of the tasks' returns, newer ones a WriteResult holding it.
        returns = [r for r in getattr(write_result, "write_returns", write_result) if r]
        self.written = sum(r["written"] for r in returns)
        self.skipped = sorted(item for r in returns for item in r["skipped"])


def _ray_outputs(extension: str) -> Outputs:
    """What a Ray run writes in its output folder (`files.Outputs`): files named as Ray names them."""
    ours = re.compile(_RAY_OUTPUT_NAME.replace("{extension}", re.escape(extension)))
    return Outputs(
        "predict --engine ray",
        written=output_names((), (ours,)),
        legacy=lambda folder: any(ours.match(entry.name) for entry in folder.iterdir()),
        flag="--overwrite",
    )


def _prepare_output(output: str, overwrite: bool, extension: str) -> OutputClaim | None:
    """Claims a local output folder as every command does (`files.claim_output_dir`: manifest, lock, an overwrite
    deletes only what Ray runs wrote); checks a URI pyarrow can open (``s3://``, ``gs://``), where an overwrite
    deletes only the files of Ray's names. A file there is always refused.
    """
    from pyarrow import fs

    local = "://" not in output
    filesystem, root = fs.FileSystem.from_uri(str(Path(output).absolute()) if local else output)
    info = filesystem.get_file_info(root)
    if info.type not in (fs.FileType.NotFound, fs.FileType.Directory):
        raise OutputExistsError(f"{output} is a file; --engine ray writes a folder of files: give a folder's name.")
    if local:
        return claim_output_dir(output, _ray_outputs(extension), overwrite=overwrite)
    if info.type == fs.FileType.NotFound:
        return None
    entries = filesystem.get_file_info(fs.FileSelector(root))
    if entries and not overwrite:
        raise OutputExistsError(f"{output} already holds files; pass --overwrite to replace the ones Ray wrote.")
    written = _ray_outputs(extension).written
    for entry in entries:
        if entry.type == fs.FileType.File and written(entry.base_name):
            filesystem.delete_file(entry.path)
    return None


def connect(address: str | None = None, **init_options: Any) -> None:
    """Connects to Ray (``address``: ``"auto"``, ``HEAD_IP:6379``, ``ray://...``, ``"local"`` for a new instance);
    with None, as ``ray.init()`` does: RAY_ADDRESS, else the cluster `ray start` began on this machine, else a
    new local instance. Nothing when Ray is initialized already (a test, a notebook that called ray.init)."""
    if not ray.is_initialized():
        ray.init(address=address, **init_options)


def _find(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The ``kind`` error behind one Ray raises (a task's exception, wrapped on its way to the driver)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        cause = getattr(error, "cause", None)  # ray.exceptions.RayTaskError keeps the task's exception there
        error = cause if isinstance(cause, BaseException) else (error.__cause__ or error.__context__)
    return None


@dataclass
class RayPrediction:
    """What `predict_with_ray` did: where it wrote, how many documents, and the records it skipped."""

    output: str
    written: int
    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    output_format: str = "jsonl"


def predict_with_ray(
    input_path: str | Sequence[str],
    input_format: str,
    output_path: str,
    *,
    model_dir: str | Path,
    output_format: str | None = None,
    address: str | None = None,
    concurrency: int | tuple[int, int] = 1,
    num_gpus: float = 0,
    num_cpus: float | None = None,
    batch_size: int = 32,
    text_column: str = "text",
    on_error: str = "skip",
    overwrite: bool = False,
    device: str | None = None,
    dtype: str = "auto",
    trust_remote_code: bool | None = None,
    **predict_options: Any,
) -> RayPrediction:
    """``predict --engine ray``: the entities of a corpus, read, annotated and written by Ray.

    Args:
        input_path: A corpus file, a folder of them, a glob, or a list; local paths must be readable
            on every node (a shared filesystem), or give URIs (``s3://...``).
        input_format: One of `corpus.CORPUS_FORMATS`.
        output_path: A FOLDER: Ray writes one file per write task into it (``*.jsonl`` for JSON
            lines), each complete in ``output_format``; concatenated, the JSON lines files are what
            single-process ``predict`` writes, in another order. It must be missing or empty, unless
            ``overwrite``, which deletes the files a Ray run wrote there (and nothing else).
        output_format: One of `corpus.OUTPUT_FORMATS`; None: as single-process ``predict`` chooses
            (`documents.pick_output_format`: the folder's name, else the input's own format). A format
            the folder's name contradicts is refused before Ray starts.
        address: The Ray cluster (``"auto"``, ``HEAD_IP:6379``, ``"local"``); None as `connect` says.
            Ray already initialized (``ray.init`` called) is used as it is.
        on_error: ``"skip"``: a record that cannot be read is left out, and a warning names its file
            and record; ``"stop"``: it stops the run with a `corpus.RecordError` (files written
            before stay, as partial output).
        concurrency, num_gpus, num_cpus, batch_size, device, dtype, trust_remote_code, predict_options:
            see `annotate_dataset`.

    Returns:
        A `RayPrediction`: the output folder, the documents written, the records skipped.
    """
    from ..base.code_consent import check_consent
    from ..base.locations import check_model_location

    output_format = pick_output_format(output_format, output_path, input_format)  # before Ray starts
    if output_format not in OUTPUT_FORMATS:
        written = ", ".join(map(format_name, OUTPUT_FORMATS))
        raise ValueError(f"Ray writes {written}; not {format_name(output_format)} (--output {output_path}).")
    extension = OUTPUT_EXTENSIONS.get(output_format, output_format)
    check_model_location(model_dir)  # before Ray starts, not in each actor
    if Path(model_dir).exists():
        check_consent(model_dir, trust_remote_code)
    claim = _prepare_output(output_path, overwrite, extension)
    with claim or contextlib.nullcontext():  # the lock is given back however the run ends
        connect(address)
        documents = read_corpus_dataset(input_path, input_format, text_column=text_column, on_error=on_error)
        annotated = annotate_dataset(
            documents,
            model_dir,
            concurrency=concurrency,
            num_gpus=num_gpus,
            num_cpus=num_cpus,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            **predict_options,
        )
        sink = _CorpusDatasink(output_path, output_format, text_column, on_error)
        try:
            annotated.write_datasink(sink)
        except Exception as error:
            found = _find(error, RecordError)  # --on-error stop: the record's own error, without Ray's words added
            if found is not None:
                raise RecordError(found.source, found.record, found.reason, found.unit) from None
            raise
        for source, record, reason in sink.skipped:
            logger.warning("skipped %s, record %d: %s", source, record, reason)
        if claim is not None:
            claim.finish()  # lists the files the write tasks wrote, and marks the run complete
        return RayPrediction(output_path, sink.written, sink.skipped, output_format)


def _ray_input_format(path: str, declared: str) -> str:
    """The corpus format of ``--input``: as declared, or, for ``auto``, JSON lines by its (or its files') suffix."""
    if declared != "auto":
        if declared not in CORPUS_FORMATS:
            raise ValueError(f"--engine ray reads {', '.join(CORPUS_FORMATS)}; --input-format is {declared}.")
        return declared
    names = [p.name for p in Path(path).iterdir() if p.is_file()] if Path(path).is_dir() else [path]
    if names and all(name.lower().endswith((".jsonl", ".json")) for name in names):
        return "jsonl"
    raise ValueError(f"--engine ray: give --input-format for {path} (one of {', '.join(CORPUS_FORMATS)}).")


def _ray_device(device: str | None, num_gpus: float) -> str:
    """predict's --device for an actor: auto = its GPU when it has one (--ray-num-gpus), else the CPU."""
    if device in (None, "auto"):
        return "cuda" if num_gpus else "cpu"
    if device == "cuda" and not num_gpus:
        raise ValueError("--device cuda with --engine ray needs --ray-num-gpus (GPUs for each actor).")
    return device


def predict_command_ray(args: argparse.Namespace) -> int:
    """``predict --engine ray`` from predict's parsed options; returns the exit status.

    Reads ``model``, ``input``, ``input_format``, ``output``, ``overwrite``, ``batch_size``,
    ``aggregation_strategy``, ``decoding``, ``min_score``, ``device``, ``dtype``, ``trust_remote_code``,
    ``on_error``, ``text_column_name``, ``format`` and the ``--ray-*`` options (``ray_address``,
    ``ray_concurrency``, ``ray_num_gpus``, ``ray_num_cpus``, ``ray_batch_size``); ``text`` and
    HTML are refused (Ray reads files and writes a corpus format).
    """
    if args.text:
        raise ValueError("--engine ray reads --input files; --text is for the local engine.")
    if not args.input or not args.output:
        raise ValueError("--engine ray needs --input (files Ray reads) and --output (the folder Ray writes).")
    result = predict_with_ray(
        args.input,
        _ray_input_format(args.input, args.input_format),
        args.output,
        model_dir=args.model,
        output_format=args.format,
        address=args.ray_address,
        concurrency=args.ray_concurrency,
        num_gpus=args.ray_num_gpus,
        num_cpus=args.ray_num_cpus,
        batch_size=args.ray_batch_size,
        text_column=args.text_column_name or "text",
        on_error=args.on_error,
        overwrite=args.overwrite,
        device=_ray_device(args.device, args.ray_num_gpus),
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        forward_batch_size=args.batch_size,
        aggregation_strategy=args.aggregation_strategy,
        decoding=args.decoding,
        min_score=args.min_score,
    )
    skipped = f"; {len(result.skipped)} records skipped (named above)" if result.skipped else ""
    print(f"{result.written} documents with their entities in {result.output}/ ({format_name(result.output_format)})"
          f"{skipped}", file=sys.stderr)  # fmt: skip
    return 0

"""Ray Data's reading and writing of a corpus: documents as Arrow rows, files parsed by tasks, a datasink.

`read_corpus_dataset` has Ray read the corpus files (a file, a folder, a glob, a list; local paths on a
shared filesystem, or ``s3://``, ``gs://``) and a task per file parse one with `corpus_readers.read_corpus`, into
rows of `DOCUMENT_SCHEMA`. `CorpusDatasink` writes a FOLDER of files, one per write task, each a complete
file of the output format (`corpus_writers.get_writer`: header, documents, footer), into a folder
`prepare_output` has claimed.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
import ray.data
from ray.data.datasource import BlockBasedFileDatasink

from ..base.defaults import ON_ERROR
from ..base.files import OutputExistsError
from ..base.manifest import output_names
from ..base.outputs import OutputClaim, Outputs, claim_output_dir
from ..formats.corpus_documents import Document, Passage, RecordError
from ..formats.corpus_readers import CORPUS_FORMATS, read_corpus
from ..formats.corpus_writers import get_writer, render_document
from ..running.tasks import TASK_KEY

__all__ = [
    "DOCUMENT_SCHEMA",
    "OUTPUT_EXTENSIONS",
    "CorpusDatasink",
    "entities_type",
    "prepare_output",
    "read_corpus_dataset",
    "row_document",
]


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


def entities_type(aggregation_strategy: str = "first", *, multitask: bool = False) -> pa.DataType:
    """The Arrow type of an ``entities`` cell: a list of ``{entity_group, score, word, start, end}`` (and ``task``
    for a multi-task model's: `texts.predict_texts`).

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
                *([(TASK_KEY, pa.string())] if multitask else []),
            ]
        )
    )


def row_document(row: dict[str, Any], text_column: str) -> Document:
    """The `corpus_documents.Document` of a row: its ``passages`` (text, offset) where it has them, else its text
    column."""
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
    """A `corpus_documents.Document` as a row of `DOCUMENT_SCHEMA` (what `row_document` reads back)."""
    return {
        "id": document.id,
        "passages": [{"text": p.text, "offset": p.offset, "infons": json.dumps(p.infons)} for p in document.passages],
        "source": document.source,
        "record": document.record,
        "fields": json.dumps(document.fields, ensure_ascii=False),
        "error": None,
    }


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

    Every format goes through `corpus_readers.read_corpus` (JSON lines too, rather than ``ray.data.read_json``):
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


class CorpusDatasink(BlockBasedFileDatasink):
    """Writes each write task's documents as one file of ``output_format`` (header, documents, footer).

    The lines are `corpus_writers.get_writer`'s, byte for byte those of the single-process path (Ray's
    ``write_json`` would round scores to 10 digits and flatten a record's fields into columns).
    Rows of unreadable records are not written: each task returns them, and the driver names them. A
    record the writer cannot write (`corpus_writers.render_document`) is one of them, or, with ``on_error="stop"``,
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
                documents.append(render_document(writer, row_document(row, self.text_column), row["entities"]))
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
    """What a Ray run writes in its output folder (`outputs.Outputs`): files named as Ray names them."""
    ours = re.compile(_RAY_OUTPUT_NAME.replace("{extension}", re.escape(extension)))
    return Outputs(
        "predict --engine ray",
        written=output_names((), (ours,)),
        legacy=lambda folder: any(ours.match(entry.name) for entry in folder.iterdir()),
        flag="--overwrite",
    )


def prepare_output(output: str, overwrite: bool, extension: str) -> OutputClaim | None:
    """Claims a local output folder as every command does (`outputs.claim_output_dir`: manifest, lock, an overwrite
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

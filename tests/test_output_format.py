"""predict writes what its output's name says: ``--format``, else the output's name, else the input's own format
(`documents.pick_output_format`), refused before the model loads where they disagree; and the formats' own
reference tools read what it writes (JSON lines: ``datasets``; PubTator: ``bioc.pubtator``; CoNLL: spaCy's
converter and ``seqeval``; HTML: ``html.parser``).
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import NCBI, conll_slice

from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.formats.corpus_documents import Document, Passage
from hf_layer_tokclf.formats.corpus_readers import read_corpus
from hf_layer_tokclf.formats.corpus_scan import detect_corpus_format
from hf_layer_tokclf.formats.corpus_writers import get_writer
from hf_layer_tokclf.formats.documents import pick_output_format

# --------------------------------------------------------------------------------------------
# The rule
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("out.pubtator", "pubtator"),
        ("out.PubTator", "pubtator"),
        ("out.bioc.xml", "bioc"),
        ("out.xml", "bioc"),
        ("out.bioc.json", "bioc-json"),
        ("out.json", "jsonl"),
        ("out.jsonl", "jsonl"),
        ("out.ndjson", "jsonl"),
        ("out.html", "html"),
        ("out.htm", "html"),
        ("runs/entities.v2.jsonl", "jsonl"),
    ],
)
@pytest.mark.parametrize("input_format", ["text", "pubmed", "pubtator", "jsonl"])
def test_a_documents_output_name_says_its_format(name, expected, input_format):
    assert pick_output_format(None, name, input_format) == expected
    assert pick_output_format(expected, name, input_format) == expected  # a --format that agrees


@pytest.mark.parametrize("name", ["out.conll", "out.tsv", "out.iob", "out.iob2", "out.bio", "out.bioes", "o.TSV"])
def test_conll_output_names(name):
    assert pick_output_format(None, name, "conll") == "conll"


@pytest.mark.parametrize(
    ("input_format", "tokenized", "expected"),
    [
        ("pubtator", False, "pubtator"),
        ("bioc", False, "bioc"),
        ("bioc-json", False, "bioc-json"),
        ("jsonl", False, "jsonl"),
        ("conll", False, "conll"),
        ("jsonl", True, "jsonl"),  # word lists: each record back with its predictions
        ("text", False, "jsonl"),
        ("pubmed", False, "jsonl"),  # PubMed XML is read, not written
    ],
)
@pytest.mark.parametrize("output", [None, "out", "out.txt", "entities/"])
def test_an_output_whose_name_says_nothing_is_in_the_inputs_format(input_format, tokenized, expected, output):
    assert pick_output_format(None, output, input_format, tokenized) == expected


def test_a_json_name_is_bioc_json_for_bioc_json_input():
    assert pick_output_format(None, "out.json", "bioc-json") == "bioc-json"
    assert pick_output_format("jsonl", "out.json", "bioc-json") == "jsonl"
    assert pick_output_format(None, "out.json", "bioc") == "jsonl"


# --------------------------------------------------------------------------------------------
# Contradictions: refused before the model loads, naming both values and what to give instead
# --------------------------------------------------------------------------------------------


@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    files = {
        "docs.txt": "BRCA1 mutations cause breast cancer.\n",
        "docs.pubtator": "1|t|Breast cancer.\n1|a|BRCA1 mutations.\n\n",
        "tokens.conll": "BRCA1\tO\nmutations\tO\n\n",
        "words.jsonl": json.dumps({"id": 1, "tokens": ["BRCA1", "mutations"]}) + "\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return {name: tmp_path / name for name in files}


REFUSED = [
    # (input, options, what the one error line says)
    ("docs.txt", ["--format", "pubtator", "--output", "x.jsonl"],
     ["--format pubtator contradicts --output", "x.jsonl", "JSON lines", "give --format jsonl", "x.pubtator"]),
    ("docs.pubtator", ["--format", "bioc", "--output", "x.pubtator"],
     ["--format bioc contradicts --output", "x.pubtator", "says PubTator", "give --format pubtator", "x.bioc.xml"]),
    ("docs.pubtator", ["--format", "jsonl", "--output", "x.html"], ["--format jsonl contradicts", "x.html", "HTML"]),
    ("docs.pubtator", ["--output", "x.conll"],
     ["x.conll (CoNLL by its name)", "PubTator input cannot be written as CoNLL", "x.pubtator", "x.jsonl"]),
    ("docs.txt", ["--output", "x.tsv"], ["x.tsv (CoNLL by its name)", "text input cannot be written as CoNLL"]),
    ("docs.txt", ["--format", "conll"], ["--format conll: text input cannot be written as CoNLL", "--format jsonl"]),
    ("tokens.conll", ["--output", "x.pubtator"],
     ["x.pubtator (PubTator by its name)", "CoNLL input cannot be written as PubTator", "only as CoNLL", "x.conll"]),
    ("tokens.conll", ["--format", "jsonl"], ["--format jsonl: CoNLL input cannot be written as JSON lines"]),
    ("tokens.conll", ["--format", "html", "--output", "x.html"], ["--format html: CoNLL input", "x.conll"]),
    ("words.jsonl", ["--output", "x.bioc.xml"],
     ["x.bioc.xml (BioC XML by its name)", "JSON lines input (word lists) cannot be written as BioC XML", "x.jsonl"]),
    ("docs.txt", ["--output", "x.jsonl.gz"], ["x.jsonl.gz: predict does not compress", "name it", "gzip", "x.jsonl)"]),
    ("tokens.conll", ["--output", "x.conllu"], ["x.conllu", "not CoNLL-U", "x.conll or", "x.tsv"]),
]  # fmt: skip


@pytest.mark.parametrize(("source", "options", "said"), REFUSED)
def test_a_contradiction_is_refused_before_the_model_loads(inputs, source, options, said, capsys, monkeypatch):
    import hf_layer_tokclf.running.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    folder = inputs[source].parent
    options = [str(folder / o) if o.startswith("x.") else o for o in options]
    assert main(["predict", "no-such-model", "--input", str(inputs[source]), *options]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hf-layer-tokclf predict: error: "), err
    for words in said:
        assert words in err, err
    assert "no-such-model" not in err
    assert [p.name for p in folder.iterdir() if p.name.startswith("x.")] == []  # nothing written


def test_ray_chooses_by_the_same_rule_before_ray_starts(inputs, tmp_path, capsys, monkeypatch):
    pytest.importorskip("ray")
    import hf_layer_tokclf.annotation.ray_engine as ray_engine

    monkeypatch.setattr(ray_engine, "connect", lambda address: pytest.fail("Ray started"))
    argv = ["predict", "no-such-model", "--input", str(inputs["docs.pubtator"]), "--engine", "ray"]
    assert main([*argv, "--input-format", "pubtator", "--format", "bioc", "--output", str(tmp_path / "x.jsonl")]) == 2
    assert "--format bioc contradicts --output" in capsys.readouterr().err
    assert main([*argv, "--input-format", "pubtator", "--output", str(tmp_path / "x.html")]) == 2
    assert "Ray writes JSON lines, PubTator, BioC XML, BioC JSON; not HTML" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "x.html").exists()


# --------------------------------------------------------------------------------------------
# End to end, with the formats' own readers
# --------------------------------------------------------------------------------------------


def ncbi_abstracts(count: int) -> list[Document]:
    """NCBI test sentences as PubTator-shaped documents: a title sentence, two abstract sentences."""
    sentences = [
        " ".join(line.split("\t")[0] for line in block.splitlines())
        for block in (NCBI / "test.tsv").read_text().strip().split("\n\n")
    ]
    documents = []
    for i in range(count):
        title, abstract = sentences[3 * i], " ".join(sentences[3 * i + 1 : 3 * i + 3])
        documents.append(Document(str(1000 + i), [Passage(title, 0), Passage(abstract, len(title) + 1)]))
    return documents


def write_corpus(path: Path, corpus_format: str, documents: list[Document]) -> Path:
    writer = get_writer(corpus_format)
    body = writer.separator.join(writer.document(d, []) for d in documents)
    path.write_text(writer.header() + body + writer.footer())
    return path


@pytest.fixture(scope="module")
def abstracts(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("abstracts") / "docs.pubtator", "pubtator", ncbi_abstracts(5))


def test_pubtator_in_pubtator_out_by_name(trained, abstracts, tmp_path, capsys):
    """The issue's case: --input docs.pubtator --output out.pubtator, no --format, is PubTator that our reader
    and the bioc library's read; the progress line and the summary say so."""
    import bioc.pubtator

    out = tmp_path / "out.pubtator"
    assert main(["predict", str(trained[0]), "--input", str(abstracts), "--output", str(out), "--chunk-size", "2"]) == 0
    err = capsys.readouterr().err
    text = out.read_text()
    assert text.startswith("1000|t|") and not text.startswith("{")
    assert detect_corpus_format(out) == "pubtator"
    ours = list(read_corpus(out, "pubtator"))
    given = list(read_corpus(abstracts, "pubtator"))
    assert [(d.id, d.passages) for d in ours] == [(d.id, d.passages) for d in given]
    entity_lines = [line.split("\t") for line in text.splitlines() if "\t" in line]
    assert entity_lines, "the trained model finds diseases in NCBI abstracts"
    with open(out, encoding="utf-8") as stream:
        theirs = bioc.pubtator.load(stream)
    assert [(d.pmid, d.title, d.abstract) for d in theirs] == [
        (d.id, d.passages[0].text, d.passages[1].text) for d in given
    ]
    # Every entity line is read as a line of its document (as a relation while our lines have 5 columns; as an
    # annotation once they carry PubTator's 6th), and what bioc reads as an annotation points at its text.
    assert sum(len(d.annotations) + len(d.relations) for d in theirs) == len(entity_lines)
    for document in theirs:
        for annotation in document.annotations:
            assert f"{document.title} {document.abstract}"[annotation.start : annotation.end] == annotation.text
    # The progress line (no terminal: a line at the end), the summary and its last line name the formats.
    assert "Annotating PubTator to PubTator: 5/5 documents, " in err
    summary = json.loads(Path(f"{out}.summary.json").read_text())
    assert (summary["input_format"], summary["output_format"], summary["documents"]) == ("pubtator", "pubtator", 5)
    assert err.splitlines()[-1].startswith("5 documents annotated, written as PubTator, 0 skipped; summary in ")


def test_json_lines_output_loads_with_datasets_and_its_offsets_point_at_the_text(trained, abstracts, tmp_path):
    """JSON lines by name from PubTator input: `datasets.load_dataset("json")` reads it, and each entity's
    offsets are those of the PubTator output of the same run's entities."""
    import datasets

    out, pubtator = tmp_path / "out.jsonl", tmp_path / "out.pubtator"
    for path in (out, pubtator):
        assert (
            main(["predict", str(trained[0]), "--input", str(abstracts), "--output", str(path), "--no-progress"]) == 0
        )
    loaded = datasets.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded["id"] == [d.id for d in read_corpus(abstracts, "pubtator")]
    spans = [
        [record["id"], str(e["start"]), str(e["end"]), record["text"][e["start"] : e["end"]], e["entity_group"]]
        for record in loaded
        for e in record["entities"]
    ]
    # PubTator's sixth column is the concept id ('-': the model gives none); the first five are the span.
    assert spans and spans == [line.split("\t")[:5] for line in pubtator.read_text().splitlines() if "\t" in line]
    for record in loaded:
        for entity in record["entities"]:
            word = record["text"][entity["start"] : entity["end"]]
            assert word.strip() == word != "" and entity["word"].replace(" ##", "").replace("##", "") == word.lower()


class Marks(HTMLParser):
    """The text of every ``<mark>`` (displaCy's entities), without the label ``<span>`` inside it."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.marks: list[str] = []
        self._depth: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag == "mark":
            self.marks.append("")
        self._depth.append(tag)

    def handle_endtag(self, tag):
        self._depth.pop()

    def handle_data(self, data):
        if self._depth and self._depth[-1] == "mark":
            self.marks[-1] += data


def test_conll_output_reads_back_with_spacys_converter_and_seqeval(trained, tmp_path):
    """CoNLL by name from CoNLL input: spaCy's CoNLL-2003 NER converter (what `spacy convert` runs) reads every
    sentence back with its tokens, and its entities are those seqeval finds in the predicted column."""
    from seqeval.metrics.sequence_labeling import get_entities
    from spacy.training.converters import conll_ner_to_docs

    source, out = conll_slice(tmp_path / "gold.tsv", 40), tmp_path / "out.conll"
    assert main(["predict", str(trained[0]), "--input", str(source), "--output", str(out), "--no-progress"]) == 0
    blocks = [block.splitlines() for block in out.read_text().strip().split("\n\n")]
    first = source.read_text().split("\n\n")[0].splitlines()
    assert len(blocks) == 40 and [row.split("\t")[0] for row in blocks[0]] == [row.split("\t")[0] for row in first]
    docs = list(conll_ner_to_docs(out.read_text(), n_sents=1, no_print=True))  # a doc per sentence
    assert len(docs) == len(blocks)
    found = 0
    for doc, block in zip(docs, blocks, strict=True):
        rows = [row.split("\t") for row in block]
        assert [token.text for token in doc] == [row[0] for row in rows]
        spans = [(label, start, end + 1) for label, start, end in get_entities([row[-1] for row in rows])]
        assert [(ent.label_, ent.start, ent.end) for ent in doc.ents] == spans
        found += len(spans)
    assert found  # a trained model finds diseases in 40 NCBI sentences


def test_html_by_name_shows_the_entities(trained, abstracts, tmp_path):
    """--output page.html, no --format: a page whose marks (read by the stdlib's HTML parser) are the entities."""
    pytest.importorskip("spacy")
    page, lines = tmp_path / "page.html", tmp_path / "out.jsonl"
    for path in (page, lines):
        assert (
            main(["predict", str(trained[0]), "--input", str(abstracts), "--output", str(path), "--no-progress"]) == 0
        )
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    expected = [r["text"][e["start"] : e["end"]] for r in records for e in r["entities"]]
    assert expected and [mark.strip() for mark in Marks(page.read_text()).marks] == expected


@pytest.mark.parametrize(("input_format", "name"), [("bioc", "docs.xml"), ("bioc-json", "docs.json")])
def test_an_output_named_nothing_is_in_the_inputs_format(trained, tmp_path, input_format, name):
    documents = ncbi_abstracts(2)
    source = write_corpus(tmp_path / name, input_format, documents)
    out = tmp_path / "entities"
    assert main(["predict", str(trained[0]), "--input", str(source), "--output", str(out), "--no-progress"]) == 0
    assert detect_corpus_format(out) == input_format
    assert [d.id for d in read_corpus(out, input_format)] == [d.id for d in documents]

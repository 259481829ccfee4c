"""Tests of hf_layer_tokclf.formats.documents: which format a file is in, and JSON lines documents read lazily."""

import gzip
import json

import pytest
from conftest import NCBI, conll_slice

from hf_layer_tokclf.formats.corpus_documents import Document, RecordError
from hf_layer_tokclf.formats.corpus_readers import read_corpus
from hf_layer_tokclf.formats.documents import detect_input_format, looks_like_conll, text_column
from hf_layer_tokclf.formats.lines import DataError

TEXTS = ["Germline mutations in BRCA1 cause hereditary breast and ovarian cancer.", "No disease here."]


def test_conll_is_told_from_text_by_its_lines():
    assert looks_like_conll((NCBI / "test.tsv").read_text().splitlines()[:200])  # token<TAB>label
    assert looks_like_conll(["-DOCSTART- -X- O O", "", "EU NNP B-NP B-ORG", "rejects VBZ B-VP O"])
    assert looks_like_conll(["EU B-ORG", "rejects O", "", "German B-MISC"])  # space-separated, labels last
    assert looks_like_conll(["BRCA1", "mutations", "", "cause", "cancer", ""])  # tokens in sentences
    assert not looks_like_conll(TEXTS)
    assert not looks_like_conll(["BRCA1", "TP53", "APC"])  # one word per document, no sentences
    assert not looks_like_conll(["Tumour\tsize was 3 cm"])  # a tab inside prose
    assert not looks_like_conll(["", ""])
    assert not looks_like_conll(["\u3000", "Some text."])  # a line of a space that is not " " or a tab


def test_formats_by_extension_then_content(tmp_path):
    files = {
        "a.conll": "x\tO\n",
        "a.txt": "BRCA1\tO\ncancer\tB-Disease\n",
        "b.txt": "\n".join(TEXTS) + "\n",
        "tokens": "BRCA1\ncancer\n\nok\nfine\n",
        "a.jsonl": json.dumps({"text": TEXTS[0]}) + "\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    found = {name: detect_input_format(tmp_path / name) for name in files}
    assert found == {"a.conll": "conll", "a.txt": "conll", "b.txt": "text", "tokens": "conll", "a.jsonl": "jsonl"}
    assert detect_input_format(None) == "text"  # standard input
    assert detect_input_format(tmp_path / "b.txt", "conll") == "conll"  # as declared
    for name in ("a.conll", "a.txt", "tokens"):
        with pytest.raises(DataError, match=rf"{name}: looks like CoNLL .* --input-format conll"):
            detect_input_format(tmp_path / name, "text")
    with pytest.raises(DataError, match=r"missing\.txt: no such file"):
        detect_input_format(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="unknown input format 'xml'"):
        detect_input_format(tmp_path / "b.txt", "xml")


def test_formats_of_gzip_files_by_the_extension_before_gz_then_the_decompressed_content(tmp_path):
    conll = (NCBI / "test.tsv").read_text()[:3000]
    files = {
        "docs.jsonl.gz": json.dumps({"text": TEXTS[0]}) + "\n",
        "docs.txt.gz": "\n".join(TEXTS) + "\n",
        "docs.conll.gz": "BRCA1\nmutations\n",  # by its extension: its lines alone do not say CoNLL
        "ncbi.txt.gz": conll,  # by its lines
        "tokens.gz": conll,
        "docs.pubtator.gz": "Some text.\n",  # by its extension
        "docs.gz": "1|t|A title.\n1|a|An abstract.\n",  # by its first line
    }
    for name, text in files.items():
        (tmp_path / name).write_bytes(gzip.compress(text.encode()))
    found = {name: detect_input_format(tmp_path / name) for name in files}
    assert found == {
        "docs.jsonl.gz": "jsonl",
        "docs.txt.gz": "text",
        "docs.conll.gz": "conll",
        "ncbi.txt.gz": "conll",
        "tokens.gz": "conll",
        "docs.pubtator.gz": "pubtator",
        "docs.gz": "pubtator",
    }
    for name in ("docs.conll.gz", "ncbi.txt.gz"):
        with pytest.raises(DataError, match=rf"{name}: looks like CoNLL .* --input-format conll"):
            detect_input_format(tmp_path / name, "text")
    assert text_column(tmp_path / "docs.jsonl.gz") == ("text", False)


JATS = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.3 20210610//EN"
 "JATS-archivearticle1-3.dtd">
<article xmlns:xlink="http://www.w3.org/1999/xlink" article-type="research-article" dtd-version="1.3">
<front><article-meta><title-group><article-title>BRCA1 in breast cancer</article-title></title-group>
<abstract><p>Germline mutations in <italic>BRCA1</italic> cause breast cancer.</p></abstract></article-meta></front>
<body><sec><title>Introduction</title><p>Ovarian cancer&#x02014;a disease.</p></sec></body>
</article>
"""


@pytest.mark.parametrize(
    ("name", "text", "root"),
    [
        ("PMC1234567.xml", JATS, "article"),
        ("PMC1234567.nxml.gz", JATS, "article"),
        ("page.html", "<!DOCTYPE html>\n<html><body><p>Breast cancer.</p></body></html>\n", "html"),
        ("notes.txt", "<!-- a comment -->\n<notes>\n<note>Breast cancer.</note>\n</notes>\n", "notes"),
    ],
)
def test_xml_that_is_neither_pubmed_nor_bioc_is_refused_naming_its_root(tmp_path, name, text, root):
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    with pytest.raises(DataError) as error:
        detect_input_format(path)
    message = str(error.value)
    assert message.startswith(f"{path}: XML whose root element is <{root}>, which is neither PubMed XML (<Pubmed")
    assert "BioC XML (<collection>)" in message and "--input-format text" in message
    assert detect_input_format(path, "text") == "text"  # as declared: its lines, markup and all


def test_text_that_starts_with_a_less_than_sign_is_text(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("<5% of patients had breast cancer.\nNo disease here.\n")
    assert detect_input_format(path) == "text"


def test_ncbi_conll_slices_are_conll_with_or_without_labels(tmp_path):
    for labeled in (True, False):
        path = conll_slice(tmp_path / f"slice{labeled}.txt", 20, labeled=labeled)
        assert detect_input_format(path) == "conll"


def test_text_column_and_documents(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(
        "".join(json.dumps({"id": i, "abstract": t}) + "\n" for i, t in enumerate(TEXTS))
        + "\n"
        + json.dumps({"id": 9})
        + "\n"
    )
    with pytest.raises(DataError, match=r"docs\.jsonl, line 1: no 'text' or 'tokens' field .*--text-column-name"):
        text_column(path)
    assert text_column(path, "abstract") == ("abstract", False)
    documents = read_corpus(path, "jsonl", column="abstract")
    first, second = next(documents), next(documents)  # read lazily
    assert [first.fields, second.fields] == [{"id": 0, "abstract": TEXTS[0]}, {"id": 1, "abstract": TEXTS[1]}]
    assert isinstance(first, Document) and first.passages[0].text == TEXTS[0]
    bad = next(documents)  # a record without the text is an error in its place, and reading goes on
    assert isinstance(bad, RecordError) and str(bad).endswith("docs.jsonl, line 4: no 'abstract' text (keys: id)")
    words = tmp_path / "words.jsonl"
    words.write_text(json.dumps({"tokens": ["a", "b"]}) + "\n")
    assert text_column(words) == ("tokens", True)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"empty\.jsonl: no records found"):
        text_column(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": \n')
    assert "bad.jsonl, line 2: not a JSON object" in str(list(read_corpus(tmp_path / "bad.jsonl", "jsonl"))[1])


def test_a_binary_input_is_refused_by_its_first_bytes_whatever_its_name(tmp_path):
    image = tmp_path / "figure.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    noise = tmp_path / "noise.txt"  # no NUL byte, but hardly a character of text either
    noise.write_bytes(bytes(range(128, 256)) * 4)
    for declared in ("auto", "text", "jsonl", "conll"):
        with pytest.raises(DataError, match=r"figure\.png: a binary file, not text \(\d+ of its first \d+ characters"):
            detect_input_format(image, declared)
        with pytest.raises(DataError, match=r"noise\.txt: a binary file, not text \(512 of its first 512 characters"):
            detect_input_format(noise, declared)
    latin1 = tmp_path / "latin1.txt"  # text with a few bytes that are not UTF-8 is text: its bad lines are skipped
    latin1.write_bytes("Café au lait spots in neurofibromatosis.\n".encode("latin-1") * 3)
    assert detect_input_format(latin1) == "text"

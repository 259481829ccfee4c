"""Tests of the corpus readers and writers of hf_layer_tokclf.formats (corpus_readers, pubmed_bioc, corpus_scan,
corpus_writers), on small hand-made files (no model)."""

from __future__ import annotations

import gzip
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hf_layer_tokclf.formats.corpus_documents import Document, Passage, RecordError, document_text
from hf_layer_tokclf.formats.corpus_readers import CORPUS_FORMATS, read_corpus
from hf_layer_tokclf.formats.corpus_scan import count_records, detect_corpus_format
from hf_layer_tokclf.formats.corpus_writers import OUTPUT_FORMATS, get_writer
from hf_layer_tokclf.formats.lines import DataError

PUBMED_DOCTYPE = (
    '<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2024//EN"'
    ' "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_240101.dtd">\n'
)


def pubmed_article(pmid: str | None, title: str, abstract: str | None = None) -> str:
    """A ``PubmedArticle`` as the baseline files have it (less the many fields the reader does not look at)."""
    pmid_element = f'<PMID Version="1">{pmid}</PMID>' if pmid else ""
    abstract_element = f"<Abstract>{abstract}</Abstract>" if abstract is not None else ""
    return (
        f'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM">{pmid_element}'
        f'<Article PubModel="Print"><Journal><Title>J</Title></Journal><ArticleTitle>{title}</ArticleTitle>'
        f"{abstract_element}</Article>"
        f"<CommentsCorrectionsList><CommentsCorrections><PMID>999</PMID></CommentsCorrections>"
        f"</CommentsCorrectionsList></MedlineCitation><PubmedData/></PubmedArticle>\n"
    )


PUBMED_XML = (
    PUBMED_DOCTYPE
    + "<PubmedArticleSet>\n"
    + pubmed_article(
        "111",
        "Aspirin in colon cancer.",
        '<AbstractText Label="BACKGROUND" NlmCategory="BACKGROUND">Colon cancer is common.</AbstractText>\n'
        '<AbstractText Label="METHODS">We studied 10 &amp; more patients.</AbstractText>',
    )
    + pubmed_article(
        "222", "Mutations of <i>BRCA1</i> and Ca<sup>2+</sup>.", "<AbstractText>The <i>BRCA1</i> gene.</AbstractText>"
    )
    + "<PubmedBookArticle><BookDocument><PMID>333</PMID></BookDocument></PubmedBookArticle>\n"
    + pubmed_article(None, "An article without its PMID.", "<AbstractText>Text.</AbstractText>")
    + pubmed_article("444", "A title alone.")
    + '<DeleteCitation><PMID Version="1">555</PMID></DeleteCitation>\n'
    + "</PubmedArticleSet>\n"
)

BIOC_XML = """<?xml version='1.0' encoding='utf-8'?>
<!DOCTYPE collection SYSTEM 'BioC.dtd'>
<collection><source>PubTator</source><date>20240101</date><key>BioC.key</key>
<document><id>10021369</id>
  <passage><infon key="type">title</infon><offset>0</offset><text>Identification of APC2.</text>
    <annotation id="1"><infon key="type">Gene</infon><location offset="18" length="4"/><text>APC2</text></annotation>
  </passage>
  <passage><infon key="type">abstract</infon><offset>24</offset>
    <text>The APC tumour &amp; &lt;suppressor&gt;.</text></passage>
</document>
<document><id>sentences</id>
  <passage><infon key="type">abstract</infon><offset>0</offset>
    <sentence><offset>0</offset><text>First sentence.</text></sentence>
    <sentence><infon key="n">2</infon><offset>16</offset><text>Second one.</text></sentence>
  </passage>
</document>
<document><id>bad-offset</id><passage><offset>x</offset><text>Text.</text></passage></document>
<document><id>overlap</id>
  <passage><offset>0</offset><text>Ten chars.</text></passage><passage><offset>5</offset><text>Back.</text></passage>
</document>
<document><id>last</id><passage><offset>0</offset><text>Still read.</text></passage></document>
</collection>
"""

BIOC_JSON = {
    "source": "PMC",
    "date": "20240101",
    "key": "BioC.key",
    "infons": {},
    "documents": [
        {
            "id": "10021369",
            "infons": {},
            "passages": [
                {"offset": 0, "infons": {"type": "title"}, "text": "Identification of APC2.", "annotations": []},
                {"offset": 24, "infons": {"type": "abstract"}, "text": "The APC tumour.", "sentences": []},
            ],
            "relations": [],
        },
        {"id": "float", "passages": [{"offset": 1.5, "text": "Text."}]},
        {"id": "backwards", "passages": [{"offset": 10, "text": "Later."}, {"offset": 2, "text": "Earlier."}]},
        {"id": "last", "passages": [{"offset": 0, "text": "Still read."}]},
    ],
}

TITLE = "Identification of APC2, a homologue of the adenomatous polyposis coli tumour suppressor ."
ABSTRACT = "The adenomatous polyposis coli ( APC ) tumour - suppressor protein controls the Wnt signalling pathway ."
PUBTATOR = (
    f"10021369|t|{TITLE}\n10021369|a|{ABSTRACT}\n"
    "10021369\t43\t76\tadenomatous polyposis coli tumour\tModifier\tD011125\n"
    "10021369\t94\t135\tadenomatous polyposis coli ( APC ) tumour\tModifier\tD011125\n"
    "\n"
    "777|t|Bad document.\n777|a|Its abstract.\nthis line is neither\n"
    "\n"
    "888|t|Disagreeing PMIDs.\n889|a|Another PMID.\n"
    "\n"
    "999|t|A title alone.\n"
    "\n"
)

ENTITIES = [{"entity_group": "Disease", "score": 0.98, "word": "x", "start": 43, "end": 76}]


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def summary(documents: list) -> list[tuple[str, list[tuple[str, int, dict]]]]:
    """Each document's id and passages (text, offset, infons); a RecordError as its record number."""
    return [
        item.record
        if isinstance(item, RecordError)
        else (item.id, [(p.text, p.offset, p.infons) for p in item.passages])
        for item in documents
    ]


def texts(documents: list) -> list[tuple[str, str]]:
    """Each document's id and text (its passages at their offsets): what every round trip must give back."""
    return [(d.id, document_text(d)) for d in documents if isinstance(d, Document)]


def write_corpus(output_format: str, documents: list[Document], entities: list[list[dict]] | None = None) -> str:
    writer = get_writer(output_format)
    entities = entities or [[] for _ in documents]
    parts = [writer.document(d, e) for d, e in zip(documents, entities, strict=True)]
    return writer.header() + writer.separator.join(parts) + writer.footer()


# --- PubMed -------------------------------------------------------------------------------------


def test_pubmed_titles_abstracts_and_offsets(tmp_path):
    items = list(read_corpus(write(tmp_path / "pubmed24n0001.xml", PUBMED_XML), "pubmed"))
    title, abstract = "Aspirin in colon cancer.", "Colon cancer is common. We studied 10 & more patients."
    assert summary(items) == [
        ("111", [(title, 0, {"type": "title"}), (abstract, len(title) + 1, {"type": "abstract"})]),
        (
            "222",
            [("Mutations of BRCA1 and Ca2+.", 0, {"type": "title"}), ("The BRCA1 gene.", 29, {"type": "abstract"})],
        ),
        3,  # no PMID; the book article and the deleted citation are no records
        ("444", [("A title alone.", 0, {"type": "title"})]),
    ]
    assert [d.record for d in items if isinstance(d, Document)] == [1, 2, 4]


def test_pubmed_record_error_names_file_and_record(tmp_path):
    path = write(tmp_path / "pubmed.xml", PUBMED_XML)
    error = next(item for item in read_corpus(path, "pubmed") if isinstance(item, RecordError))
    assert isinstance(error, DataError)
    assert (error.source, error.record) == (str(path), 3)
    assert str(error).startswith(f"{path}, record 3: ") and "PMID" in str(error)


def test_pubmed_gz_is_read_and_counted(tmp_path):
    plain = list(read_corpus(write(tmp_path / "a.xml", PUBMED_XML), "pubmed"))
    compressed = write(tmp_path / "pubmed24n0001.xml.gz", gzip.compress(PUBMED_XML.encode()))
    assert summary(read_corpus(compressed, "pubmed")) == summary(plain)
    assert count_records(compressed, "pubmed") == count_records(tmp_path / "a.xml", "pubmed") == 4
    assert detect_corpus_format(compressed) == "pubmed"


def test_pubmed_not_well_formed_names_the_line_and_stops(tmp_path):
    path = write(tmp_path / "broken.xml", PUBMED_XML.replace("BRCA1</i> and", "BRCA1</b> and"))
    items = read_corpus(path, "pubmed")
    assert next(items).id == "111"
    with pytest.raises(
        RecordError, match=r"broken\.xml, record 2: line 6, column \d+: not well-formed XML \(mismatched tag\)"
    ):
        next(items)


def test_pubmed_truncated_gz_and_wrong_root_are_data_errors(tmp_path):
    truncated = write(tmp_path / "cut.xml.gz", gzip.compress(PUBMED_XML.encode())[:-30])
    with pytest.raises(DataError, match=r"cut\.xml\.gz"):
        list(read_corpus(truncated, "pubmed"))
    with pytest.raises(DataError, match=r"not PubMed XML \(its root element is <collection>\)"):
        list(read_corpus(write(tmp_path / "bioc.xml", BIOC_XML), "pubmed"))


@pytest.mark.parametrize("corpus_format", ["jsonl", "pubtator", "text"])
def test_a_truncated_gz_of_lines_is_a_data_error_after_the_lines_it_holds(tmp_path, corpus_format):
    from hf_layer_tokclf.formats.corpus_readers import read_text_lines

    records = {
        "jsonl": "".join(json.dumps({"text": f"Abstract {i} on breast cancer."}) + "\n" for i in range(3000)),
        "pubtator": "".join(f"{i}|t|Title {i} on breast cancer.\n{i}|a|Its abstract.\n\n" for i in range(3000)),
        "text": "".join(f"Abstract {i} on breast cancer.\n" for i in range(3000)),
    }
    path = write(tmp_path / f"cut.{corpus_format}.gz", gzip.compress(records[corpus_format].encode())[:-300])
    read = read_text_lines(path) if corpus_format == "text" else read_corpus(path, corpus_format)
    assert isinstance(next(read), Document)
    with pytest.raises(DataError, match=rf"{path.name}: cannot be read after line \d+ \(Compressed file ended"):
        list(read)


def test_pubmed_streams_lazily(tmp_path):
    articles = "".join(pubmed_article(str(n), f"Title {n}.", "<AbstractText>Text.</AbstractText>") for n in range(2000))
    # Not well-formed at the very end: a reader that parsed the whole file first would fail on the first next().
    path = write(tmp_path / "big.xml", PUBMED_DOCTYPE + "<PubmedArticleSet>\n" + articles + "<unclosed>")
    documents = read_corpus(path, "pubmed")
    assert next(documents).id == "0"
    with pytest.raises(RecordError, match="record 2001: line"):
        list(documents)


# --- BioC ---------------------------------------------------------------------------------------

BIOC_DOCUMENTS = [
    (
        "10021369",
        [
            ("Identification of APC2.", 0, {"type": "title"}),
            ("The APC tumour & <suppressor>.", 24, {"type": "abstract"}),
        ],
    ),
    ("sentences", [("First sentence.", 0, {"type": "abstract"}), ("Second one.", 16, {"type": "abstract", "n": "2"})]),
    3,
    4,
    ("last", [("Still read.", 0, {})]),
]


def test_bioc_xml_documents_passages_and_bad_offsets(tmp_path):
    path = write(tmp_path / "corpus.bioc.xml", BIOC_XML)
    items = list(read_corpus(path, "bioc"))
    assert summary(items) == BIOC_DOCUMENTS
    assert "offset 'x' is not a non-negative integer" in str(items[2])
    assert str(items[3]).startswith(f"{path}, record 4: document overlap: passage 2: offset 5 goes back")
    assert count_records(path, "bioc") == 5


def test_bioc_json_collection_and_list_of_collections(tmp_path):
    path = write(tmp_path / "corpus.json", json.dumps(BIOC_JSON))
    items = list(read_corpus(path, "bioc-json"))
    title, abstract = [("Identification of APC2.", 0, {"type": "title"}), ("The APC tumour.", 24, {"type": "abstract"})]
    assert summary(items) == [("10021369", [title, abstract]), 2, 3, ("last", [("Still read.", 0, {})])]
    assert "offset 1.5 is not a non-negative integer" in str(items[1])
    assert "offset 2 goes back" in str(items[2])
    as_list = write(tmp_path / "api.json", json.dumps([BIOC_JSON, {"documents": BIOC_JSON["documents"][:1]}]))
    assert [item.record for item in read_corpus(as_list, "bioc-json")] == [1, 2, 3, 4, 5]
    assert count_records(path, "bioc-json") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"documents": [', r"line 1, column 16: not JSON"),
        ('{"source": "x"}', "not BioC JSON"),
        (b'{"documents": [\n{"id": "caf\xe9"}]}', r"bad\.json, line 2: not valid UTF-8 \(byte 0xe9 at byte 12 of"),
    ],
)
def test_bioc_json_that_cannot_be_read(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        list(read_corpus(write(tmp_path / "bad.json", text), "bioc-json"))


# --- PubTator -----------------------------------------------------------------------------------


def test_pubtator_documents_offsets_and_bad_documents(tmp_path):
    path = write(tmp_path / "ncbi.pubtator", PUBTATOR)
    items = list(read_corpus(path, "pubtator"))
    assert summary(items) == [
        ("10021369", [(TITLE, 0, {"type": "title"}), (ABSTRACT, len(TITLE) + 1, {"type": "abstract"})]),
        2,
        3,
        ("999", [("A title alone.", 0, {"type": "title"})]),
    ]
    text = document_text(items[0])
    # The NCBI-disease corpus's own offsets: into title + " " + abstract.
    assert text[43:76] == "adenomatous polyposis coli tumour"
    assert text[94:135] == "adenomatous polyposis coli ( APC ) tumour"
    assert str(items[1]).startswith(f"{path}, record 2: line 8: neither")
    assert "PMID 889 in the document of PMID 888" in str(items[2])
    assert count_records(path, "pubtator") == 4


def test_pubtator_without_blank_lines_and_crlf(tmp_path):
    path = write(tmp_path / "x.txt", "1|t|One.\r\n1|a|Abstract.\r\n2|t|Two.\r\n1\t0\t3\tOne\tX\r\n")
    items = list(read_corpus(path, "pubtator"))
    assert summary(items)[:2] == [("1", [("One.", 0, {"type": "title"}), ("Abstract.", 5, {"type": "abstract"})]), 2]


# BC5CDR's first abstract, shortened, as PubTator3 exports it: annotations with a 6th column (the concept id, "-"
# where there is none), relations of 4 columns (PMID, type, two concept ids) and, as BioRED has them, 5.
CDR_TITLE = "Naloxone reverses the antihypertensive effect of clonidine."
CDR_ABSTRACT = (
    "In unanesthetized, spontaneously hypertensive rats the decrease in blood pressure and heart rate produced by "
    "intravenous clonidine was inhibited or reversed by nalozone. The hypotensive effect of alpha-methyldopa was "
    "also partially reversed by naloxone."
)
CDR_MENTIONS = [
    ("Naloxone", "Chemical", "MESH:D009270"),
    ("clonidine", "Chemical", "MESH:D003000"),
    ("hypertensive", "Disease", "MESH:D006973"),
    ("nalozone", "Chemical", "-"),
    ("hypotensive", "Disease", "MESH:D007022"),
    ("alpha-methyldopa", "Chemical", "MESH:D008750"),
]


def pubtator3(columns: int = 6) -> str:
    """The CDR abstract in PubTator, its annotation lines of ``columns`` (5: ours before PubTator3's 6th column)."""
    text = f"{CDR_TITLE} {CDR_ABSTRACT}"
    lines, start = [f"227508|t|{CDR_TITLE}", f"227508|a|{CDR_ABSTRACT}"], 0
    for mention, kind, concept in CDR_MENTIONS:
        start = text.index(mention, start)
        lines.append("\t".join(["227508", str(start), str(start + len(mention)), mention, kind, concept][:columns]))
    lines += ["227508\tCID\tMESH:D008750\tMESH:D007022", "227508\tAssociation\tMESH:D003000\tMESH:D006973\tNovel"]
    return "\n".join([*lines, "", "9|t|Second.", "9\t0\t6\tSecond\tX\t", ""]) + "\n"  # an empty 6th column too


@pytest.mark.parametrize("columns", [6, 5])
def test_pubtator_with_and_without_the_concept_id_column_and_with_relations(tmp_path, columns):
    items = list(read_corpus(write(tmp_path / "cdr.pubtator", pubtator3(columns)), "pubtator"))
    text = f"{CDR_TITLE} {CDR_ABSTRACT}"
    assert [(d.id, document_text(d)) for d in items] == [("227508", text), ("9", "Second.")]


def test_pubtator3_annotation_lines_read_by_the_bioc_library_point_at_their_mentions():
    """The test file above is PubTator as its reference reader takes it: every mention at its offsets."""
    from bioc import pubtator

    (document, _) = pubtator.loads(pubtator3())
    assert [(a.text, a.type, a.id) for a in document.annotations] == CDR_MENTIONS
    assert all(document.text[a.start : a.end] == a.text for a in document.annotations)
    assert [(r.type, r.id1, r.id2) for r in document.relations][:1] == [("CID", "MESH:D008750", "MESH:D007022")]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("1\tzero\t3\tOne\tX\t-", "an annotation's start and end are not integers: 'zero', '3'"),
        ("1\t3\t1\tOne\tX\t-", "an annotation that ends (1) before it starts (3)"),
        ("1\tOne", "a line of 2 tab-separated columns"),
    ],
)
def test_pubtator_annotation_lines_that_cannot_be_read_are_record_errors(tmp_path, line, problem):
    path = write(tmp_path / "bad.pubtator", f"1|t|One.\n1|a|Two.\n{line}\n\n2|t|Next.\n")
    first, second = read_corpus(path, "pubtator")
    assert isinstance(first, RecordError) and str(first).startswith(f"{path}, record 1: line 3: {problem}")
    assert second.id == "2"


# --- Lines that are not UTF-8, files that are not text ------------------------------------------

# A line of Latin-1 among UTF-8 lines: byte 0xe9 ("é") is the 25th byte of its line.
LATIN1 = "Caf\u00e9 au lait spots".encode("latin-1")


@pytest.mark.parametrize(
    ("corpus_format", "lines", "expected"),
    [
        ("jsonl", [b'{"text": "One."}', b'{"text": "' + LATIN1 + b'"}', b'{"text": "Three."}'], [1, "line 2", 3]),
        ("pubtator", [b"1|t|One.", b"", b"2|t|" + LATIN1, b"", b"3|t|Three."], [1, "record 2: line 3", 3]),
    ],
)
def test_a_line_that_is_not_utf8_is_a_record_error_naming_file_and_line(tmp_path, corpus_format, lines, expected):
    path = write(tmp_path / f"latin1.{corpus_format}", b"\n".join(lines) + b"\n")
    items = list(read_corpus(path, corpus_format))
    assert [item.record if isinstance(item, Document) else None for item in items] == [1, None, 3]
    error = items[1]
    assert isinstance(error, RecordError)
    position = len(b"2|t|Caf" if corpus_format == "pubtator" else b'{"text": "Caf') + 1
    assert str(error) == f"{path}, {expected[1]}: not valid UTF-8 (byte 0xe9 at byte {position} of the line)"


def test_text_lines_are_documents_and_a_line_not_utf8_is_a_record_error(tmp_path):
    from hf_layer_tokclf.formats.corpus_readers import read_text_lines

    path = write(tmp_path / "abstracts.txt", b"First.\r\n" + LATIN1 + b"\n\nFourth.")
    items = list(read_text_lines(path))
    assert [(d.id, d.passages[0].text, d.fields) for d in items if isinstance(d, Document)] == [
        ("1", "First.", {"text": "First."}),
        ("3", "", {"text": ""}),
        ("4", "Fourth.", {"text": "Fourth."}),
    ]
    assert str(items[1]) == f"{path}, line 2: not valid UTF-8 (byte 0xe9 at byte 4 of the line)"
    gz = write(tmp_path / "abstracts.txt.gz", gzip.compress(b"\xef\xbb\xbfOne.\nTwo.\n"))  # a BOM is not text
    assert [d.passages[0].text for d in read_text_lines(gz)] == ["One.", "Two."]


# An image's first bytes: its header, then compressed data, which looks like any byte at random.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256))


@pytest.mark.parametrize("corpus_format", CORPUS_FORMATS)
def test_a_binary_file_is_refused_when_it_is_opened(tmp_path, corpus_format):
    for name, data in (("figure.png", PNG), ("figure.png.gz", gzip.compress(PNG))):
        with pytest.raises(
            DataError, match=rf"{name}: a binary file, not text \(\d+ of its first \d+ characters are NUL,"
        ):
            read_corpus(write(tmp_path / name, data), corpus_format)  # before any record is asked for


# --- Detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("pubmed24n0001.xml", PUBMED_XML, "pubmed"),
        ("corpus.xml", BIOC_XML, "bioc"),
        ("corpus", "\ufeff" + BIOC_XML, "bioc"),
        ("corpus.json", json.dumps(BIOC_JSON, indent=2), "bioc-json"),
        ("api.json", json.dumps([BIOC_JSON]), "bioc-json"),
        ("ncbi.txt", PUBTATOR, "pubtator"),
        ("empty.pubtator", "", "pubtator"),
        ("records.jsonl", '{"text": "a"}\n', "jsonl"),
        ("records.json", '{"text": "a"}\n{"text": "b"}\n', "jsonl"),
        ("notes.txt", "Some text.\n", None),
        ("notes.txt", "<5% of patients.\n", None),
    ],
)
def test_detect_corpus_format(tmp_path, name, text, expected):
    assert detect_corpus_format(write(tmp_path / name, text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<html></html>", "XML whose root element is <html>, which is neither PubMed XML"),
        ("<?xml version='1.0'?>\n<1root/>\n", "XML, but no root element could be read (line 2, column"),
    ],
)
def test_detect_corpus_format_refuses_other_xml(tmp_path, text, message):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'other.xml'}: {message}")):
        detect_corpus_format(write(tmp_path / "other.xml", text))


def test_detect_corpus_format_of_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        detect_corpus_format(tmp_path / "missing.xml")


# --- Writers ------------------------------------------------------------------------------------


def ncbi_documents(tmp_path: Path) -> list[Document]:
    """The PubTator documents and the PubMed ones: passages at PubTator's offsets, with and without abstracts."""
    items = [*read_corpus(write(tmp_path / "in.pubtator", PUBTATOR), "pubtator")]
    items += read_corpus(write(tmp_path / "in.xml", PUBMED_XML), "pubmed")
    return [item for item in items if isinstance(item, Document)]


@pytest.mark.parametrize("output_format", ["pubtator", "bioc", "bioc-json", "jsonl"])
def test_writers_round_trip_through_their_readers(tmp_path, output_format):
    documents = ncbi_documents(tmp_path)
    entities = [ENTITIES if d.id == "10021369" else [] for d in documents]
    path = write(tmp_path / "out", write_corpus(output_format, documents, entities))
    again = list(read_corpus(path, output_format))
    assert texts(again) == texts(documents)
    if output_format != "jsonl":  # JSON lines holds one text; the others keep the passages
        assert [[(p.text, p.offset) for p in d.passages] for d in again] == [
            [(p.text, p.offset) for p in d.passages] for d in documents
        ]


def test_pubtator_writer_entity_lines(tmp_path):
    documents = ncbi_documents(tmp_path)[:1]
    start = len(TITLE) + 1 + ABSTRACT.index("APC")
    none_aggregation = [{"entity": "B-Disease", "score": 0.5, "word": "APC", "start": start, "end": start + 3}]
    output = write_corpus("pubtator", documents, [ENTITIES + none_aggregation])
    assert output == (
        f"10021369|t|{TITLE}\n10021369|a|{ABSTRACT}\n"
        "10021369\t43\t76\tadenomatous polyposis coli tumour\tDisease\t-\n"
        f"10021369\t{start}\t{start + 3}\tAPC\tB-Disease\t-\n\n"
    )


def test_pubtator_writer_single_passage_and_bad_ids(tmp_path):
    document = Document("7", [Passage("One\nline.")])
    assert write_corpus("pubtator", [document]) == "7|t|One line.\n7|a|\n\n"  # a line break would end the line
    with pytest.raises(RecordError, match="cannot be a PubTator PMID"):
        write_corpus("pubtator", [Document("a|b", [Passage("x")], "in.jsonl", 3)])
    with pytest.raises(ValueError, match="outside its text"):
        write_corpus("pubtator", [document], [[{"entity_group": "X", "start": 5, "end": 50}]])


def test_bioc_xml_writer_places_entities_in_their_passages(tmp_path):
    documents = ncbi_documents(tmp_path)[:1]
    in_abstract = {"entity_group": "Disease", "score": 0.9, "start": 94, "end": 124}
    root = ET.fromstring(write_corpus("bioc", documents, [[*ENTITIES, in_abstract]]).encode())
    assert [root.findtext(tag) for tag in ("source", "date", "key")] == ["hf-layer-tokclf", "", ""]
    text = document_text(documents[0])
    for passage, expected in zip(root.iter("passage"), (["T1"], ["T2"]), strict=True):
        annotations = passage.findall("annotation")
        assert [a.get("id") for a in annotations] == expected
        for annotation in annotations:
            location = annotation.find("location")
            start, length = int(location.get("offset")), int(location.get("length"))
            assert annotation.findtext("text") == text[start : start + length]
            assert annotation.find("infon[@key='type']").text == "Disease"
    assert root.find(".//annotation/infon[@key='score']").text == "0.98"


def test_bioc_json_writer_annotations_and_options(tmp_path):
    documents = ncbi_documents(tmp_path)[:1]
    writer = get_writer("bioc-json", date="20240101", key="k")
    collection = json.loads(writer.header() + writer.document(documents[0], ENTITIES) + writer.footer())
    assert (collection["date"], collection["key"]) == ("20240101", "k")
    (annotation,) = collection["documents"][0]["passages"][0]["annotations"]
    assert annotation == {
        "id": "T1",
        "infons": {"type": "Disease", "score": "0.98"},
        "text": "adenomatous polyposis coli tumour",
        "locations": [{"offset": 43, "length": 33}],
    }


@pytest.mark.parametrize("output_format", OUTPUT_FORMATS)
def test_chunks_from_separate_writers_concatenate(tmp_path, output_format):
    documents = ncbi_documents(tmp_path)
    entities = [ENTITIES if d.id == "10021369" else [] for d in documents]
    first, second = get_writer(output_format), get_writer(output_format)
    chunks = [
        first.separator.join(first.document(d, e) for d, e in zip(documents[:2], entities[:2], strict=True)),
        second.separator.join(second.document(d, e) for d, e in zip(documents[2:], entities[2:], strict=True)),
    ]
    merged = first.header() + first.separator.join(chunks) + second.footer()
    assert merged == write_corpus(output_format, documents, entities)  # and so is the same on a rerun
    assert texts(read_corpus(write(tmp_path / "merged", merged), output_format)) == texts(documents)


@pytest.mark.parametrize("output_format", ["bioc", "bioc-json"])
def test_empty_outputs_are_valid(tmp_path, output_format):
    assert list(read_corpus(write(tmp_path / "empty", write_corpus(output_format, [])), output_format)) == []


@pytest.mark.parametrize("output_format", ["bioc", "bioc-json"])
def test_bioc_writers_escape_text(tmp_path, output_format):
    text = "a < b && c > d \"q\" 'q' ]]> \r\n x\x01y"
    document = Document("<id&>", [Passage(text, 0, {"type": "a&b"}), Passage("</text>", len(text) + 1)])
    entity = {"entity_group": "<T&>", "score": 1.0, "start": 0, "end": 5}
    output = write_corpus(output_format, [document], [[entity]])
    assert "\x01" not in output
    (again,) = read_corpus(write(tmp_path / "out", output), output_format)
    assert again.id == "<id&>" and again.passages[0].infons == {"type": "a&b"}
    # XML 1.0 cannot hold U+0001 (a space keeps the offsets); JSON escapes it.
    expected = text.replace("\x01", " ") if output_format == "bioc" else text
    assert [p.text for p in again.passages] == [expected, "</text>"]


def test_jsonl_keeps_the_record_and_adds_entities(tmp_path):
    lines = [
        json.dumps({"text": "Colon cancer.", "id": 7, "meta": {"é": [1, 2]}}, ensure_ascii=False),
        json.dumps({"pmid": "1", "text": "No id.", "entities": "old"}),
    ]
    items = list(read_corpus(write(tmp_path / "in.jsonl", "\n".join(lines) + "\n"), "jsonl"))
    assert [(d.id, d.fields["text"]) for d in items] == [("7", "Colon cancer."), ("2", "No id.")]
    found = [{"entity_group": "Disease", "score": 0.5, "word": "Colon cancer", "start": 0, "end": 12}]
    output = write_corpus("jsonl", items, [found, []]).splitlines()
    assert output[0] == lines[0][:-1] + ", " + json.dumps({"entities": found})[1:]
    assert output[1] == '{"pmid": "1", "text": "No id.", "entities": []}'
    plain = write_corpus("jsonl", [Document("d", [Passage("A", 0), Passage("B", 2)])])
    assert plain == '{"id": "d", "text": "A B", "entities": []}\n'


def test_every_corpus_format_has_a_reader_and_counts(tmp_path):
    files = {
        "jsonl": '{"text": "a"}\n\n{"text": "b"}\n',
        "pubmed": PUBMED_XML,
        "bioc": BIOC_XML,
        "bioc-json": json.dumps(BIOC_JSON),
        "pubtator": PUBTATOR,
    }
    assert set(files) == set(CORPUS_FORMATS)
    for corpus_format, text in files.items():
        path = write(tmp_path / corpus_format, text)
        count = count_records(path, corpus_format)
        assert count in (None, len(list(read_corpus(path, corpus_format))))
    with pytest.raises(DataError, match="no such file"):
        read_corpus(tmp_path / "missing", "pubmed")


# A multi-task model's entities: a Disease (task "disease") and, inside it, a Cancer (task "cg"), overlapping.
MULTITASK_ENTITIES = [
    {"entity_group": "Disease", "score": 0.98, "word": "x", "start": 43, "end": 76, "task": "disease"},
    {"entity_group": "Cancer", "score": 0.7, "word": "tumour", "start": 70, "end": 76, "task": "cg"},
    {"entity_group": "Gene_or_gene_product", "score": 0.6, "word": "APC", "start": 123, "end": 126, "task": "cg"},
]


def multitask_expected(document: Document) -> list[tuple[int, int, str, str, str]]:
    """(start, end, mention, type, task) of each of `MULTITASK_ENTITIES` in ``document``."""
    text = document_text(document)
    return [
        (e["start"], e["end"], text[e["start"] : e["end"]], e["entity_group"], e["task"]) for e in MULTITASK_ENTITIES
    ]


def test_pubtator_multitask_entities_have_their_task_in_a_7th_column_the_bioc_library_reads(tmp_path):
    from bioc import pubtator

    documents = ncbi_documents(tmp_path)[:1]
    output = write_corpus("pubtator", documents, [MULTITASK_ENTITIES])
    assert "10021369\t43\t76\tadenomatous polyposis coli tumour\tDisease\t-\tdisease\n" in output
    (document,) = pubtator.loads(output)
    read = [(a.start, a.end, a.text, a.type, a.others) for a in document.annotations]
    assert read == [(s, e, m, t, [task]) for s, e, m, t, task in multitask_expected(documents[0])]
    assert all(a.id == "-" for a in document.annotations) and not document.relations
    assert all(document.text[a.start : a.end] == a.text for a in document.annotations)
    # Our own reader reads it back as the same document (the 7th column is an annotation's, not an error).
    (again,) = read_corpus(write(tmp_path / "out.pubtator", output), "pubtator")
    assert texts([again]) == texts(documents)


@pytest.mark.parametrize("output_format", ["bioc", "bioc-json"])
def test_bioc_multitask_entities_have_a_task_infon_the_bioc_library_reads(tmp_path, output_format):
    from bioc import biocjson, biocxml

    documents = ncbi_documents(tmp_path)[:1]
    output = write_corpus(output_format, documents, [MULTITASK_ENTITIES])
    collection = (biocxml if output_format == "bioc" else biocjson).loads(output)
    (document,) = collection.documents
    annotations = [(p, a) for p in document.passages for a in p.annotations]
    read = [(a.total_span.offset, a.total_span.end, a.text, a.infons["type"], a.infons["task"]) for _, a in annotations]
    assert read == multitask_expected(documents[0])
    assert [a.id for _, a in annotations] == ["T1", "T2", "T3"]
    for passage, annotation in annotations:
        span = annotation.total_span
        assert passage.text[span.offset - passage.offset : span.end - passage.offset] == annotation.text


def test_single_task_entities_have_no_task_anywhere(tmp_path):
    """A single-task model's entities (no "task" key) are written as before: no 7th column, no task infon."""
    documents = ncbi_documents(tmp_path)[:1]
    for output_format in ("pubtator", "bioc", "bioc-json"):
        assert "task" not in write_corpus(output_format, documents, [ENTITIES]).replace("tumour", "")
    assert all(
        len(line.split("\t")) == 6
        for line in write_corpus("pubtator", documents, [ENTITIES]).splitlines()
        if "\t" in line
    )

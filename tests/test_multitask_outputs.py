"""A multi-task model's entities in the outputs that are not predict's own: the HTML page (overlaps nested, each
mark labelled with its task and type, a legend per task) and the spaCy component (``doc.spans[task]``, and
``doc.ents`` by the documented precedence), each read back by its reference reader (``html.parser``, spaCy)."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from hf_layer_tokclf.formats.rendering import entities_html

# Overlaps as a disease model and a cancer-genetics model give them: nested (a Cancer inside a Disease), the same
# span twice, and crossing (a Disease and a Cell sharing "cancer"); the text needs escaping.
HTML_RECORDS = [
    {
        "id": "d<1>",
        "text": "Hereditary breast cancer & BRCA1.",
        "entities": [
            {"entity_group": "Disease", "start": 0, "end": 24, "task": "disease"},
            {"entity_group": "Cancer", "start": 11, "end": 24, "task": "cg"},
            {"entity_group": "Gene_or_gene_product", "start": 27, "end": 32, "task": "cg"},
            {"entity_group": "Disease", "start": 27, "end": 32, "task": "disease"},
        ],
    },
    {
        "text": "Colon cancer cells grow.\nNo <b>entity</b> here.",
        "entities": [
            {"entity_group": "Disease", "start": 0, "end": 12, "task": "disease"},
            {"entity_group": "Cell", "start": 6, "end": 18, "task": "cg"},
        ],
    },
    {"text": "Nothing found.", "entities": []},
]


class MultitaskPage(HTMLParser):
    """What a reader sees in `entities_html`'s multi-task page: per figure its text; per entity (figure,
    ``data-entity``) its mention (the text of all its marks' pieces, labels left out), task, type and labels; the
    legend's tasks and their types."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.mentions: dict[tuple[int, int], str] = {}
        self.kinds: dict[tuple[int, int], set[tuple[str, str]]] = {}
        self.labels: dict[tuple[int, int], list[str]] = {}
        self.legend: dict[str, list[str]] = {}
        self._open: list[tuple[str, dict]] = []
        self.feed(page)
        self.close()

    def _inside(self, tag: str, cls: str | None = None) -> list[dict]:
        """The open ``tag`` elements (of class ``cls``), outermost first."""
        return [
            attrs
            for name, attrs in self._open
            if name == tag and (cls is None or cls in (attrs.get("class") or "").split())
        ]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "br":  # how the page shows a line break of the text
            self.handle_data("\n")
        if tag in ("br", "meta"):  # void elements: no end tag
            return
        self._open.append((tag, attrs))
        if tag == "figure":
            self.texts.append("")
        if tag == "div" and attrs.get("class") == "legend-task":
            self.legend[attrs["data-task"]] = []
        if tag == "mark" and "data-entity" in attrs:
            key = (len(self.texts) - 1, int(attrs["data-entity"]))
            self.mentions.setdefault(key, "")
            self.kinds.setdefault(key, set()).add((attrs["data-task"], attrs["data-type"]))

    def handle_endtag(self, tag):
        assert self._open and self._open[-1][0] == tag, f"</{tag}> closes {self._open[-1:]}"
        self._open.pop()

    def handle_data(self, data):
        if self._inside("div", "legend-task"):
            if self._inside("mark", "entity"):
                self.legend[self._inside("div", "legend-task")[0]["data-task"]].append(data)
            return
        if not self._inside("figure") or self._inside("h2"):
            return
        marks = [attrs for attrs in self._inside("mark", "entity") if "data-entity" in attrs]
        if self._inside("span", "label"):
            self.labels.setdefault((len(self.texts) - 1, int(marks[-1]["data-entity"])), []).append(data)
            return
        self.texts[-1] += data
        for attrs in marks:
            self.mentions[len(self.texts) - 1, int(attrs["data-entity"])] += data


def test_the_html_page_shows_overlapping_entities_of_every_task_labelled():
    page = MultitaskPage(entities_html(HTML_RECORDS))
    assert page.texts == [record["text"] for record in HTML_RECORDS]  # every character once, escaped and back
    expected = {
        (number, index): (record["text"][e["start"] : e["end"]], e["task"], e["entity_group"])
        for number, record in enumerate(HTML_RECORDS)
        for index, e in enumerate(record["entities"])
    }
    assert {key: (page.mentions[key], *page.kinds[key]) for key in page.mentions} == {
        key: (mention, (task, label)) for key, (mention, task, label) in expected.items()
    }
    assert page.labels == {key: [f"{task}: {label}"] for key, (_, task, label) in expected.items()}
    assert page.legend == {"disease": ["Disease"], "cg": ["Cancer", "Gene_or_gene_product", "Cell"]}


# --- spaCy ---------------------------------------------------------------------------------------

SPACY_TEXT = "Hereditary breast cancer in BRCA1 carriers ."
# What a multi-task model gives for SPACY_TEXT (the contract: sorted by start, each with its task).
SPACY_FOUND = [
    {
        "entity_group": "Disease",
        "score": 0.9,
        "word": "Hereditary breast cancer",
        "start": 0,
        "end": 24,
        "task": "disease",
    },
    {"entity_group": "Cancer", "score": 0.8, "word": "breast cancer", "start": 11, "end": 24, "task": "cg"},
    {"entity_group": "Gene_or_gene_product", "score": 0.7, "word": "BRCA1", "start": 28, "end": 33, "task": "cg"},
]


def component_doc(precedence: list[str] | None = None, found: list[dict] = SPACY_FOUND):
    """A doc of SPACY_TEXT annotated with ``found`` by a component (its model not loaded: `set_annotations`)."""
    spacy = pytest.importorskip("spacy")
    from hf_layer_tokclf.running.spacy_component import FACTORY

    nlp = spacy.blank("en")
    config = {"model": "never-loaded"} if precedence is None else {"model": "never", "task_precedence": precedence}
    component = nlp.add_pipe(FACTORY, config=config)
    doc = nlp.make_doc(SPACY_TEXT)
    component.set_annotations([doc], [found])
    return doc, component


def spans(group) -> list[tuple[str, str]]:
    return [(span.text, span.label_) for span in group]


def test_spacy_a_span_group_per_task_and_ents_by_task_order():
    doc, component = component_doc()
    assert spans(doc.spans["disease"]) == [("Hereditary breast cancer", "Disease")]
    assert spans(doc.spans["cg"]) == [("breast cancer", "Cancer"), ("BRCA1", "Gene_or_gene_product")]
    assert doc.spans["cg"].attrs["scores"] == [0.8, 0.7]
    assert spans(doc.spans["layer_tokclf"]) == [(e["word"], e["entity_group"]) for e in SPACY_FOUND]
    assert doc.spans["layer_tokclf"].attrs["tasks"] == ["disease", "cg", "cg"]
    # The tasks in their order ("disease" first): the Disease holds the tokens of the Cancer inside it.
    assert spans(doc.ents) == [("Hereditary breast cancer", "Disease"), ("BRCA1", "Gene_or_gene_product")]
    assert component.stats["overlapping"] == 1 and doc._.layer_tokclf_entities == SPACY_FOUND


def test_spacy_task_precedence_chooses_the_ents_and_docbin_keeps_them():
    from spacy.tokens import DocBin

    doc, _ = component_doc(["cg"])
    assert spans(doc.ents) == [("breast cancer", "Cancer"), ("BRCA1", "Gene_or_gene_product")]
    stored = DocBin(store_user_data=True)
    stored.add(doc)
    (again,) = DocBin().from_bytes(stored.to_bytes()).get_docs(doc.vocab)
    assert {key: spans(group) for key, group in again.spans.items()} == {
        key: spans(group) for key, group in doc.spans.items()
    }
    assert spans(again.ents) == spans(doc.ents)
    assert again.spans["cg"].attrs == {"scores": [0.8, 0.7]}
    assert list(again._.layer_tokclf_entities) == SPACY_FOUND  # msgpack gives the list back as a tuple


def test_spacy_single_task_entities_make_no_task_groups():
    found = [{k: v for k, v in e.items() if k != "task"} for e in SPACY_FOUND[::2]]
    doc, _ = component_doc(found=found)
    assert set(doc.spans) == {"layer_tokclf"} and doc.spans["layer_tokclf"].attrs == {"scores": [0.9, 0.7]}
    assert spans(doc.ents) == [(e["word"], e["entity_group"]) for e in found]


def test_spacy_task_precedence_and_spans_key_are_checked():
    with pytest.raises(ValueError, match="task_precedence must name tasks"):
        component_doc(["cg", "cg"])
    with pytest.raises(ValueError, match="spans_key 'cg' is the name of a task"):
        spacy = pytest.importorskip("spacy")
        nlp = spacy.blank("en")
        component = nlp.add_pipe("layer_tokclf", config={"model": "never", "spans_key": "cg"})
        component.set_annotations([nlp.make_doc(SPACY_TEXT)], [SPACY_FOUND])


# --- End to end: a real multi-task MiniLM (conftest's `multitask_dir`) -------------------------------------------


@pytest.fixture(scope="module")
def overlapping_dir(multitask_dir, tmp_path_factory):
    """`multitask_dir` with heads that tag regardless of the text (`overlapping_heads`): task ``cg`` the whole text
    one entity of its first type, task ``disease`` every word a Disease, so that every entity of one task overlaps
    entities of the other."""
    from test_predict_multitask import overlapping_heads

    from hf_layer_tokclf.model.tokenization import save_tokenizer
    from hf_layer_tokclf.running.loading import load_model

    model, tokenizer = load_model(multitask_dir)
    overlapping_heads(model)
    folder = tmp_path_factory.mktemp("overlapping") / "model"
    model.save_pretrained(folder)
    save_tokenizer(tokenizer, folder)
    return folder


@pytest.fixture(scope="module")
def both_corpora(tmp_path_factory):
    """4 PubTator documents: a sentence of NCBI-disease's test split as the title, one of BioNLP13CG's as the
    abstract."""
    from conftest import BIONLP13CG, NCBI, multitask_sentences

    titles, abstracts = (multitask_sentences(corpus, "test", 4) for corpus in (NCBI, BIONLP13CG))
    path = tmp_path_factory.mktemp("corpus") / "both.pubtator"
    path.write_text(
        "".join(
            f"{500 + i}|t|{' '.join(title.tokens)}\n{500 + i}|a|{' '.join(abstract.tokens)}\n\n"
            for i, (title, abstract) in enumerate(zip(titles, abstracts, strict=True))
        ),
        encoding="utf-8",
    )
    return path


def test_predict_every_corpus_format_carries_overlapping_entities_of_both_tasks_for_their_reference_readers(
    overlapping_dir, both_corpora, tmp_path
):
    """predict writes the same task-carrying entities, overlaps across tasks included, as JSON lines, PubTator, BioC
    XML, BioC JSON and HTML; the ``bioc`` library reads them back from the corpus formats, ``html.parser`` from
    the page."""
    from bioc import biocjson, biocxml, pubtator

    from hf_layer_tokclf.cli.main import main

    names = {"jsonl": "out.jsonl", "pubtator": "out.pubtator", "bioc": "out.bioc.xml", "bioc-json": "out.bioc.json"}
    outputs = {output_format: tmp_path / name for output_format, name in {**names, "html": "out.html"}.items()}
    for path in outputs.values():
        argv = ["predict", str(overlapping_dir), "--input", str(both_corpora), "--output", str(path), "--no-progress"]
        assert main(argv) == 0
    records = [json.loads(line) for line in outputs["jsonl"].read_text(encoding="utf-8").splitlines()]
    expected = [
        (r["id"], e["start"], e["end"], r["text"][e["start"] : e["end"]], e["entity_group"], e["task"])
        for r in records
        for e in r["entities"]
    ]
    assert len(records) == 4 and {task for *_, task in expected} == {"cg", "disease"}
    for record in records:  # in every passage (title, abstract) the cg entity holds every Disease
        cgs = [e for e in record["entities"] if e["task"] == "cg"]
        diseases = [e for e in record["entities"] if e["task"] == "disease"]
        assert len(cgs) == 2 and len(diseases) > 5
        assert all(any(cg["start"] <= e["start"] < e["end"] <= cg["end"] for cg in cgs) for e in diseases)

    with open(outputs["pubtator"], encoding="utf-8") as stream:
        read = pubtator.load(stream)
    found = [(d.pmid, a.start, a.end, a.text, a.type, *a.others) for d in read for a in d.annotations]
    assert found == expected and not any(d.relations for d in read)
    assert all(d.text[a.start : a.end] == a.text for d in read for a in d.annotations)
    for output_format, module in (("bioc", biocxml), ("bioc-json", biocjson)):
        with open(outputs[output_format], encoding="utf-8") as stream:
            collection = module.load(stream)
        found = [
            (d.id, a.total_span.offset, a.total_span.end, a.text, a.infons["type"], a.infons["task"])
            for d in collection.documents
            for p in d.passages
            for a in p.annotations
        ]
        assert found == expected, output_format

    page = MultitaskPage(outputs["html"].read_text(encoding="utf-8"))
    assert page.texts == [r["text"] for r in records]
    shown = [
        (records[figure]["id"], page.mentions[figure, index], *page.kinds[figure, index])
        for figure, index in sorted(page.mentions)
    ]
    assert shown == [(identifier, mention, (task, label)) for identifier, _, _, mention, label, task in expected]


def multitask_nlp(model_dir, **config):
    spacy = pytest.importorskip("spacy")
    from hf_layer_tokclf.running.spacy_component import FACTORY

    nlp = spacy.blank("en")
    nlp.add_pipe(FACTORY, config={"model": str(model_dir), **config})
    return nlp


def test_spacy_span_groups_per_task_equal_predict_texts_and_ents_follow_the_models_task_order(multitask_dir):
    from conftest import BIONLP13CG, NCBI, multitask_sentences

    from hf_layer_tokclf.running.loading import load_model
    from hf_layer_tokclf.running.texts import predict_texts

    sentences = [*multitask_sentences(NCBI, "test", 10), *multitask_sentences(BIONLP13CG, "test", 10)]
    texts = [" ".join(s.tokens) for s in sentences]
    docs = list(multitask_nlp(multitask_dir).pipe(texts))
    expected = list(predict_texts(*load_model(multitask_dir), texts))
    assert {e["task"] for own in expected for e in own} == {"cg", "disease"}
    for doc, found in zip(docs, expected, strict=True):
        assert [{k: v for k, v in e.items() if k != "score"} for e in doc._.layer_tokclf_entities] == [
            {k: v for k, v in e.items() if k != "score"} for e in found
        ]
        aligned: dict[str, list] = {}
        for task in ("cg", "disease"):
            own = [e for e in found if e["task"] == task]
            group = doc.spans[task]
            assert [s.label_ for s in group] == [e["entity_group"] for e in own]
            assert all(s.start_char <= e["start"] < e["end"] <= s.end_char for s, e in zip(group, own, strict=True))
            assert group.attrs["scores"] == pytest.approx([e["score"] for e in own], abs=1e-4)
            aligned[task] = [
                s for s, e in zip(group, own, strict=True) if (s.start_char, s.end_char) == (e["start"], e["end"])
            ]
        # The model's order (cg, disease): every cg entity, and the Diseases on tokens no cg entity holds.
        held = {i for s in aligned["cg"] for i in range(s.start, s.end)}
        free = [s for s in aligned["disease"] if held.isdisjoint(range(s.start, s.end))]
        assert spans(doc.ents) == spans(sorted([*aligned["cg"], *free], key=lambda s: s.start))


def test_spacy_task_precedence_on_overlapping_entities_survives_to_disk_and_docbin(overlapping_dir, tmp_path):
    import spacy
    from spacy.tokens import DocBin

    text = "Breast cancer cells grew in mice."
    words = [("Breast", "Disease"), ("cancer", "Disease"), ("cells", "Disease"), ("grew", "Disease")]
    words += [("in", "Disease"), ("mice", "Disease"), (".", "Disease")]
    default = multitask_nlp(overlapping_dir)(text)
    (whole,) = spans(default.spans["cg"])
    assert whole[0] == text and spans(default.ents) == [whole]  # the model's order: cg first
    assert spans(default.spans["disease"]) == words
    nlp = multitask_nlp(overlapping_dir, task_precedence=["disease"])
    nlp.to_disk(tmp_path / "pipeline")
    for doc in (nlp(text), spacy.load(tmp_path / "pipeline")(text)):
        assert spans(doc.ents) == words and spans(doc.spans["cg"]) == [whole]
        stored = DocBin(store_user_data=True)
        stored.add(doc)
        (again,) = DocBin().from_bytes(stored.to_bytes()).get_docs(doc.vocab)
        assert {k: spans(g) for k, g in again.spans.items()} == {k: spans(g) for k, g in doc.spans.items()}
        assert spans(again.ents) == words
    chosen = multitask_nlp(overlapping_dir, tasks=["disease"])(text)  # predict's --tasks
    assert set(chosen.spans) == {"layer_tokclf", "disease"} and spans(chosen.ents) == words
    with pytest.raises(ValueError, match=r"task_precedence names 'cg', not a task the model .* predicts"):
        multitask_nlp(overlapping_dir, tasks=["disease"], task_precedence=["cg"])(text)
    with pytest.raises(ValueError, match="'gene' is not a task of this model; its tasks are cg, disease"):
        multitask_nlp(overlapping_dir, tasks=["disease", "gene"])(text)

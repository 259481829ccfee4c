"""A multi-task model's entities in the outputs that are not predict's own: the HTML page (overlaps nested, each
mark labelled with its task and type, a legend per task) and the spaCy component (``doc.spans[task]``, and
``doc.ents`` by the documented precedence), each read back by its reference reader (``html.parser``, spaCy)."""

from __future__ import annotations

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

"""The spaCy component and the HTML page: predict's entities on spaCy docs, alignment counted, nlp.pipe, to_disk /
spacy.load without the original folder, the entry point, spaCy optional; entities_html lists every entity.

The model is `save_tiny_model`'s random one with a strong head (entities in every sentence, in a second): what
is tested is that the component reports predict_texts' entities, whatever they are."""

from __future__ import annotations

import importlib
import importlib.metadata
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from conftest import NCBI, REPO, TEXT, save_tiny_model

spacy = pytest.importorskip("spacy")  # the dev extra installs it

from spacy import displacy  # noqa: E402
from spacy.tokenizer import Tokenizer  # noqa: E402

from hf_layer_tokclf.formats.loading import load_sentences  # noqa: E402
from hf_layer_tokclf.formats.rendering import entities_html, write_html  # noqa: E402
from hf_layer_tokclf.running.loading import load_model  # noqa: E402
from hf_layer_tokclf.running.spacy_component import FACTORY, LayerTokenClassifier, make_layer_tokclf  # noqa: E402
from hf_layer_tokclf.running.texts import predict_texts  # noqa: E402

INSTALL = 'pip install "hf-layer-tokclf[spacy]"'


@pytest.fixture(scope="module")
def texts() -> list[str]:
    sentences = load_sentences(str(NCBI / "test.tsv"))[:40]
    return [" ".join(s.tokens) for s in sentences] + [TEXT, ""]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("spacy") / "model", tokenizer, head_scale=30)


@pytest.fixture(scope="module")
def expected(model_dir, texts):
    model, tokenizer = load_model(model_dir)
    return list(predict_texts(model, tokenizer, texts))


@pytest.fixture(scope="module")
def nlp(model_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe(FACTORY, config={"model": str(model_dir)})
    return nlp


@pytest.fixture(scope="module")
def docs(nlp, texts):
    return [nlp(text) for text in texts]


def offsets(entities) -> list[tuple[int, int, str]]:
    return [(e["start"], e["end"], e["entity_group"]) for e in entities]


def spans(doc, key: str = FACTORY) -> list[tuple[int, int, str]]:
    return [(s.start_char, s.end_char, s.label_) for s in doc.spans[key]]


def ents(doc) -> list[tuple[int, int, str]]:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def assert_same_entities(found, expected):
    """Equal but for the scores, which agree to float32 rounding (a text batched with others is padded)."""
    assert [[{k: v for k, v in e.items() if k != "score"} for e in f] for f in found] == [
        [{k: v for k, v in e.items() if k != "score"} for e in f] for f in expected
    ]
    assert [e["score"] for f in found for e in f] == pytest.approx([e["score"] for f in expected for e in f], abs=1e-4)


def test_the_component_finds_predict_texts_entities(docs, expected):
    assert sum(len(e) for e in expected) > 40
    assert_same_entities([doc._.layer_tokclf_entities for doc in docs], expected)  # exact offsets, words
    for doc, found in zip(docs, expected, strict=True):
        assert doc.spans[FACTORY].attrs["scores"] == [e["score"] for e in doc._.layer_tokclf_entities]
        aligned = [e for e in offsets(found) if doc.char_span(e[0], e[1], alignment_mode="strict") is not None]
        assert doc._.layer_tokclf_misaligned == len(found) - len(aligned)
        # Space-joined tokens: spaCy splits where the model's tokenizer does, so every entity is a doc entity.
        assert spans(doc) == offsets(found) == ents(doc)


def test_nlp_pipe_equals_one_doc_at_a_time(nlp, docs, texts):
    piped = list(nlp.pipe(texts, batch_size=7))
    assert [d.text for d in piped] == texts
    assert_same_entities([d._.layer_tokclf_entities for d in piped], [d._.layer_tokclf_entities for d in docs])
    assert [ents(d) for d in piped] == [ents(d) for d in docs]
    assert [spans(d) for d in piped] == [spans(d) for d in docs]


def glued(text: str) -> str:
    """Space-joined tokens as prose: no space before ``, . ; : )`` or after ``(``."""
    return re.sub(r"\( ", "(", re.sub(r" ([,.;:)])", r"\1", text))


def test_misaligned_entities_are_counted_widened_and_kept_out_of_ents(model_dir, texts, logs):
    """A whitespace tokenizer keeps ``cancer.`` whole; the model's entity ``cancer`` then does not align."""
    nlp = spacy.blank("en")
    nlp.tokenizer = Tokenizer(nlp.vocab)  # splits on spaces only
    component = nlp.add_pipe(FACTORY, config={"model": str(model_dir)})
    prose = [glued(t) for t in texts]
    docs = list(nlp.pipe(prose))
    total = misaligned = 0
    for text, doc in zip(prose, docs, strict=True):
        found = doc._.layer_tokclf_entities
        starts = {m.start() for m in re.finditer(r"\S+", text)}
        ends = {m.end() for m in re.finditer(r"\S+", text)}
        off = [e for e in found if e["start"] not in starts or e["end"] not in ends]
        assert doc._.layer_tokclf_misaligned == len(off)
        assert len(doc.spans[FACTORY]) == len(found)  # none dropped
        for entity, span in zip(found, doc.spans[FACTORY], strict=True):
            assert span.start_char <= entity["start"] < entity["end"] <= span.end_char
            assert span.label_ == entity["entity_group"]
            assert (span.start_char, span.end_char) == (entity["start"], entity["end"]) or entity in off
        assert ents(doc) == [o for o, e in zip(offsets(found), found, strict=True) if e not in off]
        total += len(found)
        misaligned += len(off)
    assert misaligned > 0 and total - misaligned > 0
    assert component.stats["entities"] == total and component.stats["misaligned"] == misaligned
    assert f"{misaligned} of {total} predicted entities" in logs.getvalue()


def test_earlier_entities_are_kept(nlp, expected, texts):
    index = next(i for i, e in enumerate(expected) if e)
    first = expected[index][0]
    doc = nlp.make_doc(texts[index])
    doc.ents = [doc.char_span(first["start"], first["end"], label="RULE")]
    doc = nlp.get_pipe(FACTORY)(doc)
    assert ents(doc) == [(first["start"], first["end"], "RULE"), *offsets(expected[index])[1:]]
    assert spans(doc) == offsets(expected[index])  # the span group still has every prediction


def test_saved_pipeline_loads_offline_without_the_original_folder(
    tmp_path, model_dir, texts, expected, no_other_source
):
    source = shutil.copytree(model_dir, tmp_path / "model")
    nlp = spacy.blank("en")
    # Between two scores far apart (not at one: batching moves scores by float32 rounding), near the median.
    scores = sorted({e["score"] for found in expected for e in found})
    low = next(a for a, b in itertools.pairwise(scores[len(scores) // 3 :]) if b - a > 1e-3)
    threshold = low + 5e-4
    nlp.add_pipe(FACTORY, config={"model": str(source), "min_score": threshold})
    nlp.to_disk(tmp_path / "pipeline")
    nlp.to_disk(tmp_path / "pipeline")  # again over itself: the model folder is replaced whole
    shutil.rmtree(source)
    no_other_source.clear()  # what to_disk read from the source folder
    loaded = spacy.load(tmp_path / "pipeline")  # the configured folder is gone: the saved copy loads
    component = loaded.get_pipe(FACTORY)
    assert isinstance(component, LayerTokenClassifier)
    assert component.predict_options["min_score"] == threshold
    found = [d._.layer_tokclf_entities for d in loaded.pipe(texts)]
    assert 0 < sum(map(len, found)) < sum(map(len, expected))
    assert_same_entities(found, [[e for e in f if e["score"] >= threshold] for f in expected])
    saved = tmp_path / "pipeline" / FACTORY / "model"
    assert {"config.json", "model.safetensors", "tokenizer.json", "pipeline_layer_tokclf.py"} <= set(os.listdir(saved))
    assert no_other_source and all(s.startswith(str(saved)) for s in no_other_source)


def test_an_onnx_folder_serves_and_travels_with_the_pipeline(tmp_path, model_dir, texts):
    pytest.importorskip("onnxruntime")  # the onnx extra (in dev)
    from hf_layer_tokclf.running.export import export_onnx
    from hf_layer_tokclf.running.onnx_runner import OnnxTokenClassifier

    export_onnx(model_dir, tmp_path / "onnx")
    nlp = spacy.blank("en")
    nlp.add_pipe(FACTORY, config={"model": str(tmp_path / "onnx")})
    found = [d._.layer_tokclf_entities for d in nlp.pipe(texts)]
    assert_same_entities(found, list(predict_texts(*load_model(tmp_path / "onnx"), texts)))
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(tmp_path / "onnx")
    loaded = spacy.load(tmp_path / "pipeline")
    assert isinstance(loaded.get_pipe(FACTORY).model, OnnxTokenClassifier)
    assert_same_entities([d._.layer_tokclf_entities for d in loaded.pipe(texts)], found)


def test_pyproject_declares_the_factory_and_the_extra():
    pyproject = (REPO / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.entry-points\.spacy_factories\]\n(.*?)(?:\n\[|\Z)", pyproject, re.S | re.M)
    assert section, "pyproject.toml has no [project.entry-points.spacy_factories]"
    target = dict(re.findall(r'^(\w+) = "([^"]+)"', section[1], re.M))[FACTORY]
    module, _, name = target.partition(":")
    assert getattr(importlib.import_module(module), name) is make_layer_tokclf
    assert re.search(r'^spacy = \["spacy>=3\.7,<4"\]', pyproject, re.M)
    assert '"spacy>=3.7,<4"' in re.search(r"^dev = \[.*\]", pyproject, re.M)[0]  # CI installs .[dev]


def test_spacy_finds_the_factory_through_the_entry_point(model_dir):
    """NEEDS `pip install -e .` after the entry point was added: pip writes entry points at install time.

    A fresh process imports spacy only; ``add_pipe("layer_tokclf")`` must import our module itself.
    """
    if not any(ep.name == FACTORY for ep in importlib.metadata.entry_points(group="spacy_factories")):
        message = "the installed hf-layer-tokclf predates its spacy_factories entry point: run pip install -e ."
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.xfail(message)
    script = (
        "import sys, spacy\n"
        "nlp = spacy.blank('en')\n"
        "nlp.add_pipe('layer_tokclf', config={'model': sys.argv[1]})\n"
        "assert 'hf_layer_tokclf.running.spacy_component' in sys.modules\n"
        "print(len(nlp(sys.argv[2])._.layer_tokclf_entities))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's package, whatever the install points at
    proc = subprocess.run(
        [sys.executable, "-c", script, str(model_dir), TEXT], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) > 0


def test_without_spacy_the_errors_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy", None)  # what `import spacy` finds when it is not installed
    monkeypatch.delitem(sys.modules, "hf_layer_tokclf.running.spacy_component")  # restored afterwards
    with pytest.raises(ImportError, match=re.escape(INSTALL)):
        importlib.import_module("hf_layer_tokclf.running.spacy_component")
    with pytest.raises(ImportError, match=re.escape(INSTALL)):
        entities_html([{"text": TEXT, "entities": []}])


def test_transformers_4_gives_the_same_entities(transformers4_path, model_dir, texts, docs):
    script = (
        "import json, sys, spacy, transformers\n"
        "assert transformers.__version__.startswith('4.'), transformers.__version__\n"
        "import hf_layer_tokclf.running.spacy_component\n"
        "nlp = spacy.blank('en')\n"
        "nlp.add_pipe('layer_tokclf', config={'model': sys.argv[1]})\n"
        "print(json.dumps([nlp(text)._.layer_tokclf_entities for text in json.load(sys.stdin)]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([transformers4_path, str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(model_dir)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_entities(json.loads(proc.stdout.splitlines()[-1]), [d._.layer_tokclf_entities for d in docs])


class Marks(HTMLParser):
    """The ``(text, label)`` of every ``<mark>`` displaCy writes, and the ``<h2>`` titles, unescaped."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.marks: list[tuple[str, str]] = []
        self.titles: list[str] = []
        self._mark: list[str] | None = None
        self._in: str | None = None
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag == "mark":
            self._mark = ["", ""]
        elif tag == "span" and self._mark is not None:
            self._in = "label"
        elif tag == "h2":
            self._in = "title"
            self.titles.append("")

    def handle_endtag(self, tag):
        if tag == "mark" and self._mark is not None:
            self.marks.append((self._mark[0].strip(), self._mark[1].strip()))
            self._mark = None
        elif tag in ("span", "h2"):
            self._in = None

    def handle_data(self, data):
        if self._in == "title":
            self.titles[-1] += data
        elif self._mark is not None:
            self._mark[self._in == "label"] += data


def test_entities_html_lists_every_entity_escaped(docs, tmp_path):
    records = [
        {"id": f"test-{i}", "text": d.text, "entities": d._.layer_tokclf_entities} for i, d in enumerate(docs[:12])
    ]
    text = 'Tom & Jerry <b>"cancer"</b>\nnext line'
    start = text.index('"cancer"')
    odd = {"entity_group": "Dis<ease>&", "start": start, "end": start + len('"cancer"')}
    records += [{"id": "<id & 1>", "text": text, "entities": [odd]}, {"text": TEXT, "entities": []}]
    page = entities_html(records)
    parsed = Marks(page)
    assert parsed.marks == [
        (r["text"][e["start"] : e["end"]], e["entity_group"]) for r in records for e in r["entities"]
    ]
    assert len(parsed.marks) > 40
    assert parsed.titles == [r["id"] for r in records if "id" in r]  # the record without an id has no title
    assert "<b>" not in page and "<id" not in page and '<meta charset="utf-8">' in page
    write_html(tmp_path / "page.html", records)
    assert (tmp_path / "page.html").read_text(encoding="utf-8") == page


def test_entities_html_names_the_bad_record():
    with pytest.raises(ValueError, match="record 2 has no text"):
        entities_html([{"text": "a", "entities": []}, {"entities": []}])
    with pytest.raises(ValueError, match=r"record 1: entity .* lies outside its text"):
        entities_html([{"text": "cancer", "entities": [{"entity_group": "Disease", "start": 0, "end": 9}]}])


def test_displacy_shows_the_components_entities(docs):
    shown = [d for d in docs if d.ents]
    assert Marks(displacy.render(shown, style="ent", jupyter=False)).marks == [
        (e.text, e.label_) for d in shown for e in d.ents
    ]


def test_spacy_probing_a_component_loads_nothing(tmp_path):
    """spaCy checks every component against protocols with a `model` member while it builds a pipeline (in an
    order that depends on the hash seed), before `from_disk`: that must not load the configured folder."""
    from spacy import ty

    nlp = spacy.blank("en")
    component = nlp.add_pipe(FACTORY, config={"model": str(tmp_path / "gone")})
    assert not isinstance(component, ty.ListenedToComponent)
    assert not isinstance(component, ty.TrainableComponent)
    assert component.model is None  # loaded on first use, and only then does a missing folder fail
    with pytest.raises(ValueError, match="cannot load the model"):
        nlp("BRCA1 mutations cause breast cancer.")


def test_a_mistyped_model_folder_is_no_such_folder_not_a_hub_error(model_dir, monkeypatch):
    """config={"model": "runs/my-modle"} beside runs/my-model: the folder's name and the nearest, not the Hub's."""
    monkeypatch.chdir(model_dir.parent.parent)
    typo = f"{model_dir.parent.name}/modle"
    nlp = spacy.blank("en")
    nlp.add_pipe(FACTORY, config={"model": typo})
    with pytest.raises(ValueError) as error:
        nlp("BRCA1 mutations cause breast cancer.")
    message = str(error.value)
    assert f"no such folder: {typo}" in message and f"did you mean {model_dir.parent.name}/model?" in message
    assert "huggingface.co" not in message

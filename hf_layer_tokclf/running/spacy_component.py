"""A spaCy pipeline component, ``"layer_tokclf"``: a model of this package (or its ONNX export) sets ``doc.ents``.

::

    nlp = spacy.blank("en")
    nlp.add_pipe("layer_tokclf", config={"model": "runs/my-model"})
    doc = nlp("Germline mutations in BRCA1 cause hereditary breast and ovarian cancer.")

The entities are `texts.predict_texts`'s for the doc's text (same decoding, aggregation and
scores), placed on spaCy's tokens:

- ``doc.spans[spans_key]`` (default ``"layer_tokclf"``) holds every predicted entity, in order: one
  that starts and ends on spaCy token boundaries as exactly that span, one that does not (our
  tokenizer split a word spaCy keeps whole: ``"BRCA1-carriers"``) widened to the tokens it touches
  (``alignment_mode="expand"``). Its ``attrs["scores"]`` are the entities' scores, as spaCy's
  ``spancat`` stores them.
- ``doc._.layer_tokclf_entities`` is the model's output itself, index for index with that span
  group: ``{"entity_group", "score", "word", "start", "end"}`` with the exact character offsets.
- ``doc.ents`` gets the entities that align and overlap no entity already there (an earlier
  component's are kept).
- A multi-task model's entities each carry their ``"task"`` (every task's, or those the component's
  ``tasks`` names, as predict's ``--tasks``); ``doc.spans[task]`` holds each task's (a span group per task
  predicted, empty where it found none, overlaps with other tasks kept; its ``attrs["scores"]`` as above),
  ``doc.spans[spans_key]`` all of them (``attrs["tasks"]`` says whose), and ``doc.ents``, which cannot
  overlap, a selection by precedence: the tasks in the order of the component's ``task_precedence``, the
  tasks it leaves out after it in their order (``tasks``, by default the model's, ``config.tasks``); within
  a task leftmost first, then longest. An entity whose tokens one placed before it holds is left out of
  ``doc.ents`` only (counted in ``stats["overlapping"]``).
- ``doc._.layer_tokclf_misaligned`` counts the entities that did not align (they are in the span
  group, widened, and not in ``doc.ents``); each batch with some logs a warning, and the
  component's `LayerTokenClassifier.stats` keeps running totals.

``nlp.pipe`` hands each batch of docs (its ``batch_size``, default ``nlp.batch_size``) to
`predict_texts` at once, which runs them in length-sorted batches of the component's own
``batch_size`` windows. ``nlp.to_disk(path)`` saves the model inside the pipeline folder
(``save_pretrained`` and the tokenizer, as ``train`` writes them; an ONNX serving folder is
copied), and ``spacy.load(path)`` loads that copy, so the folder named in ``config["model"]`` may
be gone by then: the component loads its configured model only when first used.

The factory is registered on import and through the ``spacy_factories`` entry point of the
installed package, so ``nlp.add_pipe("layer_tokclf")`` works after ``import spacy`` alone.
"""

import logging
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..base.extras import require

try:
    import spacy  # noqa: F401  (the check: the rest imports names from it)
except ImportError:
    require("spacy", "the spaCy component (hf_layer_tokclf.running.spacy_component)")  # raises, with the pip line
    raise

from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.scorer import get_ner_prf
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples
from spacy.util import ensure_path, from_disk, minibatch, to_disk

from ..base.outputs import Outputs, atomic_folder
from .decoding import DEFAULT_DECODING, DEFAULT_STRATEGY, check_decoding, check_strategy

__all__ = ["FACTORY", "MODEL_FOLDER", "LayerTokenClassifier", "make_layer_tokclf"]

FACTORY = "layer_tokclf"
MODEL_FOLDER = "model"  # the model's folder inside the component's folder of a saved pipeline
ENTITIES_ATTR = "layer_tokclf_entities"
MISALIGNED_ATTR = "layer_tokclf_misaligned"
DEFAULT_CONFIG: dict[str, Any] = {
    "decoding": DEFAULT_DECODING,
    "aggregation_strategy": DEFAULT_STRATEGY,
    "batch_size": 32,  # windows per forward pass: predict's --batch-size
    "max_length": None,
    "stride": None,
    "device": None,  # the CPU, as loading.load_model
    "dtype": "auto",
    "min_score": None,
    "trust_remote_code": None,  # None: HF_LAYER_TOKCLF_TRUST_REMOTE_CODE decides (code_consent.may_run_code)
    "spans_key": FACTORY,
    "tasks": None,  # a multi-task model's tasks to predict, as predict's --tasks; None: all, in the model's order
    "task_precedence": None,  # a multi-task model's tasks, first first, for doc.ents; None: the order of tasks
}

logger = logging.getLogger(__name__)
# The pipeline's model folder, replaced whole by `to_disk` as spaCy replaces its own folders.
_MODEL_OUTPUTS = Outputs("spacy to_disk", written=lambda name: True, legacy=lambda folder: True)

# None, not a list or 0, on docs the component has not seen: a mutable default would be shared by every doc.
for _name in (ENTITIES_ATTR, MISALIGNED_ATTR):
    if not Doc.has_extension(_name):
        Doc.set_extension(_name, default=None)


class LayerTokenClassifier(Pipe):
    """Sets ``doc.ents`` and ``doc.spans[spans_key]`` from a token classifier of this package (see the module).

    ``model`` is a trained output folder, an ``export-onnx`` folder or a Hub id, loaded (with
    `loading.load_model`) on first use into the ``model`` and ``tokenizer`` attributes (`None` until
    then, or until `from_disk` loads a saved copy). The other arguments are `texts.predict_texts`'s
    and `load_model`'s, with their defaults. ``stats`` counts docs, entities, misaligned entities
    and aligned ones left out of ``doc.ents`` because they overlap an entity already there (or, of a
    multi-task model, one of a task that ``task_precedence`` puts first).
    """

    def __init__(
        self,
        nlp: Language,
        name: str = FACTORY,
        *,
        model: str,
        decoding: str = DEFAULT_DECODING,
        aggregation_strategy: str = DEFAULT_STRATEGY,
        batch_size: int = 32,
        max_length: int | None = None,
        stride: int | None = None,
        device: str | None = None,
        dtype: str = "auto",
        min_score: float | None = None,
        trust_remote_code: bool | None = None,
        spans_key: str = FACTORY,
        tasks: Sequence[str] | None = None,
        task_precedence: Sequence[str] | None = None,
    ) -> None:
        # Checked here, not at the first doc: a typo in the config fails at add_pipe / spacy.load.
        if batch_size < 1:
            raise ValueError(f"{name}: batch_size must be at least 1, got {batch_size}.")
        if not spans_key:
            raise ValueError(f"{name}: spans_key must not be empty.")
        precedence = list(task_precedence or [])
        if not all(isinstance(task, str) and task for task in precedence) or len(set(precedence)) < len(precedence):
            raise ValueError(f"{name}: task_precedence must name tasks (distinct strings), got {task_precedence!r}.")
        from .onnx_runner import check_onnx_extra  # lazily, as the model: onnx_runner imports torch

        check_onnx_extra(model, f"the spaCy component {name!r}")
        self.name = name
        self.vocab = nlp.vocab
        self.model_path = str(model)
        self.predict_options: dict[str, Any] = {
            "decoding": check_decoding(decoding),
            "aggregation_strategy": check_strategy(aggregation_strategy),
            "batch_size": batch_size,
            "max_length": max_length,
            "stride": stride,
            "min_score": min_score,
            "tasks": None if tasks is None else list(tasks),
        }
        self.load_options: dict[str, Any] = {"device": device, "dtype": dtype, "trust_remote_code": trust_remote_code}
        self.spans_key = spans_key
        self.task_precedence = precedence
        self.tasks: list[str] = []  # a multi-task model's tasks predicted, in their order, once loaded
        self.stats = {"docs": 0, "entities": 0, "misaligned": 0, "overlapping": 0}
        # Plain attributes, not properties that load: spaCy probes `model` on every component while it builds a
        # pipeline (runtime-checked protocols), before `from_disk` has put the saved copy in place.
        self.model: Any = None  # the token classifier (PyTorch or `onnx_runner.OnnxTokenClassifier`) once loaded
        self.tokenizer: Any = None

    # -- the model ---------------------------------------------------------------------------------

    def _model_and_tokenizer(self) -> tuple[Any, Any]:
        """The model and tokenizer, loading the configured ``model`` on first use."""
        if self.model is None:
            self.model, self.tokenizer = self._load(self.model_path)
        return self.model, self.tokenizer

    def _load(self, path: str | Path) -> tuple[Any, Any]:
        """The model and tokenizer at ``path``; ``tasks`` and ``task_precedence`` checked against its tasks."""
        from .loading import load_model
        from .tasks import model_heads

        try:
            model, tokenizer = load_model(path, **self.load_options)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"{self.name}: cannot load the model {str(path)!r}: {error} (a pipeline saved with nlp.to_disk "
                "carries its own copy of the model; spacy.load it from that folder)."
            ) from error
        try:
            tasks = [head.name for head in model_heads(model, self.predict_options["tasks"]) if head.name is not None]
        except ValueError as error:
            raise ValueError(f"{self.name}: tasks {self.predict_options['tasks']}: {error}") from None
        unknown = [task for task in self.task_precedence if task not in tasks]
        if unknown:
            raise ValueError(
                f"{self.name}: task_precedence names {', '.join(map(repr, unknown))}, not a task the model "
                f"{str(path)!r} predicts (those: {', '.join(tasks) or 'none, it is a single-task model'})."
            )
        self.tasks = tasks
        return model, tokenizer

    # -- prediction --------------------------------------------------------------------------------

    def __call__(self, doc: Doc) -> Doc:
        """Annotates one doc (`pipe` batches many)."""
        error_handler = self.get_error_handler()
        try:
            self._annotate([doc])
        except Exception as error:
            error_handler(self.name, self, [doc], error)
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Annotates ``batch_size`` docs at a time, all through one `predict_texts` call (length-sorted windows).

        As in spaCy's own components, a batch that fails goes to the error handler
        (``nlp.set_error_handler``); with one that does not raise, that batch's docs are left out.
        """
        if batch_size < 1:
            raise ValueError(f"{self.name}: batch_size must be at least 1, got {batch_size}.")
        error_handler = self.get_error_handler()
        for docs in minibatch(stream, size=batch_size):
            try:
                self._annotate(docs)
            except Exception as error:
                error_handler(self.name, self, docs, error)
                continue
            yield from docs

    def predict(self, docs: Sequence[Doc]) -> list[list[dict[str, Any]]]:
        """The model's entities of each doc's text: `texts.predict_texts`, one chunk for the whole batch."""
        from .texts import predict_texts

        model, tokenizer = self._model_and_tokenizer()
        texts = [doc.text for doc in docs]
        if not texts:
            return []
        return list(predict_texts(model, tokenizer, texts, chunk_size=len(texts), **self.predict_options))

    def set_annotations(self, docs: Sequence[Doc], predictions: Sequence[list[dict[str, Any]]]) -> None:
        """Writes ``predictions`` (from `predict`) onto ``docs``; logs a warning if some did not align."""
        entities = misaligned = 0
        for doc, found in zip(docs, predictions, strict=True):
            entities += len(found)
            misaligned += self._set_doc(doc, found)
        self.stats["docs"] += len(docs)
        self.stats["entities"] += entities
        self.stats["misaligned"] += misaligned
        if misaligned:
            logger.warning(
                "%s: %d of %d predicted entities in %d docs do not start and end on spaCy token boundaries; "
                "they are in doc.spans[%r] widened to whole tokens, not in doc.ents "
                "(doc._.%s counts them per doc; doc._.%s has the exact offsets).",
                self.name,
                misaligned,
                entities,
                len(docs),
                self.spans_key,
                MISALIGNED_ATTR,
                ENTITIES_ATTR,
            )

    def _annotate(self, docs: Sequence[Doc]) -> None:
        self.set_annotations(docs, self.predict(docs))

    def _set_doc(self, doc: Doc, found: list[dict[str, Any]]) -> int:
        """Sets one doc's span groups, entities and extensions; returns how many entities did not align."""
        spans: list[Span] = []
        aligned: list[int] = []  # indices into found (and spans) of the entities on token boundaries
        for index, entity in enumerate(found):
            label = entity_label(entity)
            span = doc.char_span(entity["start"], entity["end"], label=label, alignment_mode="strict")
            if span is not None and len(span):
                aligned.append(index)
            else:
                span = snap(doc, entity["start"], entity["end"], label)
            spans.append(span)
        scores = [float(e["score"]) for e in found]
        tasks = [entity.get("task") for entity in found]
        order = self.task_order(tasks)
        attrs: dict[str, Any] = {"scores": scores, "tasks": tasks} if order else {"scores": scores}
        doc.spans[self.spans_key] = SpanGroup(doc, name=self.spans_key, spans=spans, attrs=attrs)
        for task in order:
            mine = [i for i, owner in enumerate(tasks) if owner == task]
            group = [spans[i] for i in mine]
            doc.spans[task] = SpanGroup(doc, name=task, spans=group, attrs={"scores": [scores[i] for i in mine]})
        # Entities already set (an entity_ruler before us) stay; ours fill the tokens they leave free.
        rank = {task: number for number, task in enumerate(order)}
        taken = {i for ent in doc.ents for i in range(ent.start, ent.end)}
        added = []
        for index in sorted(aligned, key=lambda i: (rank.get(tasks[i], 0), spans[i].start, -spans[i].end)):
            span = spans[index]
            if taken.isdisjoint(range(span.start, span.end)):
                added.append(span)
                taken.update(range(span.start, span.end))
        self.stats["overlapping"] += len(aligned) - len(added)
        if added:
            doc.ents = sorted([*doc.ents, *added], key=lambda s: s.start)
        doc._.set(ENTITIES_ATTR, [dict(e) for e in found])
        doc._.set(MISALIGNED_ATTR, len(found) - len(aligned))
        return len(found) - len(aligned)

    def task_order(self, tasks: Iterable[str | None] = ()) -> list[str]:
        """A multi-task model's tasks by precedence for ``doc.ents``: ``task_precedence``, then the other tasks
        predicted in their order, then any other task in ``tasks`` (entities given to `set_annotations` before
        the model loaded) as they come. Empty for a single-task model."""
        order = dict.fromkeys([*self.task_precedence, *self.tasks, *(t for t in tasks if t is not None)])
        if self.spans_key in order:  # doc.spans[task] would replace the group of every entity
            raise ValueError(
                f"{self.name}: spans_key {self.spans_key!r} is the name of a task of the model, whose entities "
                "doc.spans[task] holds; set spans_key to another name."
            )
        return list(order)

    def score(self, examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
        """Entity precision, recall and F1 of ``doc.ents`` (``ents_p``, ``ents_r``, ``ents_f``, ``ents_per_type``)."""
        validate_examples(examples, "LayerTokenClassifier.score")
        return get_ner_prf(examples, **kwargs)

    # -- serialization -----------------------------------------------------------------------------

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Saves the model in ``path/model`` (``exclude=["model"]`` leaves it out: the pipeline then loads
        the configured ``model`` again)."""
        writers: dict[str, Callable[[Path], None]] = {MODEL_FOLDER: self._save_model}
        to_disk(path, writers, exclude)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> "LayerTokenClassifier":
        """Loads the model saved in ``path/model`` now (not lazily: the folder may be deleted after loading).

        A pipeline folder cannot consent to running code for its own model: where the folder's
        ``config.cfg`` sets ``trust_remote_code``, the value is not taken from it (`code_consent` then
        asks the environment); a ``spacy.load(path, config={...})`` override of a file that does not set
        it is the caller's, and counts.
        """
        if self._folder_asks_for_code(Path(path).parent / "config.cfg"):
            self.load_options["trust_remote_code"] = None
        readers: dict[str, Callable[[Path], None]] = {MODEL_FOLDER: self._load_saved}
        from_disk(path, readers, exclude)
        return self

    def _folder_asks_for_code(self, config_file: Path) -> bool:
        """Whether a pipeline's own ``config.cfg`` sets this component's ``trust_remote_code`` (logged if so)."""
        from thinc.api import Config

        if not self.load_options["trust_remote_code"] or not config_file.is_file():
            return False
        section = Config().from_disk(config_file, interpolate=False).get("components", {}).get(self.name, {})
        if not section.get("trust_remote_code"):
            return False  # the value came from the caller (an override of spacy.load), not the folder
        logger.warning(
            "%s: %s sets trust_remote_code; a pipeline folder cannot allow its own code to run, so that value is "
            "ignored. Set HF_LAYER_TOKCLF_TRUST_REMOTE_CODE=1 to allow it.",
            self.name,
            config_file,
        )
        return True

    def _save_model(self, folder: Path) -> None:
        from ..model.tokenization import save_tokenizer
        from .onnx_runner import OnnxTokenClassifier

        model, tokenizer = self._model_and_tokenizer()
        # Built beside the target and swapped in: a second to_disk over the same pipeline never leaves a
        # mix of two models' files (a stale model.onnx next to new PyTorch weights would be loaded as ONNX).
        with atomic_folder(folder, _MODEL_OUTPUTS) as building:
            if isinstance(model, OnnxTokenClassifier):
                if not model.folder.is_dir():
                    raise ValueError(f"{self.name}: the ONNX folder {model.folder} is gone; cannot save the model.")
                shutil.copytree(model.folder, building, dirs_exist_ok=True)
            else:
                model.save_pretrained(building)
                save_tokenizer(tokenizer, building)

    def _load_saved(self, folder: Path) -> None:
        folder = ensure_path(folder)
        if not folder.is_dir():  # saved with exclude=["model"]: keep the configured model
            logger.info(
                "%s: no saved model in %s; the configured model %s loads on first use.",
                self.name,
                folder,
                self.model_path,
            )
            return
        self.model, self.tokenizer = self._load(folder)
        self.model_path = str(folder)


@Language.factory(
    FACTORY,
    default_config=DEFAULT_CONFIG,
    assigns=[
        "doc.ents",
        "doc.spans",
        "token.ent_iob",
        "token.ent_type",
        f"doc._.{ENTITIES_ATTR}",
        f"doc._.{MISALIGNED_ATTR}",
    ],
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_layer_tokclf(
    nlp: Language,
    name: str,
    model: str,
    decoding: str,
    aggregation_strategy: str,
    batch_size: int,
    max_length: int | None,
    stride: int | None,
    device: str | None,
    dtype: str,
    min_score: float | None,
    trust_remote_code: bool | None,
    spans_key: str,
    tasks: list[str] | None,
    task_precedence: list[str] | None,
) -> LayerTokenClassifier:
    """The ``"layer_tokclf"`` factory: ``nlp.add_pipe("layer_tokclf", config={"model": PATH})``."""
    return LayerTokenClassifier(
        nlp,
        name,
        model=model,
        decoding=decoding,
        aggregation_strategy=aggregation_strategy,
        batch_size=batch_size,
        max_length=max_length,
        stride=stride,
        device=device,
        dtype=dtype,
        min_score=min_score,
        trust_remote_code=trust_remote_code,
        spans_key=spans_key,
        tasks=tasks,
        task_precedence=task_precedence,
    )


def entity_label(entity: dict[str, Any]) -> str:
    """An entity's type: ``entity_group``, or ``entity`` (a token's label) with ``aggregation_strategy="none"``."""
    label = entity.get("entity_group", entity.get("entity"))
    if not isinstance(label, str):
        raise ValueError(f"entity {entity!r} has no entity_group or entity label.")
    return label


def snap(doc: Doc, start: int, end: int, label: str) -> Span:
    """The tokens a character range touches (``alignment_mode="expand"``); an empty span where it touches none."""
    span = doc.char_span(start, end, label=label, alignment_mode="expand")
    if span is not None:
        return span
    # Only whitespace between tokens (never a real entity's text): an empty span where it starts, so the
    # entity still has its place in the span group.
    index = next((token.i for token in doc if token.idx >= start), len(doc))
    return Span(doc, index, index, label=label)

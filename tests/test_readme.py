"""Every code block of README.md runs as written, and its figures are the committed results.

The blocks run in README order in one sandbox folder, as a newcomer follows the README in a fresh clone, on the
small model the tests train (conftest's ``trained``). The README's placeholders are made real, never edited out:

- ``SANDBOX``: the files and folders the blocks name (``train.tsv``, ``runs/my-model``, ``pubmed26n0001.xml.gz``,
  ...), each made from the NCBI-disease data or the trained model before the first block runs;
- ``LINE_RULES``: the few changes a command line gets, each with its reason (training runs 2 steps, ...);
- ``CANNOT_RUN``: the lines that cannot run here, each with its reason and the test that runs the nearest thing.

Command lines run in this process (``hf_layer_tokclf.cli.main.main`` on the line's words, standard input and the
working folder set up), since a subprocess costs seconds of imports. Each must exit 0 and write the files it
names (else print something). A README line no rule covers runs as written; a command the test cannot run
fails with a message saying how to add a rule.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import re
import shlex
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BIONLP13CG, NCBI, REPO

# --- the README's placeholders, made real in the sandbox folder --------------------------------------------------

SLICES = {"train": 8, "devel": 8, "test": 8}  # NCBI-disease sentences per split: seconds of training
DOCUMENTS = 8  # documents of 3 NCBI test sentences each, in every corpus format the README names


def ncbi_sentences(split: str) -> list[str]:
    """The CoNLL blocks of an NCBI-disease split's first sentences (``SLICES``)."""
    return (NCBI / f"{split}.tsv").read_text().strip().split("\n\n")[: SLICES[split]]


def write_slice(split: str) -> Callable[[Path, Path], None]:
    return lambda path, model: path.write_text("\n\n".join(ncbi_sentences(split)) + "\n")


def documents() -> list[dict]:
    """NCBI test sentences, detokenized by spaces, three to a document, with PMIDs."""
    blocks = (NCBI / "test.tsv").read_text().strip().split("\n\n")[: 3 * DOCUMENTS // 2]
    sentences = [" ".join(line.split("\t")[0] for line in block.splitlines()) for block in blocks]
    return [{"id": str(9000 + i), "text": " ".join(sentences[3 * i : 3 * i + 3])} for i in range(DOCUMENTS // 2)] * 2


def write_text(path: Path, model: Path) -> None:
    path.write_text("".join(d["text"] + "\n" for d in documents()))


def write_jsonl(path: Path, model: Path) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in documents()))


def write_pubtator(path: Path, model: Path) -> None:
    title_and_rest = [(d["id"], *d["text"].split(" . ", 1)) for d in documents()]
    path.write_text("".join(f"{pmid}|t|{title} .\n{pmid}|a|{rest}\n\n" for pmid, title, rest in title_and_rest))


def write_pubmed_xml_gz(path: Path, model: Path) -> None:
    from test_corpus import PUBMED_DOCTYPE, pubmed_article

    articles = [pubmed_article(str(100 + i), d["text"], "<AbstractText>Text.</AbstractText>") for i, d in
                enumerate(documents())]  # fmt: skip
    path.write_bytes(
        gzip.compress(f"{PUBMED_DOCTYPE}<PubmedArticleSet>\n{''.join(articles)}</PubmedArticleSet>\n".encode())
    )


def copy_model(path: Path, model: Path) -> None:
    shutil.copytree(model, path)


def write_cg_slice(path: Path, model: Path) -> None:
    blocks = (BIONLP13CG / "test.tsv").read_text().strip().split("\n\n")[: SLICES["test"]]
    path.write_text("\n\n".join(blocks) + "\n")


# Name in the README -> (what it is here, how it is made from the trained model folder).
SANDBOX: dict[str, tuple[str, Callable[[Path, Path], None]]] = {
    "runs/my-model": ("a copy of the trained fixture (MiniLM layer 2, 64 steps on NCBI)", copy_model),
    "out": ("the same (Share without custom code's trained folder)", copy_model),
    "train.tsv": (f"the first {SLICES['train']} sentences of data/ncbi-disease/train.tsv", write_slice("train")),
    "dev.tsv": (f"the first {SLICES['devel']} sentences of data/ncbi-disease/devel.tsv", write_slice("devel")),
    "test.tsv": (f"the first {SLICES['test']} sentences of data/ncbi-disease/test.tsv", write_slice("test")),
    **{
        f"data/ncbi-disease/{split}.tsv": (f"the first {n} sentences of the real file", write_slice(split))
        for split, n in SLICES.items()
    },
    "abstracts.txt": (f"{DOCUMENTS} documents of 3 NCBI test sentences, one a line", write_text),
    "pubmed.jsonl": ('the same as {"id", "text"} lines', write_jsonl),
    "abstracts.jsonl": ('the same as {"id", "text"} lines', write_jsonl),
    "docs.pubtator": ("the same as PubTator (title: the first sentence)", write_pubtator),
    "tokens.conll": (f"the first {SLICES['test']} sentences of data/ncbi-disease/test.tsv", write_slice("test")),
    "pubmed26n0001.xml.gz": ("the same as gzipped PubMed XML (tests/test_corpus.py's articles)", write_pubmed_xml_gz),
    "cg-test.tsv": (f"the first {SLICES['test']} sentences of ../shared/data/bionlp13cg/test.tsv", write_cg_slice),
}
# Made from conftest's `multitask_dir` rather than the trained single-task model.
MULTITASK_SANDBOX = {"runs/joint": ("a copy of the multi-task fixture (disease at layer 4, cg at layer 6)", copy_model)}

# (pattern, replacement, why): applied in order, with re.sub, to each command line (shlex-joined words) and to
# each Python block. `{minilm}` in a replacement is the packaged MiniLM's folder.
CLI = r"(?:hf-layer-tokclf|python -m hf_layer_tokclf)"
LINE_RULES: list[tuple[str, str, str]] = [
    (
        rf"^({CLI} (?:train|sweep)\b.*--output-dir )runs/my-model\b",
        r"\1runs/my-model-trained-here",
        "runs/my-model is the trained fixture, which the evaluate and predict lines read",
    ),
    (
        rf"^({CLI} train\b.*)$",
        r"\1 --max-steps 2 --per-device-train-batch-size 4",
        "2 optimizer steps of 4 sentences, not epochs over the corpus: seconds",
    ),
    (r"path/or/hub-id-of-a-bert", "{minilm}", "a BERT: the packaged MiniLM"),
    (r"\[(--[^]]+)\]", r"\1", "a synopsis's [optional] options: given"),
    (
        r"^(.*--shard \S+.*)$",
        r"\1 --chunk-size 1",
        f"shards are chunks of 256 records; the sandbox's corpus holds {DOCUMENTS}",
    ),
    (
        r'"you/name", "<commit sha>"',
        '"runs/x", None',
        "the Hub repository (no Hub here): the folder that push --dry-run verified in the block before",
    ),
]


@dataclass
class CannotRun:
    pattern: str  # re.search on a command line (shlex-joined words), or on a Python block
    why: str
    nearest: tuple[str, ...] = ()  # "tests/test_x.py::test_name": what runs the nearest thing


CANNOT_RUN = [
    CannotRun(r"^pip install\b", "installs: CI's .ci/run runs these in a fresh virtual environment before the tests"),
    CannotRun(r"^python -m pytest\b", "the test suite itself, which CI runs as this line"),
    CannotRun(
        r"^ray start\b|--engine ray",
        "needs a Ray cluster",
        (
            "tests/test_ray_engine.py::test_predict_engine_ray_writes_the_single_process_entities",
            "tests/test_ray_serve.py::test_two_replicas_answer_as_predict_and_sigterm_drains",
        ),
    ),
    CannotRun(
        r"^(torchrun|accelerate launch)\b",
        "4 GPUs or two machines; the CPU line has `...` and costs two processes' imports",
        (
            "tests/test_reliability.py::test_torchrun_two_processes_train_a_model_that_loads_and_scores",
            "tests/test_annotate.py::test_torchrun_processes_take_a_shard_each_and_merge_in_input_order",
        ),
    ),
    CannotRun(
        r"--train-file cg=bionlp13cg/",
        "BioNLP13CG is not in the repository (../shared/data holds it): the same command on slices of both corpora",
        ("tests/test_train_multitask.py::test_metrics_hold_each_tasks_dev_and_test_scores_and_their_mean",),
    ),
    CannotRun(
        r"^python push_to_hub\.py (?!.*--dry-run)",
        "uploads to the Hub; the same line with --dry-run runs just before it",
        ("tests/test_hub.py::test_upload_makes_one_commit_with_exactly_the_staged_files",),
    ),
    CannotRun(
        r"^python -m benchmarks\b",
        "minutes of measuring (--quick too); benchmarks.readme rewrites README.md",
        (
            "tests/test_benchmarks.py::test_suite_end_to_end_writes_every_section",
            "tests/test_readme.py::test_benchmark_tables_are_the_committed_results",
        ),
    ),
    CannotRun(
        r"^hf-layer-tokclf sweep .*--train-file cg=\.\./shared/data/",
        "BioNLP13CG is in ../shared/data, outside the repository and the sandbox; slices of both corpora run instead",
        ("tests/test_sweep_tasks.py::test_cli_sweeps_each_task_from_one_pass_per_corpus",),
    ),
    CannotRun(
        rf"^{CLI} serve\b",
        "a server: it runs until it is stopped; tests/test_server.py starts this command in a subprocess",
        ("tests/test_server.py::test_inference_client_gets_predicts_entities",),
    ),
    CannotRun(
        r"^curl\b|InferenceClient\(base_url=",
        "a client of the server the line above starts (and InferenceClient refuses to run under HF_HUB_OFFLINE=1)",
        (
            "tests/test_server.py::test_inference_client_gets_predicts_entities",
            "tests/test_server.py::test_200_concurrent_requests_are_each_answered_with_their_own_entities",
        ),
    ),
    CannotRun(
        r"from optimum\.onnxruntime import",
        "optimum-onnx needs transformers 4.57, which only the lowest-versions environment has",
        ("tests/test_export.py::test_optimum_loads_the_export_and_its_pipeline_equals_predict_argmax",),
    ),
]

OUTPUT_OPTIONS = ("--output", "--output-dir", "--predictions", "--staging-dir")


# --- reading the README -------------------------------------------------------------------------------------------


@dataclass
class Block:
    language: str
    text: str
    line: int  # of its first line in README.md
    section: str


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```\s*$", text, flags=re.M | re.S):
        before = text[: match.start()]
        headings = re.findall(r"^#{2,4} (.+)$", before, flags=re.M)
        blocks.append(Block(match[1], match[2], before.count("\n") + 2, headings[-1] if headings else ""))
    return blocks


def shell_commands(block: Block) -> list[tuple[int, list[list[list[str]]]]]:
    """Each command line of a bash block: (its README line, its commands (`&&`), each a pipeline (`|`) of words)."""
    lines: list[tuple[int, str]] = []
    continued = False
    for number, line in enumerate(block.text.splitlines(), block.line):
        if continued:
            lines[-1] = (lines[-1][0], lines[-1][1] + " " + line)
        else:
            lines.append((number, line))
        continued = line.endswith("\\")
        if continued:
            lines[-1] = (lines[-1][0], lines[-1][1][:-1])
    result = []
    for number, line in lines:
        words = shlex.split(line, comments=True)
        if words:
            result.append((number, [split_on(command, "|") for command in split_on(words, "&&")]))
    return result


def split_on(words: list[str], operator: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in words:
        parts.append([]) if word == operator else parts[-1].append(word)
    return parts


def rewrite(text: str, minilm: str) -> str:
    """``text`` after ``LINE_RULES``."""
    for pattern, replacement, _ in LINE_RULES:
        text = re.sub(pattern, replacement.replace("{minilm}", minilm), text, flags=re.M)
    return text


def cannot_run(text: str) -> CannotRun | None:
    return next((rule for rule in CANNOT_RUN if re.search(rule.pattern, text, flags=re.M)), None)


# --- running it ---------------------------------------------------------------------------------------------------


def named_outputs(words: list[str]) -> list[Path]:
    paths = [Path(words[i + 1]) for i, word in enumerate(words[:-1]) if word in OUTPUT_OPTIONS]
    if words[0] in ("export-onnx", "export-transformers"):
        paths.append(Path(words[2]))
    return paths


def set_aside(path: Path) -> None:
    """An output an earlier line wrote (the README's lines are alternatives): moved away, with its companions."""
    for old in [path, *path.parent.glob(path.name + ".*")]:
        if old.exists():
            old.rename(Path("set-aside") / f"{len(list(Path('set-aside').iterdir()))}-{old.name}")


def run_command(pipeline: list[list[str]], where: str, capsys, monkeypatch) -> None:
    """Runs one command of a README line in this process; it must exit 0 and write what it names, or print."""
    from hf_layer_tokclf.cli.main import main
    from hf_layer_tokclf.cli.push import push_command

    *feed, words = pipeline
    command = " | ".join(map(shlex.join, pipeline))
    assert all(part[0] == "cat" and len(part) == 2 for part in feed), f"{where}: only `cat FILE |` pipes run: {command}"
    stdin = b"".join(Path(part[1]).read_bytes() for part in feed)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    if words[0] == "hf-layer-tokclf":
        run, argv = main, words[1:]
    elif words[:3] == ["python", "-m", "hf_layer_tokclf"]:
        run, argv = main, words[3:]
    elif words[:2] == ["python", "push_to_hub.py"]:
        run, argv = (lambda argv: push_command(argv, prog="push_to_hub.py")), words[2:]
    else:
        pytest.fail(
            f"{where}: no rule runs `{command}`. In tests/test_readme.py, make it run (LINE_RULES, or a command "
            "run_command knows), or add a CANNOT_RUN entry: the reason, and the test that runs the nearest thing"
        )
    outputs = named_outputs(argv)
    for path in outputs:
        set_aside(path)
    capsys.readouterr()
    code = run(argv)
    out, err = capsys.readouterr()
    assert code == 0, (
        f"{where}: `{command}` exited {code} (a placeholder the sandbox lacks? see SANDBOX and LINE_RULES in "
        f"tests/test_readme.py):\n{err[-3000:]}"
    )
    for path in outputs:
        assert path.exists() and (path.stat().st_size if path.is_file() else any(path.iterdir())), (
            f"{where}: `{command}` did not write {path}"
        )
    if not outputs:
        assert out.strip(), f"{where}: `{command}` printed nothing:\n{err[-3000:]}"


def check_quick_start(namespace: dict, out: str) -> None:
    assert out.startswith("3\n")
    assert type(namespace["model"]).__name__ == "BertForLayerTokenClassification"


def check_loading_back(namespace: dict, out: str) -> None:
    assert type(namespace["model"]).__name__ == "BertForLayerTokenClassification"
    assert type(namespace["encoder"]).__name__ == "BertLayerModel"


def check_spacy(namespace: dict, out: str) -> None:
    assert len(namespace["docs"]) == len(namespace["texts"]) > 1
    assert namespace["doc"].ents and "<mark" in namespace["html"]
    assert namespace["nlp"].pipe_names == ["layer_tokclf"]


def check_hub(namespace: dict, out: str) -> None:
    assert out.startswith("[")  # the entities of a 2-step model: maybe none


def check_stock(namespace: dict, out: str) -> None:
    assert type(namespace["model"]).__name__ == "BertForTokenClassification"


# A line of a Python block -> what must hold after the block ran (its namespace, what it printed).
PYTHON_CHECKS: dict[str, Callable[[dict, str], None]] = {
    "print(len(model.encoder_layers))  # 3": check_quick_start,
    "encoder = AutoModel.from_pretrained(output_dir, trust_remote_code=True)": check_loading_back,
    'nlp.add_pipe("layer_tokclf"': check_spacy,
    "repo_id, revision = ": check_hub,
    'AutoModelForTokenClassification.from_pretrained("out-stock")': check_stock,
}


@pytest.fixture
def sandbox(trained, multitask_dir, tmp_path, monkeypatch) -> Path:
    made = [(name, make, trained[0]) for name, (_, make) in SANDBOX.items()]
    for name, make, model in [*made, *((name, make, multitask_dir) for name, (_, make) in MULTITASK_SANDBOX.items())]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        make(tmp_path / name, model)
    (tmp_path / "set-aside").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_readme_block_runs_as_written(sandbox, minilm_path, capsys, monkeypatch):
    """Every bash and Python block, in README order, in one sandbox; `CANNOT_RUN` lines are listed, not run."""
    namespace: dict = {}
    ran, matched, checked = 0, set(), set()
    for block in readme_blocks((REPO / "README.md").read_text()):
        where = f"README.md line {block.line} ({block.section})"
        if block.language == "python":
            text = rewrite(block.text, minilm_path)
            if rule := cannot_run(text):
                matched.add(rule.pattern)
                continue
            if "import spacy" in text and importlib.util.find_spec("spacy") is None:
                warnings.warn(f"{where} not run: it needs spaCy (pip install -e '.[spacy]')", stacklevel=1)
                continue
            capsys.readouterr()
            exec(compile(text, f"README.md, line {block.line}", "exec"), namespace)
            out = capsys.readouterr().out
            for line, check in PYTHON_CHECKS.items():
                if line in block.text:
                    check(namespace, out)
                    checked.add(line)
            ran += 1
        elif block.language == "bash":
            for number, commands in shell_commands(block):
                for pipeline in commands:
                    command = rewrite(" | ".join(map(shlex.join, pipeline)), minilm_path)
                    if rule := cannot_run(command):
                        matched.add(rule.pattern)
                        continue
                    pipeline = [shlex.split(part) for part in command.split(" | ")]
                    run_command(pipeline, f"README.md line {number} ({block.section})", capsys, monkeypatch)
                    ran += 1
        else:  # a listing (the repository layout), not code
            assert block.language == "", f"{where}: a ```{block.language} block: run it here, or say why not"
    assert checked == set(PYTHON_CHECKS), (
        f"no Python block holds these PYTHON_CHECKS lines: {set(PYTHON_CHECKS) - checked}"
    )
    unused = {rule.pattern for rule in CANNOT_RUN} - matched
    assert not unused, f"CANNOT_RUN entries that match no README line: {unused}"


@pytest.mark.parametrize("rule", CANNOT_RUN, ids=lambda rule: rule.pattern)
def test_what_cannot_run_names_the_test_that_runs_the_nearest_thing(rule):
    for nearest in rule.nearest:
        path, name = nearest.split("::")
        assert f"def {name}(" in (REPO / path).read_text(), f"{nearest} does not exist"


def test_no_text_says_two_code_files_where_three_travel():
    """configuration, modeling and pipeline files travel with every saved model (manifest.CODE_FILES; a multi-task
    model's modeling_multitask file besides)."""
    from hf_layer_tokclf.base.manifest import CODE_FILES

    assert len(CODE_FILES) == 3
    texts = [REPO / "README.md", REPO / "model_card.md", REPO / "push_to_hub.py", *REPO.glob("hf_layer_tokclf/**/*.py")]
    for path in texts:
        words = " ".join(path.read_text().split())
        found = re.search(r"\btwo (\w+ )?(code|\.py) files\b", words, flags=re.I)
        assert not found, f"{path.relative_to(REPO)}: ...{words[found.start() - 60 : found.end() + 20]}..."


def test_benchmark_tables_are_the_committed_results():
    """Every figure in the README's benchmark tables comes from the JSON in benchmarks/results/."""
    from benchmarks.readme import BLOCKS, block, current_block

    readme = (REPO / "README.md").read_text()
    for name in BLOCKS:
        assert current_block(readme, name) == block(name), f"run `python -m benchmarks.readme` ({name})"
    assert "forward ms, batch 32 x 128" in current_block(readme, "summary")
    assert "ours before" in current_block(readme, "few-data")


def test_the_main_jobs_time_is_the_benchmarks():
    """The newcomer's main job states the time `benchmarks.train_ncbi` measured, and no hand-written one."""
    from benchmarks.readme import current_block

    readme = (REPO / "README.md").read_text()
    start = readme.index("## Two commands for a newcomer")
    newcomer = readme[start : readme.index("\n## ", start)]
    measured = current_block(readme, "main-job")  # test_benchmark_tables_are_the_committed_results checks it
    assert measured in newcomer and "benchmarks.train_ncbi" in measured
    introduction = newcomer[: newcomer.index("```")]
    assert not re.search(r"\d+ (minutes|seconds|s)\b", introduction), (
        f"a time not from benchmarks/results: {introduction}"
    )

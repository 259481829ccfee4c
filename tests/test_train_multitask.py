"""Training from several corpora (#30 item 2): ``train --train-file disease=... --train-file cg=...`` end to end on
real MiniLM and slices of NCBI-disease and BioNLP13CG, the sampler that makes each batch of one task, and the
option errors."""

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.training.arguments import DataArguments, ModelArguments, resolve_tasks
from hf_layer_tokclf.training.multitask import TaskBatchSampler, TaskCollator, task_probabilities

REPO = Path(__file__).resolve().parent.parent


def corpus(name: str) -> Path:
    """``../shared/data/<name>`` of the checkout (or of a folder above it: a worktree), or ``data/<name>``."""
    for folder in (REPO / "data", *(parent / "shared" / "data" for parent in REPO.parents)):
        if (folder / name / "train.tsv").is_file():
            return folder / name
    if os.environ.get("CI"):
        pytest.fail(f"no {name} corpus in data/ or ../shared/data/")
    pytest.skip(f"no {name} corpus in data/ or ../shared/data/")


def first_sentences(source: Path, target: Path, count: int, known: set[str] | None = None) -> set[str]:
    """Writes the first ``count`` sentences of ``source`` of at most 40 words (a fast test) whose labels are all
    ``known`` (if given: dev and test labels must be training's) to ``target``; returns their labels."""
    blocks = [b.strip("\n") for b in source.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    kept = []
    for block in blocks:
        labels = {line.split("\t")[-1] for line in block.splitlines()}
        if len(block.splitlines()) <= 40 and (known is None or labels <= known):
            kept.append(block)
    target.write_text("\n\n".join(kept[:count]) + "\n\n", encoding="utf-8")
    return {line.split("\t")[-1] for block in kept[:count] for line in block.splitlines()}


@pytest.fixture(scope="module")
def slices(tmp_path_factory):
    """40 training, 16 dev and 16 test sentences of each corpus, as NAME=PATH words of the command line."""
    folder = tmp_path_factory.mktemp("corpora")
    words = []
    for task, name in (("disease", "ncbi-disease"), ("cg", "bionlp13cg")):
        source = corpus(name)
        known = None
        for option, split, count in (("--train-file", "train", 40), ("--validation-file", "devel", 16)):
            path = folder / f"{task}-{split}.tsv"
            labels = first_sentences(source / f"{split}.tsv", path, count, known)
            known = known or labels  # the training slice's
            words += [option, f"{task}={path}"]
        first_sentences(source / "test.tsv", folder / f"{task}-test.tsv", 16, known)
        words += ["--test-file", f"{task}={folder / f'{task}-test.tsv'}"]
    return words


@pytest.fixture(scope="module")
def joint(slices, tmp_path_factory, minilm_path):
    """One joint run through the command line: disease at layer 2, cg at layer 4 with a CRF, 8 steps."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("joint") / "model"
    argv = ["train", minilm_path, *slices, "--hidden-layer", "disease=2", "--hidden-layer", "cg=4", "--crf", "cg"]
    argv += ["--output-dir", str(out), "--max-steps", "8", "--per-device-train-batch-size", "8"]
    argv += ["--eval-strategy", "steps", "--eval-steps", "4", "--save-strategy", "steps", "--save-steps", "4"]
    argv += ["--save-total-limit", "2", "--max-length", "64", "--no-progress", "--keep-checkpoints", "--seed", "3"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return out, json.loads((out / "metrics.json").read_text()), printed.getvalue()


def test_the_joint_model_saves_and_loads_with_each_tasks_labels_layer_and_crf(joint):
    from hf_layer_tokclf.model.auto import AutoModelForLayerTokenClassification

    out, _, _ = joint
    model = AutoModelForLayerTokenClassification.from_pretrained(out)
    assert list(model.config.task_names) == ["cg", "disease"]  # sorted: the task ids
    disease, cg = model.config.tasks["disease"], model.config.tasks["cg"]
    assert disease["labels"] == ["O", "B-Disease", "I-Disease"]  # from its own corpus only
    assert "B-Gene_or_gene_product" in cg["labels"] and "B-Disease" not in cg["labels"]
    assert (disease["hidden_layer"], cg["hidden_layer"]) == (2, 4)
    assert (disease["use_crf"], cg["use_crf"]) == (False, True)


def test_metrics_hold_each_tasks_dev_and_test_scores_and_their_mean(joint):
    _, metrics, printed = joint
    for split in ("eval", "test"):
        for task in ("disease", "cg"):
            for stat in ("precision", "recall", "f1"):
                assert 0.0 <= metrics[f"{split}_{task}_{stat}"] <= 1.0
        assert f"{split}_disease_Disease_f1" in metrics
        assert f"{split}_cg_Gene_or_gene_product_f1" in metrics
        assert not any(key.startswith(f"{split}_disease_Gene") for key in metrics)  # a task scores its own types
        assert metrics[f"{split}_f1"] == pytest.approx((metrics[f"{split}_disease_f1"] + metrics[f"{split}_cg_f1"]) / 2)
    assert metrics["settings"]["tasks"]["disease"] == {
        "hidden_layer": 2,
        "use_crf": False,
        "scheme": "IOB2",
        "labels": 3,
    }
    assert metrics["settings"]["tasks"]["cg"]["use_crf"] is True
    assert "disease test F1:" in printed and "cg test F1:" in printed
    assert "batches drawn per task (proportional): cg 50%, disease 50%" in printed  # 40 sentences each


def test_the_trainers_per_task_dev_f1_is_the_evaluations(joint):
    """The Trainer's dev scores (its logs, and the kept model's F1) are those of the single-task evaluation code."""
    out, metrics, printed = joint
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_f1" in entry]
    assert len(evaluations) == 2
    assert all({"eval_disease_f1", "eval_cg_f1", "eval_cg_Cell_f1"} <= entry.keys() for entry in evaluations)
    assert "'eval_disease_f1'" in printed  # in the printed logs too
    best_step = int(state["best_model_checkpoint"].rsplit("-", 1)[1])
    best = next(entry for entry in evaluations if entry["step"] == best_step)
    for task in ("disease", "cg"):  # the same labels: the same F1 and (which no model of 8 steps leaves at 0) accuracy
        for stat in ("f1", "accuracy"):
            assert best[f"eval_{task}_{stat}"] == pytest.approx(metrics[f"eval_{task}_{stat}"])
    assert metrics["best_eval_f1"] == pytest.approx(metrics["eval_f1"])


def test_each_task_has_its_test_predictions_and_a_row_in_the_card(joint, slices):
    out, metrics, _ = joint
    for task in ("disease", "cg"):
        gold = Path(slices[slices.index("--test-file") + 1 if task == "disease" else -1].split("=", 1)[1])
        lines = (out / f"test_predictions.{task}.conll").read_text().splitlines()
        assert len([line for line in lines if line]) == len([line for line in gold.read_text().splitlines() if line])
        assert all(len(line.split("\t")) == 3 for line in lines if line)
    card = (out / "README.md").read_text()
    assert "| Task | Entity types | Layer | CRF |" in card
    disease_row = next(line for line in card.splitlines() if line.startswith("| disease |"))
    assert (
        "Disease" in disease_row and "| 2 |" in disease_row and f"{100 * metrics['test_disease_f1']:.2f}" in disease_row
    )
    assert "| disease / Disease |" in card and "under its CRF" in card  # per type, per task; cg's CRF decodes it
    cg_row = next(line for line in card.splitlines() if line.startswith("| cg |"))
    assert "Gene_or_gene_product" in cg_row and "| 4 |" in cg_row and f"{100 * metrics['test_cg_f1']:.2f}" in cg_row


# --- the sampler -------------------------------------------------------------------------------------------


def tasks_of(batches, task_indices):
    owner = {i: task for task, indices in enumerate(task_indices) for i in indices}
    found = []
    for batch in batches:
        assert len({owner[i] for i in batch}) == 1, "a batch mixes tasks"
        found.append(owner[batch[0]])
    return found


def test_proportional_sampling_gives_every_window_once_an_epoch_in_batches_of_one_task():
    task_indices = [range(0, 300), range(300, 400)]
    sampler = TaskBatchSampler(task_indices, 10, seed=1)
    assert len(sampler) == 40
    batches = list(sampler)
    assert Counter(tasks_of(batches, task_indices)) == {0: 30, 1: 10}
    assert sorted(i for batch in batches for i in batch) == list(range(400))
    assert tasks_of(batches, task_indices) != [0] * 30 + [1] * 10  # interleaved, not one corpus after the other


@pytest.mark.parametrize("temperature, expected", [(1.0, 0.75), (2.0, 300**0.5 / (300**0.5 + 100**0.5)), (1e6, 0.5)])
def test_temperature_sampling_draws_tasks_at_size_to_the_one_over_t(temperature, expected):
    task_indices = [range(0, 300), range(300, 400)]
    sampler = TaskBatchSampler(task_indices, 10, sampling="temperature", temperature=temperature, seed=0)
    assert sampler.probabilities[0] == pytest.approx(expected)
    drawn = []
    for epoch in range(150):  # 6000 batches
        sampler.set_epoch(epoch)
        drawn += tasks_of(list(sampler), task_indices)
    assert np.mean(np.array(drawn) == 0) == pytest.approx(expected, abs=0.02)


def test_temperature_sampling_cycles_a_small_task_through_all_its_windows():
    sampler = TaskBatchSampler([range(0, 20), range(20, 400)], 5, sampling="temperature", temperature=1e6, seed=0)
    seen = Counter(i for batch in sampler for i in batch if i < 20)
    assert set(seen) == set(range(20)) and max(seen.values()) - min(seen.values()) <= 1  # reshuffled, not repeated


def test_the_batches_are_seeded_by_the_run_and_the_epoch():
    def batches(seed, epoch):
        sampler = TaskBatchSampler([range(50), range(50, 80)], 4, sampling="temperature", temperature=3, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert batches(7, 0) == batches(7, 0)
    assert batches(7, 0) != batches(7, 1)
    assert batches(7, 0) != batches(8, 0)


def test_batches_of_similar_length_within_a_task():
    lengths = list(np.random.default_rng(0).integers(5, 100, size=120))
    sampler = TaskBatchSampler([range(0, 60), range(60, 120)], 6, lengths=lengths, seed=0)
    for batch in sampler:
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)


def test_a_task_without_windows_is_never_drawn_and_none_at_all_is_refused():
    assert task_probabilities([0, 10], "temperature", 5.0) == [0.0, 1.0]
    with pytest.raises(ValueError, match="no task has training data"):
        task_probabilities([0, 0])


def test_the_collator_adds_each_rows_task_id(tokenizer):
    from hf_layer_tokclf.training.trainer import data_collator

    rows = [{"input_ids": [101, 7, 102], "labels": [-100, 1, -100], "task_ids": 1}]
    rows.append({"input_ids": [101, 102], "labels": [-100, -100], "task_ids": 0})
    batch = TaskCollator(data_collator(tokenizer, 16))(rows)
    assert batch["task_ids"].tolist() == [1, 0] and batch["task_ids"].dtype == torch.long
    assert batch["input_ids"].shape == batch["labels"].shape == (2, 3)


# --- options ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "words, message",
    [
        (["--train-file", "d=a.tsv", "--validation-file", "x=b.tsv"], "no task 'x' in --train-file"),
        (["--train-file", "d=a.tsv", "--test-file", "cg=b.tsv"], "no task 'cg' in --train-file"),
        (["--train-file", "d=a.tsv", "--hidden-layer", "cg=4"], "no task 'cg' in --train-file"),
        (["--train-file", "d=a.tsv", "--crf", "cg"], "no task 'cg' in --train-file"),
        (["--train-file", "a.tsv", "--train-file", "cg=b.tsv"], "--train-file a.tsv has no task name"),
        (["--train-file", "a.tsv", "--validation-file", "d=b.tsv"], "--validation-file d=b.tsv names tasks"),
        (["--train-file", "d=a.tsv", "--validation-file", "b.tsv"], "--validation-file b.tsv: one value for tasks"),
        (["--train-file", "d=a.tsv", "--hidden-layer", "4"], "--hidden-layer 4: one value for tasks"),
        (["--train-file", "d=a.tsv", "--hidden-layer", "d=four"], "'four' is not a layer number"),
        (["--train-file", "d=a.tsv", "--train-file", "d=b.tsv"], "task 'd' is given twice"),
        (["--train-file", "a.tsv", "--train-file", "b.tsv"], "--train-file is given 2 times"),
        (["--train-file", "d=a.tsv", "--crf", "--crf", "d"], "give --crf alone (every task) or --crf NAME"),
        (["--train-file", "a.tsv", "--task-sampling", "temperature"], "need several tasks"),
        (["--train-file", "d=a.tsv", "--sampling-temperature", "2"], "needs --task-sampling temperature"),
    ],
)
def test_task_options_that_cannot_work_are_refused_naming_them(words, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *words, "--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_library_refuses_the_same():
    data = DataArguments(train_file={"disease": "a.tsv"}, validation_file={"cg": "b.tsv"})
    with pytest.raises(ValueError, match="no task 'cg' in --train-file"):
        resolve_tasks(ModelArguments(), data)
    tasks = resolve_tasks(
        ModelArguments(hidden_layer={"disease": 3}, crf=True), DataArguments(train_file={"disease": "a"})
    )
    assert (tasks["disease"].hidden_layer, tasks["disease"].crf, tasks["disease"].validation_file) == (3, True, None)
    assert resolve_tasks(ModelArguments(hidden_layer=[3], crf=True), DataArguments(train_file="a.tsv")) is None


def test_every_tasks_head_and_crf_learn_at_the_heads_rate(tmp_path, minilm_path):
    from transformers import TrainingArguments

    from hf_layer_tokclf.model.auto import AutoModelForMultiTaskLayerTokenClassification
    from hf_layer_tokclf.training.trainer import NerTrainer

    tasks = {"disease": {"labels": ["O", "B-Disease", "I-Disease"], "hidden_layer": 2}}
    tasks["cg"] = {"labels": ["O", "B-Cell", "I-Cell"], "hidden_layer": 1, "use_crf": True}
    model = AutoModelForMultiTaskLayerTokenClassification.from_pretrained(minilm_path, tasks=tasks)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", learning_rate=5e-5)
    trainer = NerTrainer(model=model, args=args, classifier_learning_rate=3e-3)
    trainer.create_optimizer()
    names = {id(p): n for n, p in model.named_parameters()}
    fast = {names[id(p)] for group in trainer.optimizer.param_groups if group["lr"] == 3e-3 for p in group["params"]}
    assert fast == {n for n in names.values() if n.startswith(("classifiers.", "crfs."))}
    assert {"classifiers.cg.weight", "classifiers.disease.bias", "crfs.cg.transitions"} <= fast


def test_each_tasks_predictions_file_is_a_run_output():
    """What --overwrite-output-dir replaces and the manifest lists: a multi-task run's per-task predictions too."""
    from hf_layer_tokclf.base.manifest import is_run_output, task_predictions_name

    assert is_run_output(task_predictions_name("cg")) and is_run_output("test_predictions.disease.conll")
    assert not is_run_output("test_predictions.my notes.conll")


def test_the_command_line_gives_the_tasks_and_their_sampling_to_train():
    from hf_layer_tokclf.cli.train import train_parser

    words = ["--train-file", "disease=a.tsv", "--train-file", "cg=b.tsv", "--use-crf", "--hidden-layer", "cg=6"]
    words += ["--task-sampling", "temperature", "--sampling-temperature", "3", "--output-dir", "out"]
    model_args, data_args, _, _ = train_parser().parse_args_into_dataclasses(words)
    tasks = resolve_tasks(model_args, data_args)
    assert [(t.name, t.train_file, t.hidden_layer, t.crf) for t in tasks.values()] == [
        ("disease", "a.tsv", -1, True),
        ("cg", "b.tsv", 6, True),
    ]
    assert (data_args.task_sampling, data_args.sampling_temperature) == ("temperature", 3.0)
    bare, data, _, _ = train_parser().parse_args_into_dataclasses(
        ["--train-file", "a.tsv", "--hidden-layer", "2", "4", "--output-dir", "out"]
    )
    assert (data.train_file, bare.hidden_layer, bare.crf) == ("a.tsv", [2, 4], False)  # today's meaning

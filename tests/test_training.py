"""Training through the functions the CLI calls, on real MiniLM weights and a slice of NCBI-disease."""

import json
import re

import pytest
import torch
from conftest import NCBI, TEXT, ncbi_changed, slice_args
from safetensors import safe_open

from hf_layer_tokclf.base.files import OutputExistsError
from hf_layer_tokclf.formats.labels import label_list
from hf_layer_tokclf.formats.lines import DataError
from hf_layer_tokclf.formats.loading import load_sentences
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.running.sentences import evaluate_sentences, flat_scores
from hf_layer_tokclf.sharing.remote_check import run_remote_check
from hf_layer_tokclf.training.arguments import DataArguments, ModelArguments, RunArguments
from hf_layer_tokclf.training.head import HEAD_PARAMETERS
from hf_layer_tokclf.training.splits import read_splits
from hf_layer_tokclf.training.train import train
from hf_layer_tokclf.training.trainer import NerTrainer


def test_output_directory_holds_the_best_model_and_its_scores(trained):
    output_dir, metrics = trained
    names = {p.name for p in output_dir.iterdir()}
    assert {"model.safetensors", "config.json", "configuration_layer_tokclf.py", "modeling_layer_tokclf.py"} <= names
    assert {"tokenizer.json", "tokenizer_config.json", "metrics.json", "README.md"} <= names
    assert not [n for n in names if n.startswith("checkpoint-") or n.endswith((".bin", ".pt"))]
    config = json.loads((output_dir / "config.json").read_text())
    assert config["auto_map"]["AutoModelForTokenClassification"].endswith("BertForLayerTokenClassification")
    assert config["hidden_layer"] == 2 and config["id2label"] == {"0": "O", "1": "B-Disease", "2": "I-Disease"}
    with safe_open(output_dir / "model.safetensors", "pt") as f:
        assert not [k for k in f.keys() if ".encoder.layer.2." in k]  # noqa: SIM118 - two layers stored, not six
    saved = json.loads((output_dir / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in ("eval_f1", "eval_precision", "eval_recall", "test_f1", "test_precision", "test_recall"):
        assert 0.0 <= saved[key] <= 1.0
    assert saved["test_Disease_support"] > 0 and "test_Disease_f1" in saved
    assert saved["settings"]["hidden_layer"] == 2 and saved["settings"]["learning_rate"] == 3e-4
    assert saved["settings"]["num_layers_used"] == 2 and saved["settings"]["num_hidden_layers"] == 6


def test_it_learned_something(trained):
    _, metrics = trained
    # 64 steps on 256 sentences: far from converged, but clearly better than tagging nothing.
    assert metrics["eval_f1"] > 0.2, metrics


def test_the_trainers_dev_f1_is_ours(trained):
    """The F1 that picked the best checkpoint is the one a full evaluation of that model gives."""
    _, metrics = trained
    assert metrics["best_eval_f1"] == pytest.approx(metrics["eval_f1"], abs=0.005)


def test_scores_match_a_separate_evaluation(trained):
    output_dir, metrics = trained
    model, tokenizer = load_model(output_dir)
    sentences = load_sentences(str(NCBI / "test.tsv"))[:64]
    scores, predictions = evaluate_sentences(model, tokenizer, sentences, progress=False)
    assert [len(p) for p in predictions] == [len(s.tokens) for s in sentences]
    for key, value in flat_scores(scores, "test").items():
        assert metrics[key] == pytest.approx(value), key


def test_evaluation_scores_every_gold_token_through_windows(trained):
    output_dir, _ = trained
    model, tokenizer = load_model(output_dir)
    sentences = load_sentences(str(NCBI / "devel.tsv"))[:20]
    scores, predictions = evaluate_sentences(model, tokenizer, sentences, max_length=12, progress=False)
    assert [len(p) for p in predictions] == [len(s.tokens) for s in sentences]
    gold_entities = sum(label.startswith("B-") for s in sentences for label in s.labels)
    assert scores["per_type"]["Disease"]["support"] == gold_entities


def test_trained_model_loads_through_remote_code(trained, tokenizer):
    output_dir, _ = trained
    report = run_remote_check(output_dir, TEXT)
    model, _ = load_model(output_dir)
    with torch.no_grad():
        logits = model(**tokenizer(TEXT, return_tensors="pt")).logits[0]
    torch.testing.assert_close(torch.tensor(report["logits"]), logits, atol=1e-5, rtol=0)
    assert report["num_layers_built"] == 2


def test_refuses_a_non_empty_output_dir(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    data, args = slice_args(tmp_path, max_steps=1)
    with pytest.raises(OutputExistsError, match="not empty; pass --overwrite-output-dir"):
        train(ModelArguments(hidden_layer=[1]), data, args)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def earlier_run(folder, *names: str) -> None:
    """What an earlier run wrote in ``folder`` (files, and folders for checkpoint-N), listed in its manifest."""
    from hf_layer_tokclf.base.outputs import RUN_OUTPUTS, claim_output_dir

    with claim_output_dir(folder, RUN_OUTPUTS, resume=True) as claim:
        for name in names:
            if name.startswith("checkpoint-"):
                (folder / name).mkdir()
            else:
                (folder / name).write_text("an earlier run")
        claim.finish()


def test_overwrite_output_dir_and_no_validation(tmp_path):
    """--overwrite-output-dir replaces an earlier run's files, never the user's (transformers' flag deleted nothing)."""
    earlier_run(tmp_path, "model-00001-of-00002.safetensors", "checkpoint-40")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "best-model").mkdir()  # the user's: no run's name
    data, args = slice_args(tmp_path, max_steps=2)
    data.validation_file = None
    metrics = train(ModelArguments(hidden_layer=[1]), data, args, RunArguments(overwrite_output_dir=True))
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "best-model").is_dir()
    assert not (tmp_path / "model-00001-of-00002.safetensors").exists() and not (tmp_path / "checkpoint-40").exists()
    assert "test_f1" in metrics and "eval_f1" not in metrics
    assert (tmp_path / "metrics.json").is_file()
    listed = json.loads((tmp_path / ".hf_layer_tokclf.json").read_text())["files"]
    assert {"metrics.json", "model.safetensors", "README.md"} <= set(listed) and "notes.txt" not in listed


def users_folder(folder) -> dict[str, str]:
    """A folder that was never a run's output, with files of a run's names: the user's model and notes."""
    (folder / "checkpoint-best").mkdir(parents=True)
    (folder / "checkpoint-best" / "model.safetensors").write_text("the user's best model")
    (folder / "checkpoint-7").mkdir()
    for name in ("README.md", "config.json", "vocab.txt"):
        (folder / name).write_text(f"the user's {name}")
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("flag", ["resume", "overwrite_output_dir"])
def test_a_folder_that_holds_no_run_is_refused_even_with_resume_or_overwrite(tmp_path, flag):
    before = users_folder(tmp_path)
    data, args = slice_args(tmp_path, max_steps=1)
    with pytest.raises(OutputExistsError, match=r"did not write \(README\.md, checkpoint-7, checkpoint-best, conf"):
        train(ModelArguments(hidden_layer=[1]), data, args, RunArguments(**{flag: True}))
    assert {str(p.relative_to(tmp_path)): p.read_text() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "checkpoint-7", "checkpoint-best", "config.json",
                                                         "vocab.txt"]  # fmt: skip


def _quick_run(output_dir):
    """Two steps on 16 sentences with a checkpoint at step 2: a finished run in a few seconds."""
    steps = dict(save_strategy="steps", save_steps=2, eval_strategy="steps", eval_steps=2)
    data, args = slice_args(output_dir, max_steps=2, **steps)
    data.max_train_samples, data.max_eval_samples, data.max_test_samples = 16, 8, 8
    return data, args


def test_a_run_that_fails_before_its_metrics_leaves_the_checkpoint_to_resume(tmp_path, monkeypatch):
    """The model is saved as soon as it is trained, and the checkpoints go only after metrics.json is written:
    an unfinished run (here a full disk) can still --resume."""
    from hf_layer_tokclf.training import results, trainer

    def full_disk(path, data):
        raise OSError(28, "No space left on device", str(path))

    data, args = _quick_run(tmp_path)
    monkeypatch.setattr(results, "write_json", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train(ModelArguments(hidden_layer=[1]), data, args)
    assert not (tmp_path / "metrics.json").exists() and (tmp_path / "model.safetensors").is_file()
    assert trainer.last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    monkeypatch.undo()
    train(ModelArguments(hidden_layer=[1]), data, args, RunArguments(resume=True))
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "README.md").is_file()
    assert not list(tmp_path.glob("checkpoint-*"))


def test_deberta_v2_with_its_own_position_projections_trains_to_a_card_with_its_cost(tmp_path, logs):
    """As reported: DeBERTa-v2 with share_att_key=False (and raw relative position embeddings) trained all its
    steps, then crashed in torch's FLOP counter writing the card. The card now has its compute figure."""
    from families import make_checkpoint

    variant = {"share_att_key": False, "norm_rel_ebd": "none"}
    checkpoint = make_checkpoint("deberta-v2", tmp_path / "checkpoint", config=variant)
    data, args = _quick_run(tmp_path / "model")
    train(ModelArguments(model=str(checkpoint), hidden_layer=[2]), data, args)
    card = (tmp_path / "model" / "README.md").read_text()
    assert "**2 of 4** encoder layers" in card and re.search(r"about \d+% of the full encoder's forward cost", card)
    assert "Skipped" not in logs.getvalue()


class _FailingFlopCounter:
    """torch's FLOP counter as it failed on DeBERTa-v2 with raw relative position embeddings."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        raise AssertionError("Expected gradient function to be set")

    def __exit__(self, *args):
        return False


def _broken(*args, **kwargs):
    raise RuntimeError("broken on purpose")


@pytest.mark.parametrize(
    ("target", "replacement", "skipped"),
    [
        ("hf_layer_tokclf.model.cost.FlopCounterMode", _FailingFlopCounter, "the model card's compute estimate"),
        ("hf_layer_tokclf.sharing.model_card.parameter_counts", _broken, "the model card's parameter counts"),
        ("hf_layer_tokclf.sharing.model_card.render_model_card", _broken, "the model card"),
        ("hf_layer_tokclf.training.results.format_scores", _broken, "printing the scores"),
    ],
    ids=["flop-counter", "parameter-counts", "card", "score-tables"],
)
def test_a_failing_nicety_leaves_the_finished_run_in_place(target, replacement, skipped, tmp_path, monkeypatch, logs):
    """The card, its cost figures and the printed tables may fail: train warns, naming what it skipped and why,
    and the trained model, its tokenizer and metrics.json are there as after any finished run."""
    monkeypatch.setattr(target, replacement)
    data, args = _quick_run(tmp_path)
    metrics = train(ModelArguments(hidden_layer=[1]), data, args)
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert "test_f1" in metrics and not list(tmp_path.glob("checkpoint-*"))  # finished: checkpoints go as usual
    model, tokenizer = load_model(tmp_path)
    assert model.config.hidden_layer == 1 and model(**tokenizer(TEXT, return_tensors="pt")).logits.shape[-1] == 3
    warning = logs.getvalue()
    assert f"Skipped {skipped}" in warning and ("broken on purpose" in warning or "gradient function" in warning)
    card = tmp_path / "README.md"
    if skipped == "the model card":
        assert not card.exists()
    else:  # the rest of the card is written
        text = card.read_text()
        assert "**Layers built:** **1 of 6**" in text and "test" in text.lower()
        assert ("forward cost" in text) == ("compute" not in skipped)
        assert ("parameters against" in text) == ("parameter" not in skipped)


def test_stock_head_trains_with_the_same_settings(tmp_path):
    from transformers import BertForTokenClassification

    data, args = slice_args(tmp_path, max_steps=2)
    metrics = train(ModelArguments(), data, args, model_class=BertForTokenClassification)
    assert metrics["settings"]["architecture"] == "BertForTokenClassification"
    assert "test_f1" in metrics


def test_trains_from_a_saved_dataset_dict(tmp_path):
    """A `datasets` folder with ClassLabel tags, as Hub NER datasets have them, through --dataset-name."""
    import datasets

    names = ["O", "B-Disease", "I-Disease"]
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    sentences = load_sentences(str(NCBI / "devel.tsv"))[:48]
    rows = {
        "tokens": [s.tokens for s in sentences],
        "ner_tags": [[names.index(x) for x in s.labels] for s in sentences],
    }
    whole = datasets.Dataset.from_dict(rows, features=features)
    splits = datasets.DatasetDict({"train": whole.select(range(32)), "validation": whole.select(range(32, 48))})
    splits.save_to_disk(tmp_path / "ds")
    data, args = slice_args(tmp_path / "out", max_steps=2)
    data.train_file = data.validation_file = data.test_file = None
    data.dataset_name = str(tmp_path / "ds")
    metrics = train(ModelArguments(hidden_layer=[1]), data, args)
    assert "eval_f1" in metrics and "test_f1" not in metrics  # the folder has no test split
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"] == {"0": "O", "1": "B-Disease", "2": "I-Disease"}


def _trainer(tmp_path, model, **kwargs):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=5e-5, weight_decay=0.01, report_to="none")
    return NerTrainer(model=model, args=args, **kwargs)


def test_the_head_learns_at_its_own_rate_on_the_trainers_schedule(tmp_path, minilm_path):
    """Four groups: encoder and head, each with and without weight decay; the scheduler scales both rates."""
    from hf_layer_tokclf import BertForLayerTokenClassification

    model = BertForLayerTokenClassification.from_pretrained(
        minilm_path, hidden_layer=[1, 2], layer_pooling="scalar_mix", num_labels=3
    )
    trainer = _trainer(tmp_path, model, classifier_learning_rate=3e-3)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [([names[id(p)] for p in g["params"]], g["lr"], g["weight_decay"]) for g in trainer.optimizer.param_groups]
    head = [(lr, decay) for params, lr, decay in groups if all(n.startswith(HEAD_PARAMETERS) for n in params)]
    body = [(lr, decay) for params, lr, decay in groups if not any(n.startswith(HEAD_PARAMETERS) for n in params)]
    assert len(head) + len(body) == len(groups) == 4
    assert sorted(head) == [(3e-3, 0.0), (3e-3, 0.01)] and sorted(body) == [(5e-5, 0.0), (5e-5, 0.01)]
    head_names = {n for params, _, _ in groups for n in params if n.startswith(HEAD_PARAMETERS)}
    assert head_names == {"classifier.weight", "classifier.bias", "scalar_mix.weights", "scalar_mix.gamma"}
    assert sum(len(params) for params, _, _ in groups) == len(list(model.parameters()))
    for _ in range(5):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    rates = sorted({g["lr"] for g in trainer.optimizer.param_groups})
    assert rates == pytest.approx([2.5e-5, 1.5e-3])  # halfway down the linear decay, both


def test_one_learning_rate_leaves_the_trainers_optimizer_alone(tmp_path, minilm_path):
    from hf_layer_tokclf import BertForLayerTokenClassification

    model = BertForLayerTokenClassification.from_pretrained(minilm_path, hidden_layer=1, num_labels=3)
    trainer = _trainer(tmp_path, model, classifier_learning_rate=None)
    trainer.create_optimizer()
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [5e-5, 5e-5]


def test_an_optimizer_that_groups_its_own_parameters_is_refused(tmp_path, minilm_path, monkeypatch):
    from hf_layer_tokclf import BertForLayerTokenClassification

    model = BertForLayerTokenClassification.from_pretrained(minilm_path, hidden_layer=1, num_labels=3)
    trainer = _trainer(tmp_path, model, classifier_learning_rate=3e-3)
    # What GaLore's and LOMO's optimizer factories return: parameters of their own.
    monkeypatch.setattr(
        trainer, "get_optimizer_cls_and_kwargs", lambda args, model: (torch.optim.AdamW, {"params": []})
    )
    with pytest.raises(ValueError, match="--classifier-learning-rate cannot be combined with --optim adamw"):
        trainer.create_optimizer()


def test_a_few_hundred_sentences_find_entities_in_two_epochs(tmp_path):
    """The defaults (PyTorch head init, the head's own learning rate) against one learning rate for all, at the
    encoder's 5e-5: two epochs of 256 sentences on real MiniLM weights and NCBI-disease."""
    scores = {}
    for name, head_rate in (("defaults", ModelArguments().classifier_learning_rate), ("one rate", 5e-5)):
        data, args = slice_args(tmp_path / name, num_train_epochs=2, learning_rate=5e-5)
        metrics = train(ModelArguments(hidden_layer=[2], classifier_learning_rate=head_rate), data, args)
        scores[name] = metrics["eval_f1"]
    assert scores["defaults"] > scores["one rate"] + 0.1, scores


def test_classifier_learning_rate_is_a_train_option():
    from transformers import TrainingArguments

    from hf_layer_tokclf.cli.train import train_parser

    parser = train_parser()
    model_args, *_ = parser.parse_args_into_dataclasses(["--output-dir", "x", "--classifier-learning-rate", "1e-2"])
    assert model_args.classifier_learning_rate == 1e-2
    model_args, *_, training_args = parser.parse_args_into_dataclasses(["--output-dir", "x"])
    assert model_args.classifier_learning_rate == 3e-3 and isinstance(training_args, TrainingArguments)
    assert "--classifier-learning-rate" in parser.format_help()


def test_training_data_prints_its_label_set_and_refuses_a_typo_unless_allowed(tmp_path, capsys):
    typo = ncbi_changed(tmp_path / "train.tsv", "train", 2266, "B-Disaese")
    with pytest.raises(DataError, match=re.escape(f"{typo}, line 2266: label 'B-Disaese'")):
        read_splits(DataArguments(train_file=str(typo)))
    splits, scheme = read_splits(DataArguments(train_file=str(typo), allow_rare_labels=True))
    # The typo's I-Disease that follows starts an entity of its own: the scheme reads as IOB1.
    assert scheme == "IOB1" and {"B-Disaese", "I-Disaese"} <= set(label_list(splits["train"]))
    printed = capsys.readouterr().out
    expected = "O 124819, I-Disease 6121, B-Disease 5145, B-Disaese 1 (5146 entities: Disease 5145, Disaese 1)"
    assert f"labels of {typo} (IOB1): {expected}\n" in printed


def test_a_scheme_flipped_by_one_tag_is_refused_unless_allowed(tmp_path):
    flipped = ncbi_changed(tmp_path / "train.tsv", "train", 2266, "I-Disease")
    with pytest.raises(DataError, match=re.escape(f"{flipped}, line 2266: ")):
        read_splits(DataArguments(train_file=str(flipped)))
    assert read_splits(DataArguments(train_file=str(flipped), allow_rare_labels=True))[1] == "IOB1"


def test_train_refuses_a_typo_in_one_line_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from hf_layer_tokclf.cli.main import main
    from hf_layer_tokclf.training import train

    def head_labels(*args):
        raise AssertionError("the model's labels were read: the typo went through")

    monkeypatch.setattr(train, "head_labels", head_labels)
    typo = ncbi_changed(tmp_path / "train.tsv", "train", 2266, "B-Disaese")
    assert main(["train", "--train-file", str(typo), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{typo}, line 2266: label 'B-Disaese'" in err and "--allow-rare-labels" in err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# A new head is one line, not transformers' load report; a checkpoint's real problems still are (issue 27)
# --------------------------------------------------------------------------------------------


def test_a_new_head_on_a_backbone_is_one_line_not_a_load_report(minilm_path, logs, capsys):
    from conftest import ID2LABEL, LABEL2ID

    from hf_layer_tokclf.model.auto import AutoModelForLayerTokenClassification
    from hf_layer_tokclf.training.head import load_with_new_head

    labels = dict(num_labels=3, id2label=ID2LABEL, label2id=LABEL2ID)
    model = load_with_new_head(AutoModelForLayerTokenClassification, minilm_path, hidden_layer=2, **labels)
    assert model.classifier.out_features == 3
    out, logged = capsys.readouterr().out, logs.getvalue()
    assert (
        out
        == f"a new classification head (3 labels) on hidden_states[2] of {minilm_path}: it is trained from scratch\n"
    )
    assert "LOAD REPORT" not in logged and "MISSING" not in logged and "classifier" not in logged
    load_with_new_head(AutoModelForLayerTokenClassification, minilm_path, hidden_layer=[1, 2], use_crf=True, **labels)
    assert "a new classification head and CRF (3 labels) on hidden_states[1, 2] (mean) of" in capsys.readouterr().out


def test_a_backbone_that_lacks_a_weight_or_holds_a_foreign_one_is_still_reported(tmp_path, logs, capsys):
    """Only the head's MISSING rows are expected: any other row keeps transformers' whole report."""
    from conftest import tiny_bert_kwargs
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    from hf_layer_tokclf.model.auto import AutoModelForLayerTokenClassification
    from hf_layer_tokclf.training.head import load_with_new_head

    BertModel(BertConfig(**tiny_bert_kwargs())).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["embeddings.LayerNorm.weight"]
    weights["foreign.weight"] = torch.zeros(2)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    load_with_new_head(AutoModelForLayerTokenClassification, tmp_path, hidden_layer=2, num_labels=3)
    logged = logs.getvalue()
    assert "embeddings.LayerNorm.weight" in logged and "foreign.weight" in logged and "classifier.weight" in logged
    assert "new classification head" not in capsys.readouterr().out

"""The layer sweep: one probe per layer from one pass, scored, recommended, written, and exportable."""

import json

import pytest
import torch
from conftest import NCBI, tiny_bert_kwargs

from hf_layer_tokclf.base.manifest import is_bookkeeping
from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.formats.labels import normalize_labels
from hf_layer_tokclf.formats.loading import load_sentences
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.running.sentences import evaluate_sentences
from hf_layer_tokclf.training.arguments import ModelArguments
from hf_layer_tokclf.training.sweep import (
    finetune_candidates,
    recommend_layer,
    resolve_layers,
    run_sweep,
    sweep,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def ncbi(split: str, limit: int):
    return normalize_labels(load_sentences(str(NCBI / f"{split}.tsv")))[0][:limit]


@pytest.fixture(scope="module")
def train_dev():
    return ncbi("train", 200), ncbi("devel", 50)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer):
    """A 4-layer random BERT with MiniLM's tokenizer, loadable by path."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertModel(BertConfig(**tiny_bert_kwargs())).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


# Fewer probe epochs than the automatic 100 for 200 sentences: the tests check mechanics, not accuracy.
EPOCHS = 20


@pytest.fixture(scope="module")
def tiny_result(tiny_dir, train_dev):
    return sweep(tiny_dir, *train_dev, epochs=EPOCHS, progress=False)


def check_tolerance_rule(result):
    best = max(result.f1.values())
    within = [k for k in result.layers if 100 * result.f1[k] >= 100 * best - result.tolerance - 1e-9]
    assert result.recommended_layer == min(within)
    assert result.f1[result.best_layer] == best


def test_every_layer_gets_a_score_and_a_cost(tiny_result):
    result = tiny_result
    assert result.layers == [0, 1, 2, 3, 4]
    assert set(result.f1) == set(result.relative_cost) == set(result.layers)
    assert all(0.0 <= f1 <= 1.0 for f1 in result.f1.values())
    costs = [result.relative_cost[k] for k in result.layers]
    assert costs == sorted(costs) and costs[0] < 0.01 and costs[-1] == pytest.approx(1.0)
    assert result.probe_weight.shape == (5, 32, 3) and result.probe_bias.shape == (5, 3)
    assert result.settings["train_words"] == sum(len(s.tokens) for s in ncbi("train", 200))
    check_tolerance_rule(result)


def test_exported_probe_scores_what_the_sweep_scored(tiny_dir, tiny_result, train_dev, tokenizer):
    _, dev = train_dev
    for layer in (0, 2, 4):
        model = tiny_result.probe_model(layer)
        assert model.config.hidden_layer == layer and len(model.bert.encoder.layer) == layer
        scores, _ = evaluate_sentences(model, tokenizer, dev, progress=False)
        # Token accuracy too: the same label for (nearly) every word, not just the same F1.
        expected = tiny_result.scores[layer]
        assert scores["per_type"] == expected["per_type"], layer
        for key in ("f1", "precision", "recall", "accuracy"):
            assert scores[key] == pytest.approx(expected[key], abs=1e-9), (layer, key)


def test_the_sweep_scores_its_probes_as_evaluate_decodes_them(tiny_dir, tiny_result, train_dev, tokenizer):
    _, dev = train_dev
    argmax = sweep(tiny_dir, *train_dev, layers=[2], epochs=EPOCHS, progress=False, decoding="argmax")
    assert argmax.settings["decoding"] == "argmax" and tiny_result.settings["decoding"] == "viterbi"
    scores, _ = evaluate_sentences(argmax.probe_model(2), tokenizer, dev, decoding="argmax", progress=False)
    assert scores["f1"] == pytest.approx(argmax.f1[2], abs=1e-9)
    with pytest.raises(ValueError, match="decoding='best' is unknown"):
        sweep(tiny_dir, *train_dev, layers=[2], progress=False, decoding="best")


def test_probes_train_independently(tiny_dir, tiny_result, train_dev):
    alone = sweep(tiny_dir, *train_dev, layers=[-3], epochs=EPOCHS, progress=False)  # -3 of 4 layers = 2
    assert alone.layers == [2]
    torch.testing.assert_close(alone.probe_weight[0], tiny_result.probe_weight[2], atol=1e-5, rtol=1e-4)
    assert alone.f1[2] == pytest.approx(tiny_result.f1[2], abs=0.02)


def test_disk_cache_gives_the_memory_result(tiny_dir, tiny_result, train_dev, tmp_path):
    on_disk = sweep(tiny_dir, *train_dev, cache="disk", cache_dir=tmp_path, epochs=EPOCHS, progress=False)
    assert on_disk.f1 == pytest.approx(tiny_result.f1)
    torch.testing.assert_close(on_disk.probe_weight, tiny_result.probe_weight)
    assert list(tmp_path.iterdir()) == []  # the cache is removed at the end
    with pytest.raises(ValueError, match="cache='disk'"):
        sweep(tiny_dir, *train_dev, cache_dir=tmp_path, progress=False)


def test_recommendation_rule_on_hand_made_scores():
    f1 = {0: 0.50, 1: 0.79, 2: 0.80, 3: 0.795, 4: 0.78}
    assert recommend_layer(f1, 1.0) == 1  # 79.0 is within 1.0 of 80.0 (inclusive)
    assert recommend_layer(f1, 0.5) == 2  # 79.5 at layer 3 qualifies, but layer 2 is shallower
    assert recommend_layer(f1, 0.0) == 2
    assert recommend_layer(f1, 30.0) == 0
    assert recommend_layer({3: 0.2, 5: 0.2}, 0.0) == 3  # ties go to the shallower layer
    with pytest.raises(ValueError, match="tolerance"):
        recommend_layer(f1, -1)


def test_layers_costs_and_candidates(tiny_result):
    assert resolve_layers(None, 6) == [0, 1, 2, 3, 4, 5, 6]
    assert resolve_layers([-1, 0, 3, 3], 6) == [0, 3, 6]
    with pytest.raises(ValueError, match="layer 7 is out of range: the model has 6 layers"):
        resolve_layers([7], 6)
    top = finetune_candidates(tiny_result, 3)
    assert top[0] == tiny_result.recommended_layer and len(set(top)) == 3
    rest = [tiny_result.f1[k] for k in top[1:]]
    assert rest == sorted(rest, reverse=True)


def test_real_minilm_sweep_saves_a_loadable_probe(minilm_path, tokenizer, tmp_path):
    output_dir = tmp_path / "sweep"
    result = run_sweep(
        str(NCBI / "train.tsv"),
        str(NCBI / "devel.tsv"),
        output_dir,
        model=minilm_path,
        layers=[0, 2, 4, 6],
        max_train_samples=150,
        max_eval_samples=40,
        save_probe=True,
        progress=False,
    )
    assert result.layers == [0, 2, 4, 6]
    assert max(result.f1.values()) > 0.2, result.f1  # real features: the probes learn something
    check_tolerance_rule(result)
    dev = ncbi("devel", 40)
    for layer in result.layers:  # every probe, exported, predicts what the sweep scored
        scores, _ = evaluate_sentences(result.probe_model(layer), tokenizer, dev, progress=False)
        assert scores["per_type"] == result.scores[layer]["per_type"], layer
        assert scores["accuracy"] == pytest.approx(result.scores[layer]["accuracy"], abs=1e-9), layer
    k = result.recommended_layer
    probe_dir = output_dir / f"probe-layer-{k}"
    model, saved_tokenizer = load_model(probe_dir)  # through AutoModelForTokenClassification, like a stranger
    scores, _ = evaluate_sentences(model, saved_tokenizer, dev, progress=False)
    assert scores["f1"] == pytest.approx(result.f1[k], abs=1e-9)
    saved = json.loads((output_dir / "sweep.json").read_text())
    assert saved["recommended_layer"] == k and [row["layer"] for row in saved["layers"]] == [0, 2, 4, 6]


def test_overwrite_output_dir_replaces_the_sweeps_files_and_keeps_the_users(tiny_dir, tmp_path):
    output_dir = tmp_path / "out"
    (output_dir / "data").mkdir(parents=True)
    (output_dir / "data" / "train.tsv").write_text("Cancer\tB-Disease\n")
    (output_dir / "notes.txt").write_text("mine")
    (output_dir / "sweep.json").write_text("{}")  # an earlier sweep's files, probe and fine-tuned run
    (output_dir / "probe-layer-9").mkdir()
    (output_dir / "probe-layer-9" / "config.json").write_text("{}")
    (output_dir / "finetune-layer-9" / "checkpoint-2").mkdir(parents=True)
    files = (str(NCBI / "train.tsv"), str(NCBI / "devel.tsv"))
    sizes = dict(max_train_samples=64, max_eval_samples=16, epochs=3)
    run_sweep(*files, output_dir, model=tiny_dir, layers=[1, 2], overwrite_output_dir=True, progress=False, **sizes)
    names = sorted(p.name for p in output_dir.iterdir())
    assert names == [".hf_layer_tokclf.json", "data", "notes.txt", "sweep.json", "sweep.md", "sweep.png"]
    assert (output_dir / "notes.txt").read_text() == "mine" and (output_dir / "data" / "train.tsv").is_file()
    assert json.loads((output_dir / "sweep.json").read_text())["layers"]


def test_overwrite_output_dir_refuses_the_working_directory(tiny_dir, tmp_path, monkeypatch):
    import shutil

    from hf_layer_tokclf.base.files import OutputExistsError

    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(shutil, "rmtree", lambda *args, **kwargs: pytest.fail(f"deleted {args[0]}"))
    files = (str(NCBI / "train.tsv"), str(NCBI / "devel.tsv"))
    with pytest.raises(OutputExistsError, match="refusing to overwrite"):
        run_sweep(*files, ".", model=tiny_dir, max_train_samples=8, max_eval_samples=8, overwrite_output_dir=True)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def ncbi_sweep_argv(model_dir, output_dir, train: int, dev: int) -> list[str]:
    """`sweep` on slices of NCBI's train and devel files."""
    return [
        "sweep",
        "--model",
        str(model_dir),
        "--train-file",
        str(NCBI / "train.tsv"),
        "--validation-file",
        str(NCBI / "devel.tsv"),
        "--output-dir",
        str(output_dir),
        "--max-train-samples",
        str(train),
        "--max-eval-samples",
        str(dev),
    ]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_table_json_plot_and_refuses_to_overwrite(tiny_dir, tmp_path, capsys):
    output_dir = tmp_path / "out"
    argv = [*ncbi_sweep_argv(tiny_dir, output_dir, train=200, dev=50), "--tolerance", "0.5", "--epochs", str(EPOCHS)]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "Extracting train features" in err and "Training probes" in err  # progress bars
    saved = json.loads((output_dir / "sweep.json").read_text())
    assert [row["layer"] for row in saved["layers"]] == [0, 1, 2, 3, 4]
    for row in saved["layers"]:
        assert 0.0 <= row["f1"] <= 1.0 and 0.0 <= row["relative_cost"] <= 1.0
    f1 = {row["layer"]: row["f1"] for row in saved["layers"]}
    assert saved["recommended_layer"] == recommend_layer(f1, 0.5) and saved["tolerance"] == 0.5
    k = saved["recommended_layer"]
    assert f"--hidden-layer {k}" in out and "hf-layer-tokclf train" in out and "| layer |" in out
    assert "| layer |" in (output_dir / "sweep.md").read_text()
    png = (output_dir / "sweep.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    from matplotlib.image import imread

    height, width, _ = imread(output_dir / "sweep.png").shape
    assert width > 600 and height > 400

    before = (output_dir / "sweep.json").read_text()
    code, _, err = run(capsys, *argv)
    assert code == 2 and "is not empty; pass --overwrite-output-dir" in err
    assert (output_dir / "sweep.json").read_text() == before
    assert run(capsys, *argv, "--overwrite-output-dir", "--no-progress", "--layers", "1", "3")[0] == 0
    assert [row["layer"] for row in json.loads((output_dir / "sweep.json").read_text())["layers"]] == [1, 3]


def test_cli_finetune_top_adds_fine_tuned_scores(tiny_dir, tmp_path, capsys):
    output_dir = tmp_path / "out"
    code, _, err = run(
        capsys,
        *ncbi_sweep_argv(tiny_dir, output_dir, train=64, dev=16),
        "--layers",
        "1",
        "2",
        "--finetune-top",
        "1",
        "--finetune-epochs",
        "1",
        "--epochs",
        "3",
        "--no-progress",
    )
    assert code == 0, err
    saved = json.loads((output_dir / "sweep.json").read_text())
    tuned = [row for row in saved["layers"] if "finetune_f1" in row]
    assert [row["layer"] for row in tuned] == [saved["recommended_layer"]]
    assert 0.0 <= tuned[0]["finetune_f1"] <= 1.0
    finetuned = json.loads((output_dir / f"finetune-layer-{tuned[0]['layer']}" / "metrics.json").read_text())
    # The fine-tuning is `train` with its defaults: the head's own learning rate included.
    assert finetuned["settings"]["classifier_learning_rate"] == ModelArguments().classifier_learning_rate
    assert "dev F1 (fine-tuned)" in (output_dir / "sweep.md").read_text()


@pytest.mark.parametrize(
    ("name", "content", "flag", "message"),
    [
        ("dev.tsv", "Cancer\tB-Chemical\n", "--validation-file", "dev.tsv, line 1: label 'B-Chemical' never appears"),
        ("train.tsv", "Cancer\tB-Disease\nonecolumn\n", "--train-file", "train.tsv, line 2"),
        ("train.tsv", "Cancer\tX-Disease\n", "--train-file", "train.tsv, line 1: label 'X-Disease'"),
    ],
)
def test_bad_input_is_named_and_nothing_is_written(tiny_dir, tmp_path, capsys, name, content, flag, message):
    good = tmp_path / "good.tsv"
    good.write_text("Cancer\tB-Disease\nrisk\tO\n\nAPC\tO\n")
    (tmp_path / name).write_text(content)
    files = {"--train-file": str(good), "--validation-file": str(good), flag: str(tmp_path / name)}
    argv = ["sweep", "--model", tiny_dir, "--output-dir", str(tmp_path / "out")]
    for option, value in files.items():
        argv += [option, value]
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err
    assert err.count("\n") == 1, "one line, no traceback"
    assert not (tmp_path / "out").exists()


def test_bad_settings_fail_before_anything_is_written(tiny_dir, tmp_path, capsys):
    good = tmp_path / "good.tsv"
    good.write_text("Cancer\tB-Disease\nrisk\tO\n")
    base = ["sweep", "--model", tiny_dir, "--train-file", str(good), "--validation-file", str(good)]
    base += ["--output-dir", str(tmp_path / "out")]
    code, _, err = run(capsys, *base, "--layers", "9")
    assert code == 2 and "layer 9 is out of range: the model has 4 layers" in err
    code, _, err = run(capsys, *base, "--tolerance", "-1")
    assert code == 2 and "tolerance" in err
    assert not (tmp_path / "out").exists()


def test_the_encoder_pass_runs_where_and_how_asked(tiny_dir, train_dev):
    """--device / --dtype reach the encoder; the features and probes stay float32 on the CPU."""
    result = sweep(tiny_dir, *train_dev, layers=[1, 4], epochs=2, progress=False, device="cpu", dtype="bfloat16")
    assert result.settings["device"] == "cpu" and result.settings["dtype"] == "bfloat16"
    assert result.probe_weight.dtype == torch.float32 and set(result.f1) == {1, 4}
    assert sweep(tiny_dir, *train_dev, layers=[1], epochs=2, progress=False).settings["dtype"] == "float32"


def test_cli_device_and_dtype(tiny_dir, tmp_path, capsys):
    argv = [*ncbi_sweep_argv(tiny_dir, tmp_path / "out", 20, 10), "--layers", "1", "--epochs", "2", "--no-progress"]
    assert run(capsys, *argv, "--device", "cpu", "--dtype", "bfloat16")[0] == 0
    settings = json.loads((tmp_path / "out" / "sweep.json").read_text())["settings"]
    assert settings["device"] == "cpu" and settings["dtype"] == "bfloat16"


def test_a_failing_plot_or_cost_count_leaves_the_sweep_and_claims_no_plot(
    tiny_dir, tmp_path, capsys, monkeypatch, logs
):
    """The plot and the FLOP count are niceties (`niceties.optional_step`): the sweep's F1s are written all the same."""
    import hf_layer_tokclf.training.sweep.report as report
    import hf_layer_tokclf.training.sweep.run as sweep_run

    def broken(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(report, "_plot", broken)
    monkeypatch.setattr(sweep_run, "relative_costs", broken)
    output_dir = tmp_path / "out"
    code, out, err = run(capsys, *ncbi_sweep_argv(tiny_dir, output_dir, train=32, dev=16), "--no-progress")
    assert code == 0, err
    assert sorted(p.name for p in output_dir.iterdir() if not is_bookkeeping(p.name)) == ["sweep.json", "sweep.md"]
    assert "sweep.png" not in out
    rows = json.loads((output_dir / "sweep.json").read_text())["layers"]
    assert [row["relative_cost"] for row in rows] == [row["layer"] / 4 for row in rows]  # k/L instead
    assert "Skipped the plot" in logs.getvalue() and "Skipped counting each layer's FLOPs" in logs.getvalue()


def test_sweep_takes_the_allow_rare_labels_its_typo_message_names(tmp_path, capsys, monkeypatch):
    """sweep reads its data as train does: a typo is refused naming --allow-rare-labels, which sweep then takes."""
    from conftest import ncbi_changed

    from hf_layer_tokclf.training import splits

    typo = str(ncbi_changed(tmp_path / "train.tsv", "train", 2266, "B-Disaese"))
    argv = ["sweep", "--train-file", typo, "--validation-file", str(NCBI / "devel.tsv"), "--no-plot"]
    assert main([*argv, "--output-dir", str(tmp_path / "refused")]) == 2
    assert "--allow-rare-labels" in capsys.readouterr().err and not (tmp_path / "refused").exists()

    read = []

    def read_splits(data_args):  # the data as the sweep reads it, then stop: the probes are tested above
        read.append(data_args)
        raise KeyboardInterrupt

    monkeypatch.setattr(splits, "read_splits", read_splits)
    assert main([*argv, "--output-dir", str(tmp_path / "allowed"), "--allow-rare-labels"]) == 130
    assert read[0].allow_rare_labels is True

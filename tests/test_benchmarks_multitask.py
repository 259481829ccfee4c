"""The multi-task benchmark's plumbing (`python -m benchmarks.multitask`): its quick run of both sections end to end
on real MiniLM and slices of both corpora, one section keeping the other's results, the naive baseline's scoring
and the verdicts' arithmetic. Timings are never asserted; only that the report says what was measured."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import multitask, multitask_cost, multitask_quality
from benchmarks.common import SHARED_DATA, render, sentences_of
from hf_layer_tokclf.running.metrics import entity_scores

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no corpora at {SHARED_DATA}")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, dict]:
    """``--quick``: both sections, once for the module."""
    folder = tmp_path_factory.mktemp("multitask")
    return folder, multitask.main(["--quick", "--output-dir", str(folder), "--threads", "1"])


def test_quick_run_measures_both_sections_and_reports_them(quick_run):
    folder, data = quick_run
    (table,) = data["cost"]["tables"]  # --quick: MiniLM only
    assert table["family"] == "minilm" and table["layers"] == {"disease": 4, "cg": 6}
    assert table["labels"] == {"disease": 3, "cg": 33}  # O + B/I of NCBI's one type and BioNLP13CG's 16
    joint, singles = table["rows"]
    assert (joint["contender"], singles["contender"]) == ("joint", "singles")
    assert joint["time_vs_singles"] == pytest.approx(joint["median_s"] / singles["median_s"])
    assert joint["peak_vs_singles"] == pytest.approx(joint["peak_mb"] / singles["peak_mb"])
    assert singles["time_vs_singles"] == 1.0 and table["sentences"] == 16 and table["tokens"] > 16
    quality = data["quality"]
    assert {(row["task"], row["contender"]) for row in quality["rows"]} == {
        (task, contender) for task in ("disease", "cg") for contender in ("joint", "single", "naive")
    }
    assert all(0 <= run["test_f1"] <= 1 for run in quality["runs"]) and quality["steps"] == 2
    texts = [v["text"] for v in multitask.verdicts(data)]
    assert sum(t.startswith("time, one joint pass / single-task models at layers 4 and 6") for t in texts) == 1
    assert sum(t.startswith("peak memory, one joint pass") for t in texts) == 1
    assert [t.split(":")[0] for t in texts[2:]] == ["disease", "cg"]
    report = (folder / "multitask.md").read_text()
    assert report == render(multitask.report, json.loads((folder / "multitask.json").read_text()))
    assert "**quick**" in report and "Not measured yet" not in report
    assert "| disease (ncbi-disease) | 4 |" in multitask.readme_table(data)


def test_one_section_keeps_the_others_results(quick_run, monkeypatch):
    """``--only quality`` renews the quality section and keeps the cost section (and its command) of the results
    file it replaces; the cost section is not run."""
    folder, before = quick_run
    monkeypatch.setattr(multitask, "cost_section", lambda args, plan: pytest.fail("cost was run"))
    renewed = {
        key: before["quality"][key] for key in ("rows", "runs", "layers", "corpora", "batch", "seeds", "sentences")
    }
    monkeypatch.setattr(multitask, "quality_section", lambda args, plan: renewed | {"steps": 1})
    data = multitask.main(["--only", "quality", "--quick", "--output-dir", str(folder)])
    assert data["cost"] == before["cost"] and data["quality"]["steps"] == 1
    assert data["command"].endswith("--only quality --quick --output-dir " + str(folder))


def test_naive_baseline_is_scored_on_each_corpus_own_types(tmp_path):
    """The union head's predictions on the concatenated test file, cut back per corpus: a Disease found in
    BioNLP13CG or a Cancer found in NCBI-disease is ``O`` for that corpus, never a false positive."""
    tasks = {
        name: {"folder": str(SHARED_DATA / corpus), "layer": layer} for name, (corpus, layer) in multitask.TASKS.items()
    }
    files = multitask_quality.prepare(tasks, tmp_path, 6)
    gold = {name: sentences_of(files[name]["test"]) for name in tasks}
    predicted = tmp_path / "predictions.tsv"
    wrong = [replace(s, labels=["B-Cancer", *s.labels[1:]]) for s in gold["disease"]]  # no Cancer in NCBI
    multitask_quality.write_conll(predicted, [*wrong, *gold["cg"]])
    scores = multitask_quality.naive_scores(tasks, files, predicted)
    expected = entity_scores([s.labels for s in gold["disease"]], [["O", *s.labels[1:]] for s in gold["disease"]])
    assert scores == {"disease": pytest.approx(expected["f1"]), "cg": 1.0}
    assert multitask_quality.restricted(["B-Disease", "I-Disease", "B-Cancer", "O"], {"Cancer"}) == [
        "O", "O", "B-Cancer", "O"
    ]  # fmt: skip


def test_slices_keep_test_sentences_of_the_training_slices_types(tmp_path):
    tasks = {"cg": {"folder": str(SHARED_DATA / "bionlp13cg"), "layer": 6}}
    files = multitask_quality.prepare(tasks, tmp_path, 10)
    known = {kind for s in sentences_of(files["cg"]["train"]) for kind in multitask_quality.types(s.labels)}
    sliced = sentences_of(files["cg"]["test"])
    assert len(sliced) == 10 and all(multitask_quality.types(s.labels) <= known for s in sliced)
    assert files["naive"]["test"].read_text() == files["cg"]["test"].read_text()  # one task: the union is it


def test_quality_verdicts_judge_joint_against_single_within_one_point():
    rows = [
        {"task": "disease", "contender": "joint", "test_f1_mean": 70.0},
        {"task": "disease", "contender": "single", "test_f1_mean": 70.9},
        {"task": "disease", "contender": "naive", "test_f1_mean": 60.0},
        {"task": "cg", "contender": "joint", "test_f1_mean": 50.0},
        {"task": "cg", "contender": "single", "test_f1_mean": 51.1},
    ]
    found = multitask_quality.verdicts(rows)
    assert [(v["task"], v["pass"]) for v in found] == [("disease", True), ("cg", False)]
    assert found[0]["text"] == (
        "disease: joint - single-task test F1 = -0.90 points (target >= -1.0); naive union head - single-task = -10.90"
    )


def test_cost_verdicts_on_given_ratios():
    table = {"family": "x", "layers": {"disease": 4, "cg": 6}, "cpu_during_timing": None}
    table["rows"] = [{"contender": "joint", "time_vs_singles": 0.58, "peak_vs_singles": 0.61}]
    assert [(v["pass"], v["value"]) for v in multitask_cost.verdicts([table])] == [(True, 0.58), (False, 0.61)]

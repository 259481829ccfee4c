"""Learning from little data: short fine-tuning on slices of NCBI-disease, ours against the baselines.

    python -m benchmarks.few_data [--sizes 500 1500 full] [--seeds 0 1 2] [--layers 3 6]
                                  [--contenders ours ours-pytorch-init ours-before notebook stock] [--resume]

Every run starts from the packaged MiniLM (6 x 384) in this process:

* **ours**: `hf-layer-tokclf train` with today's defaults (`training.train`);
* **ours-pytorch-init**: the same with one learning rate (``--classifier-learning-rate`` equal to
  ``--learning-rate``): what the head's PyTorch init alone gives;
* **ours-before**: the defaults before issue 17: BERT's head init (normal(0, 0.02), zero bias) and
  one learning rate;
* **notebook**: the notebook recipe: ``AutoModel`` + a bare ``nn.Linear`` on ``hidden_states[k]``
  (PyTorch's init, no dropout before it) and the plain `Trainer`;
* **stock**: transformers' `BertForTokenClassification` (all L layers), trained by `training.train`
  with one learning rate, as transformers would.

A slice of N sentences is the first N of ``train.tsv``, the first 300 of ``devel.tsv`` and the first
600 of ``test.tsv``, trained 2 epochs at lr 5e-5, batch 32, weight decay 0.01, no warmup. ``full`` is
the README's main job: every sentence, its 3 epochs and other defaults. Reported per size: mean and
sample standard deviation over the seeds of the test entity F1, the dev F1 after the first epoch,
and the wall time; then whether ours >= notebook - 0.5 F1 and >= the stock head at every layer.
Results are written after every run, so that ``--resume`` continues an interrupted benchmark.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import log, machine_facts, write_results

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "ncbi-disease"
CONTENDERS = ("ours", "ours-pytorch-init", "ours-before", "notebook", "stock")
DESCRIPTIONS = {
    "ours": "ours (today's defaults)",
    "ours-pytorch-init": "ours, PyTorch head init, one learning rate",
    "ours-before": "ours before (BERT head init, one learning rate)",
    "notebook": "notebook recipe (AutoModel + nn.Linear, plain Trainer)",
    "stock": "stock head (BertForTokenClassification, one learning rate)",
}
SLICE_SETTINGS = {"num_train_epochs": 2, "learning_rate": 5e-5, "weight_decay": 0.01, "warmup_steps": 0}
SLICE_EVAL, SLICE_TEST = 300, 600
TARGET_GAP_TO_NOTEBOOK = 0.5  # F1 points


def data_arguments(size: str) -> Any:
    from hf_layer_tokclf.training import DataArguments

    files = dict(
        train_file=str(DATA / "train.tsv"), validation_file=str(DATA / "devel.tsv"), test_file=str(DATA / "test.tsv")
    )
    if size == "full":
        return DataArguments(**files)
    return DataArguments(**files, max_train_samples=int(size), max_eval_samples=SLICE_EVAL, max_test_samples=SLICE_TEST)


# The options of `train` that the plain Trainer of a notebook does not have.
NOT_IN_NOTEBOOK = ("train_sampling_strategy", "group_by_length", "load_best_model_at_end", "save_strategy")


def training_arguments(size: str, seed: int, output_dir: str, notebook: bool = False) -> Any:
    from transformers import TrainingArguments

    from hf_layer_tokclf.training import TRAINING_DEFAULTS

    settings = {**TRAINING_DEFAULTS, **({} if size == "full" else SLICE_SETTINGS), "seed": seed}
    if notebook:  # random batches, nothing saved; the module's forward(**inputs) hides its columns
        settings = {k: v for k, v in settings.items() if k not in NOT_IN_NOTEBOOK}
        settings |= {"save_strategy": "no", "remove_unused_columns": False}
    return TrainingArguments(
        output_dir=output_dir, disable_tqdm=True, dataloader_pin_memory=torch.cuda.is_available(), **settings
    )


def _bert_init_head_class() -> type:
    from transformers import BertPreTrainedModel

    from hf_layer_tokclf import BertForLayerTokenClassification

    class BertInitHead(BertForLayerTokenClassification):
        """Our model with the head initialised as before issue 17: BERT's normal(0, 0.02), zero bias."""

        _auto_class = None  # saved into a temporary folder only: no code files, no auto_map

        def _init_weights(self, module: torch.nn.Module) -> None:
            if module is getattr(self, "classifier", None):
                BertPreTrainedModel._init_weights(self, module)
            else:
                super()._init_weights(module)

    return BertInitHead


def _first_epoch_dev_f1(output_dir: Path) -> float | None:
    """Dev F1 at epoch 1, from the trainer_state.json of the run's last checkpoint."""
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not checkpoints:
        return None
    history = json.loads((checkpoints[-1] / "trainer_state.json").read_text())["log_history"]
    return next((entry["eval_f1"] for entry in history if "eval_f1" in entry), None)


def run_ours(contender: str, size: str, layer: int, seed: int) -> dict[str, Any]:
    """`training.train` as `hf-layer-tokclf train` runs it, for ours and the stock head."""
    from transformers import BertForTokenClassification

    from hf_layer_tokclf.training import ModelArguments, RunArguments, train

    model_args = ModelArguments(hidden_layer=[layer])
    model_class = None
    if contender != "ours":  # one learning rate for every parameter
        model_args = replace(model_args, classifier_learning_rate=None)
    if contender == "ours-before":
        model_class = _bert_init_head_class()
    elif contender == "stock":
        model_class = BertForTokenClassification
    with tempfile.TemporaryDirectory(prefix="few-data-") as tmp:
        metrics = train(
            model_args,
            data_arguments(size),
            training_arguments(size, seed, tmp),
            RunArguments(overwrite_output_dir=True, keep_checkpoints=True),
            model_class=model_class,
        )
        first = _first_epoch_dev_f1(Path(tmp))
    return {"test_f1": metrics["test_f1"], "eval_f1": metrics["eval_f1"], "eval_f1_epoch_1": first}


def run_notebook(size: str, layer: int, seed: int) -> dict[str, Any]:
    """The notebook recipe: every layer computed, a bare linear layer on ``hidden_states[layer]``,
    the plain `Trainer` (random batches), scored on whole words as ours is."""
    from transformers import AutoModel, AutoTokenizer, DataCollatorForTokenClassification, Trainer, set_seed

    from benchmarks.models import NotebookRecipe
    from hf_layer_tokclf.data import BOOKKEEPING_KEYS, encode, label_list, merge_windows
    from hf_layer_tokclf.metrics import entity_scores
    from hf_layer_tokclf.training import default_backbone, read_splits

    path = default_backbone()
    splits = read_splits(data_arguments(size))
    labels = label_list(splits["train"])
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(path)
    features = {split: encode(sentences, tokenizer, label2id) for split, sentences in splits.items()}

    def inputs(split: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in f.items() if k not in BOOKKEEPING_KEYS} for f in features[split]]

    def f1(split: str, token_predictions: Any) -> float:
        sentences = splits[split]
        words = merge_windows(features[split], token_predictions, [len(s.tokens) for s in sentences])
        return entity_scores([s.labels for s in sentences], [[labels[i] for i in row] for row in words])["f1"]

    set_seed(seed)
    backbone = AutoModel.from_pretrained(path)
    model = NotebookRecipe(backbone, layer, backbone.config.hidden_size, dropout=0.0)
    with tempfile.TemporaryDirectory(prefix="few-data-") as tmp:
        trainer = Trainer(
            model=model,
            args=training_arguments(size, seed, tmp, notebook=True),
            train_dataset=inputs("train"),
            eval_dataset=inputs("validation"),
            data_collator=DataCollatorForTokenClassification(tokenizer),
            compute_metrics=lambda prediction: {"f1": f1("validation", prediction.predictions)},
            preprocess_logits_for_metrics=lambda logits, _: logits.argmax(dim=-1),
        )
        trainer.train()
    history = trainer.state.log_history
    dev = [entry["eval_f1"] for entry in history if "eval_f1" in entry]
    trainer.compute_metrics = None  # it scores the dev set; the test set is scored here
    test = trainer.predict(inputs("test")).predictions
    return {"test_f1": f1("test", test), "eval_f1": dev[-1], "eval_f1_epoch_1": dev[0]}


def run_one(contender: str, size: str, layer: int, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    result = run_notebook(size, layer, seed) if contender == "notebook" else run_ours(contender, size, layer, seed)
    wall = round(time.perf_counter() - start, 1)
    return {"contender": contender, "size": size, "layer": layer, "seed": seed, **result, "wall_s": wall}


def plan(sizes: list[str], contenders: list[str], layers: list[int], seeds: list[int], depth: int) -> list[tuple]:
    """(contender, size, layer, seed) of every run, seed by seed (an interrupted benchmark has every size);
    the stock head reads the last layer only."""
    runs = []
    for seed in seeds:
        for size in sizes:
            for contender in contenders:
                for layer in [depth] if contender == "stock" else layers:
                    runs.append((contender, size, layer, seed))
    return runs


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (size, contender, layer): mean and spread over the seeds, in F1 points."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["size"], run["contender"], run["layer"]), []).append(run)

    def stats(values: list[float | None]) -> tuple[float | None, float | None]:
        values = [100 * v for v in values if v is not None]
        if not values:
            return None, None
        return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)

    rows = []
    for (size, contender, layer), group in groups.items():
        test_mean, test_sd = stats([r["test_f1"] for r in group])
        first_mean, first_sd = stats([r["eval_f1_epoch_1"] for r in group])
        rows.append(
            {
                "size": size,
                "contender": contender,
                "layer": layer,
                "seeds": [r["seed"] for r in group],
                "test_f1_mean": test_mean,
                "test_f1_sd": test_sd,
                "eval_f1_epoch_1_mean": first_mean,
                "eval_f1_epoch_1_sd": first_sd,
                "wall_s_mean": statistics.mean(r["wall_s"] for r in group),
            }
        )
    return rows


def verdicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size and layer: ours >= notebook - 0.5 F1, and ours >= the stock head (mean over seeds)."""
    by = {(r["size"], r["contender"], r["layer"]): r for r in rows}
    found = []
    for (size, contender, layer), row in by.items():
        if contender != "ours":
            continue
        notebook = by.get((size, "notebook", layer))
        if notebook:
            gap = row["test_f1_mean"] - notebook["test_f1_mean"]
            found.append(
                {
                    "size": size,
                    "layer": layer,
                    "against": "notebook",
                    "ours_minus_baseline": gap,
                    "pass": gap >= -TARGET_GAP_TO_NOTEBOOK,
                }
            )
        for (other_size, other, stock_layer), stock in by.items():
            if other_size == size and other == "stock":
                gap = row["test_f1_mean"] - stock["test_f1_mean"]
                found.append(
                    {
                        "size": size,
                        "layer": layer,
                        "against": f"stock head (layer {stock_layer})",
                        "ours_minus_baseline": gap,
                        "pass": gap >= 0,
                    }
                )
    return found


def _points(mean: float | None, sd: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")


def report(result: dict[str, Any]) -> str:
    lines = [
        "# Learning from little data: NCBI-disease slices (packaged MiniLM, 6 x 384)",
        "",
        "Commands: "
        + ", then ".join(f"`{c}`" for c in result["commands"])
        + ". A slice of N: the first N training sentences, the first "
        f"{SLICE_EVAL} dev and {SLICE_TEST} test sentences; {shlex.join(_flags(SLICE_SETTINGS))}, batch 32. "
        "`full`: the README's main job (all sentences, 3 epochs, its defaults). Test and dev entity F1 "
        "in points: mean ± sample standard deviation over the seeds.",
    ]
    for size in dict.fromkeys(r["size"] for r in result["rows"]):
        lines += [
            "",
            f"## {size} training sentences" if size != "full" else "## full training set",
            "",
            "| model | layer | seeds | test F1 | dev F1 after epoch 1 | wall s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in sorted(
            (r for r in result["rows"] if r["size"] == size),
            key=lambda r: (r["layer"], CONTENDERS.index(r["contender"])),
        ):
            lines.append(
                f"| {DESCRIPTIONS[row['contender']]} | {row['layer']} | {len(row['seeds'])} | "
                f"{_points(row['test_f1_mean'], row['test_f1_sd'])} | "
                f"{_points(row['eval_f1_epoch_1_mean'], row['eval_f1_epoch_1_sd'])} | {row['wall_s_mean']:.0f} |"
            )
    if result["verdicts"]:
        lines += ["", "## Targets (mean test F1)", ""]
        for v in result["verdicts"]:
            target = f">= -{TARGET_GAP_TO_NOTEBOOK}" if v["against"] == "notebook" else ">= 0"
            lines.append(
                f"- {'PASS' if v['pass'] else 'FAIL'}: {v['size']}, layer {v['layer']}: ours - {v['against']} = "
                f"{v['ours_minus_baseline']:+.2f} (target {target})"
            )
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in result["machine"].items())]
    return "\n".join(lines) + "\n"


def _test_cell(row: dict[str, Any] | None) -> str:
    return _points(row["test_f1_mean"], row["test_f1_sd"]) if row else "—"


def _first_epoch_cell(row: dict[str, Any] | None) -> str:
    return "—" if row is None or row["eval_f1_epoch_1_mean"] is None else f"{row['eval_f1_epoch_1_mean']:.1f}"


def readme_table(result: dict[str, Any]) -> str:
    """The README's table: per size and layer, mean ± spread of the test F1 of each contender, and the
    dev F1 after epoch 1 before and now."""
    by = {(r["size"], r["contender"], r["layer"]): r for r in result["rows"]}
    stock = {size: row for (size, contender, _), row in by.items() if contender == "stock"}
    stock_layers = "/".join(str(layer) for layer in sorted({row["layer"] for row in stock.values()}))
    stock_name = f"stock head (layer {stock_layers})" if stock_layers else "stock head"
    lines = [
        f"| training sentences | layer | notebook recipe | {stock_name} | ours before | ours now "
        "| dev F1 after epoch 1, before → now |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    ours = sorted(
        (key for key in by if key[1] == "ours"),
        key=lambda key: (float("inf") if key[0] == "full" else int(key[0]), key[2]),
    )
    for size, _, layer in ours:
        seeds = len(by[(size, "ours", layer)]["seeds"])
        before = by.get((size, "ours-before", layer))
        lines.append(
            f"| {size} ({seeds} seed{'s' if seeds > 1 else ''}) | {layer} | "
            f"{_test_cell(by.get((size, 'notebook', layer)))} | {_test_cell(stock.get(size))} | "
            f"{_test_cell(before)} | **{_test_cell(by[(size, 'ours', layer)])}** | "
            f"{_first_epoch_cell(before)} → {_first_epoch_cell(by[(size, 'ours', layer)])} |"
        )
    return "\n".join(lines)


def _flags(settings: dict[str, Any]) -> list[str]:
    return [part for key, value in settings.items() for part in (f"--{key.replace('_', '-')}", f"{value:g}")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["500", "1500", "full"], help="Slice sizes, or 'full'.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--output-dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--resume", action="store_true", help="Keep the runs already in few_data.json.")
    args = parser.parse_args(argv)
    for size in args.sizes:
        if size != "full" and not size.isdigit():
            parser.error(f"--sizes: {size!r} is neither a number of sentences nor 'full'")

    from transformers import AutoConfig

    from hf_layer_tokclf.training import default_backbone

    depth = AutoConfig.from_pretrained(default_backbone()).num_hidden_layers
    output = Path(args.output_dir)
    done: list[dict[str, Any]] = []
    commands = ["python -m benchmarks.few_data " + shlex.join(sys.argv[1:] if argv is None else argv)]
    if args.resume and (output / "few_data.json").is_file():
        earlier = json.loads((output / "few_data.json").read_text())
        done, commands = earlier["runs"], [*earlier["commands"], *commands]
    todo = plan(args.sizes, args.contenders, args.layers, args.seeds, depth)
    keys = {(r["contender"], r["size"], r["layer"], r["seed"]) for r in done}
    for index, run in enumerate(todo, 1):
        if run in keys:
            continue
        log(f"[{index}/{len(todo)}] {DESCRIPTIONS[run[0]]}, {run[1]} sentences, layer {run[2]}, seed {run[3]} ...")
        done.append(run_one(*run))
        log(f"  test F1 {100 * done[-1]['test_f1']:.2f}, {done[-1]['wall_s']:.0f} s")
        write_results(output, "few_data", *_result(commands, done))
    print(_result(commands, done)[0])


def _result(commands: list[str], runs: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    rows = summarize(runs)
    result = {"commands": commands, "runs": runs, "rows": rows, "verdicts": verdicts(rows), "machine": machine_facts()}
    return report(result), result


if __name__ == "__main__":
    main()

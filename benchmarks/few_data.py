"""Learning from little data: short fine-tuning on slices of NCBI-disease, ours against the baselines.

    python -m benchmarks.few_data [--sizes 500 1500 full] [--seeds 0 1 2] [--layers 3 6]
                                  [--contenders ours ours-pytorch-init ours-before notebook stock] [--resume]

From the packaged MiniLM, in this process, each contender of `DESCRIPTIONS`; a slice of N: the first N training
sentences, 2 epochs at lr 5e-5; ``full``: the README's main job. Results are written after every run, so that
``--resume`` continues an interrupted benchmark.
"""

from __future__ import annotations

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

from benchmarks import common
from benchmarks.common import md_header, md_row

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
# The options of `train` that the plain Trainer of a notebook does not have.
NOT_IN_NOTEBOOK = ("train_sampling_strategy", "group_by_length", "load_best_model_at_end", "save_strategy")


def data_arguments(size: str) -> Any:
    from hf_layer_tokclf.training.arguments import DataArguments

    if size == "full":
        return DataArguments(**common.ncbi_files())
    limits = {"max_train_samples": int(size), "max_eval_samples": SLICE_EVAL, "max_test_samples": SLICE_TEST}
    return DataArguments(**common.ncbi_files(), **limits)


def training_arguments(size: str, seed: int, output_dir: str, notebook: bool = False) -> Any:
    from transformers import TrainingArguments

    from hf_layer_tokclf.training.trainer import TRAINING_DEFAULTS

    settings = {**TRAINING_DEFAULTS, **({} if size == "full" else SLICE_SETTINGS), "seed": seed}
    if notebook:  # random batches, nothing saved; the module's forward(**inputs) hides its columns
        settings = {k: v for k, v in settings.items() if k not in NOT_IN_NOTEBOOK}
        settings |= {"save_strategy": "no", "remove_unused_columns": False}
    pin = torch.cuda.is_available()
    return TrainingArguments(output_dir=output_dir, disable_tqdm=True, dataloader_pin_memory=pin, **settings)


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
    """`train.train` as `hf-layer-tokclf train` runs it, for ours and the stock head."""
    from transformers import BertForTokenClassification

    from hf_layer_tokclf.training.arguments import ModelArguments, RunArguments
    from hf_layer_tokclf.training.train import train

    model_args = ModelArguments(hidden_layer=[layer])
    if contender != "ours":  # one learning rate for every parameter
        model_args = replace(model_args, classifier_learning_rate=None)
    model_class = {"ours-before": _bert_init_head_class(), "stock": BertForTokenClassification}.get(contender)
    run_args = RunArguments(overwrite_output_dir=True, keep_checkpoints=True)
    with tempfile.TemporaryDirectory(prefix="few-data-") as tmp:
        args = training_arguments(size, seed, tmp)
        metrics = train(model_args, data_arguments(size), args, run_args, model_class=model_class)
        first = _first_epoch_dev_f1(Path(tmp))
    return {"test_f1": metrics["test_f1"], "eval_f1": metrics["eval_f1"], "eval_f1_epoch_1": first}


def run_notebook(size: str, layer: int, seed: int) -> dict[str, Any]:
    """The notebook recipe: every layer computed, a bare linear layer on ``hidden_states[layer]``,
    the plain `Trainer` (random batches), scored on whole words as ours is."""
    from transformers import AutoModel, AutoTokenizer, DataCollatorForTokenClassification, Trainer, set_seed

    from benchmarks.models import NotebookRecipe
    from hf_layer_tokclf.formats.labels import label_list
    from hf_layer_tokclf.running.features import BOOKKEEPING_KEYS, encode, merge_windows
    from hf_layer_tokclf.running.metrics import entity_scores
    from hf_layer_tokclf.training.arguments import default_backbone
    from hf_layer_tokclf.training.splits import read_splits

    path = default_backbone()
    splits, _ = read_splits(data_arguments(size))
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
    return [
        (contender, size, layer, seed)
        for seed in seeds
        for size in sizes
        for contender in contenders
        for layer in ([depth] if contender == "stock" else layers)
    ]


def _stats(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation in F1 points (None where there is nothing to average)."""
    values = [100 * v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (size, contender, layer): mean and spread over the seeds, in F1 points."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["size"], run["contender"], run["layer"]), []).append(run)
    rows = []
    for (size, contender, layer), group in groups.items():
        row = {"size": size, "contender": contender, "layer": layer, "seeds": [r["seed"] for r in group]}
        for key in ("test_f1", "eval_f1_epoch_1"):
            row[f"{key}_mean"], row[f"{key}_sd"] = _stats([r[key] for r in group])
        rows.append(row | {"wall_s_mean": statistics.mean(r["wall_s"] for r in group)})
    return rows


def verdicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size and layer: ours >= notebook - 0.5 F1, and ours >= the stock head (mean over seeds)."""
    by = {(r["size"], r["contender"], r["layer"]): r for r in rows}
    found = []
    for (size, contender, layer), row in by.items():
        if contender != "ours":
            continue
        baselines = [("notebook", by.get((size, "notebook", layer)), -TARGET_GAP_TO_NOTEBOOK)]
        baselines += [(f"stock head (layer {key[2]})", r, 0) for key, r in by.items() if key[:2] == (size, "stock")]
        for against, baseline, least in (b for b in baselines if b[1]):
            gap = row["test_f1_mean"] - baseline["test_f1_mean"]
            found.append(
                {"size": size, "layer": layer, "against": against, "ours_minus_baseline": gap, "pass": gap >= least}
            )
    return found


def _points(mean: float | None, sd: float | None) -> str:
    return "—" if mean is None else f"{mean:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")


def report(result: dict[str, Any]) -> str:
    flags = " ".join(f"--{key.replace('_', '-')} {value:g}" for key, value in SLICE_SETTINGS.items())
    lines = [
        "# Learning from little data: NCBI-disease slices (packaged MiniLM, 6 x 384)",
        "",
        "Commands: " + ", then ".join(f"`{c}`" for c in result["commands"]) + f". A slice of N: the first N "
        f"training, {SLICE_EVAL} dev and {SLICE_TEST} test sentences, {flags}; F1: mean ± sd over the seeds.",
    ]
    for size in dict.fromkeys(r["size"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["size"] == size]
        rows.sort(key=lambda r: (r["layer"], CONTENDERS.index(r["contender"])))
        cells = (
            [DESCRIPTIONS[r["contender"]], r["layer"], len(r["seeds"]), _points(r["test_f1_mean"], r["test_f1_sd"]),
             _points(r["eval_f1_epoch_1_mean"], r["eval_f1_epoch_1_sd"]), f"{r['wall_s_mean']:.0f}"]
            for r in rows
        )  # fmt: skip
        lines += ["", f"## {size} training sentences" if size != "full" else "## full training set", ""]
        lines += md_header("model | layer | seeds | test F1 | dev F1 after epoch 1 | wall s")
        lines += [md_row(c) for c in cells]
    if result["verdicts"]:
        lines += ["", "## Targets (mean test F1)", ""]
        for v in result["verdicts"]:
            target = f">= -{TARGET_GAP_TO_NOTEBOOK}" if v["against"] == "notebook" else ">= 0"
            lines.append(
                f"- {'PASS' if v['pass'] else 'FAIL'}: {v['size']}, layer {v['layer']}: ours - {v['against']} = "
                f"{v['ours_minus_baseline']:+.2f} (target {target})"
            )
    return "\n".join(lines)


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
    header = f"training sentences | layer | notebook recipe | {stock_name} | ours before | ours now "
    lines = md_header(header + "| dev F1 after epoch 1, before → now")
    ours = [key for key in by if key[1] == "ours"]
    for size, _, layer in sorted(ours, key=lambda key: (float("inf") if key[0] == "full" else int(key[0]), key[2])):
        now, before = by[(size, "ours", layer)], by.get((size, "ours-before", layer))
        seeds = len(now["seeds"])
        lines.append(
            f"| {size} ({seeds} seed{'s' if seeds > 1 else ''}) | {layer} | "
            f"{_test_cell(by.get((size, 'notebook', layer)))} | {_test_cell(stock.get(size))} | "
            f"{_test_cell(before)} | **{_test_cell(now)}** | {_first_epoch_cell(before)} → {_first_epoch_cell(now)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = common.parser_of("benchmarks.few_data", __doc__)
    parser.add_argument("--sizes", nargs="+", default=["500", "1500", "full"], help="Slice sizes, or 'full'.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--resume", action="store_true", help="Keep the runs already in few_data.json.")
    args = parser.parse_args(argv)
    for size in (size for size in args.sizes if size != "full" and not size.isdigit()):
        parser.error(f"--sizes: {size!r} is neither a number of sentences nor 'full'")
    from transformers import AutoConfig

    from hf_layer_tokclf.training.arguments import default_backbone

    depth, output = AutoConfig.from_pretrained(default_backbone()).num_hidden_layers, args.output_dir
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
        common.log(
            f"[{index}/{len(todo)}] {DESCRIPTIONS[run[0]]}, {run[1]} sentences, layer {run[2]}, seed {run[3]} ..."
        )
        done.append(run_one(*run))
        common.log(f"  test F1 {100 * done[-1]['test_f1']:.2f}, {done[-1]['wall_s']:.0f} s")
        data = result(commands, done)
        common.write_results(output, "few_data", common.render(report, data), data)
    print(common.render(report, result(commands, done)))


def result(commands: list[str], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``few_data.json`` holds: every run, a row per (size, contender, layer), the verdicts, the machine."""
    rows = summarize(runs)
    return {
        "commands": commands,
        "runs": runs,
        "rows": rows,
        "verdicts": verdicts(rows),
        "machine": common.machine_facts(),
    }


if __name__ == "__main__":
    main()

"""Valid entities, measured: the main job's model on NCBI-disease test with argmax and with constrained Viterbi
decoding, a CRF head trained with the same settings, and decoding time against the forward pass.

    python -m benchmarks.decoding [--quick] [--output-dir benchmarks/results]

Both models are trained with the README's main-job options (parsed by the same CLI parser; the CRF run
adds ``--crf``), the packaged MiniLM and the same seed. Each is scored on every gold word of the test
file with `inference.evaluate_sentences`. "Invalid entities" counts the entities argmax predicted that
start with ``I-`` (after ``O`` or another type): spans the IOB2 scheme does not allow, which seqeval's
default mode still counts. Decoding time is the Viterbi pass over the test set's word scores
(`decoding.word_labels`) against the model's forward pass over the same windows (`inference.window_logits`),
both timed here in interleaved rounds. Writes ``decoding.md`` and ``decoding.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, RESULTS_DIR, machine_facts, machine_line, md_table, ncbi_sentences, write_results
from benchmarks.train_ncbi import main_job_argv

TARGET = 0.05  # decoding under 5% of the forward pass


def train_model(argv: list[str], output_dir: Path) -> dict[str, Any]:
    """Trains with ``argv`` (train's options) into ``output_dir``; returns its metrics and wall time."""
    from hf_layer_tokclf.cli.train import train_parser
    from hf_layer_tokclf.training.train import train

    options = [*argv, "--output-dir", str(output_dir), "--disable-tqdm", "true"]
    model_args, data_args, run_args, training_args = train_parser().parse_args_into_dataclasses(options)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = train(model_args, data_args, training_args, run_args)
    return {"wall_s": round(time.perf_counter() - start, 1), **metrics}


def entity_starts(labels: list[str]) -> tuple[int, int]:
    """(entities, invalid ones): each B- starts one, and so does an I- that follows O or another type."""
    entities = invalid = 0
    for i, label in enumerate(labels):
        opens = label.startswith("I-") and (i == 0 or labels[i - 1][2:] != label[2:] or labels[i - 1] == "O")
        entities += label.startswith("B-") or opens
        invalid += opens
    return entities, invalid


def score(model_dir: Path, sentences: list[Any], decoding: str) -> dict[str, Any]:
    from hf_layer_tokclf.running.loading import load_model
    from hf_layer_tokclf.running.sentences import evaluate_sentences

    model, tokenizer = load_model(model_dir)
    scores, predictions = evaluate_sentences(model, tokenizer, sentences, decoding=decoding, progress=False)
    counts = [entity_starts(labels) for labels in predictions]
    return {
        "decoding": decoding,
        "f1": scores["f1"],
        "precision": scores["precision"],
        "recall": scores["recall"],
        "entities": sum(entities for entities, _ in counts),
        "invalid_entities": sum(invalid for _, invalid in counts),
        "invalid_sentences": sum(invalid > 0 for _, invalid in counts),
    }


def decode_timing(model_dir: Path, sentences: list[Any], rounds: int) -> dict[str, Any]:
    """Seconds of the forward pass and of each decoding over the test set, best of ``rounds`` interleaved."""
    from hf_layer_tokclf.running.decoding import label_decoder, word_labels
    from hf_layer_tokclf.running.features import encode, word_rows
    from hf_layer_tokclf.running.loading import load_model
    from hf_layer_tokclf.running.logits import default_max_length, window_logits

    model, tokenizer = load_model(model_dir)
    features = encode(sentences, tokenizer, max_length=default_max_length(model, tokenizer))
    lengths = [len(s.tokens) for s in sentences]
    decoder = label_decoder(model)
    times: dict[str, list[float]] = {"forward": [], "viterbi": [], "argmax": []}
    for _ in range(rounds):
        start = time.perf_counter()
        logits = window_logits(model, tokenizer, features, 32)
        times["forward"].append(time.perf_counter() - start)
        rows = word_rows(features, logits, lengths)
        for decoding in ("viterbi", "argmax"):
            start = time.perf_counter()
            word_labels(rows, model.config.id2label, decoding=decoding, decoder=decoder)
            times[decoding].append(time.perf_counter() - start)
    best = {name: min(values) for name, values in times.items()}
    return {
        **{f"{name}_s": round(value, 4) for name, value in best.items()},
        "viterbi_fraction": best["viterbi"] / best["forward"],
        "argmax_fraction": best["argmax"] / best["forward"],
        "sentences": len(sentences),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 training sentences, 1 epoch: a smoke run.")
    parser.add_argument("--rounds", type=int, default=5, help="Timing rounds (the best one counts).")
    parser.add_argument("--output-dir", default=str(RESULTS_DIR))
    args = parser.parse_args()
    os.chdir(REPO)  # the main-job options name data/ relative to the repository
    base = main_job_argv() + (["--max-train-samples", "500", "--num-train-epochs", "1"] if args.quick else [])
    test = ncbi_sentences("test.tsv")
    rows, timings = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("softmax head (the main job)", []), ("CRF head (--crf)", ["--crf"])):
            print(f"training the {name} ...", file=sys.stderr, flush=True)
            folder = Path(tmp) / ("crf" if extra else "softmax")
            trained = train_model([*base, *extra], folder)
            for decoding in ("argmax", "viterbi"):
                rows.append({"model": name, "wall_s": trained["wall_s"], **score(folder, test, decoding)})
                print(rows[-1], file=sys.stderr, flush=True)
            timings[name] = decode_timing(folder, test, args.rounds)
    command = "python -m benchmarks.decoding " + shlex.join(sys.argv[1:])
    lines = [
        "# Valid entities on NCBI-disease test (packaged MiniLM, the main job's settings)",
        "",
        f"Command: `{command.strip()}`. Options of both runs: `{shlex.join(base)}` (the CRF run adds `--crf`).",
        "",
        *md_table(
            "model | decoding | test F1 | precision | recall | entities | invalid entities | sentences with one",
            "| {model} | {decoding} | {f1:.2fp} | {precision:.2fp} | {recall:.2fp} | {entities} | {invalid_entities} "
            "| {invalid_sentences} |",
            rows,
            left=2,
        ),
        "",
        "Decoding time over the test set's word scores, against the forward pass over its windows "
        f"(best of {args.rounds} interleaved rounds, {len(test)} sentences):",
        "",
        *md_table(
            "model | forward (s) | Viterbi (s) | Viterbi / forward | argmax / forward",
            "| {model} | {forward_s:.3f} | {viterbi_s:.4f} | {viterbi_fraction:.3f} | {argmax_fraction:.3f} |",
            [{"model": name, **t} for name, t in timings.items()],
        ),
        "",
        f"Target: Viterbi under {TARGET:.0%} of the forward pass: "
        + ", ".join(f"{name} {'PASS' if t['viterbi_fraction'] < TARGET else 'FAIL'}" for name, t in timings.items())
        + ".",
    ]
    facts = machine_facts()
    lines += ["", machine_line(facts)]
    data = {"command": command, "options": base, "runs": rows, "timings": timings, "machine": facts}
    write_results(Path(args.output_dir), "decoding", "\n".join(lines) + "\n", data)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

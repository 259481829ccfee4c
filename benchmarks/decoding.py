"""Valid entities, measured: the main job's model on NCBI-disease test with argmax and with constrained Viterbi
decoding, a CRF head trained with the same settings, and decoding time against the forward pass.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import common

TARGET = 0.05  # decoding under 5% of the forward pass


def entity_starts(labels: list[str]) -> tuple[int, int]:
    """(entities, invalid ones): each B- starts one, and so does an I- that follows O or another type."""
    entities = invalid = 0
    for i, label in enumerate(labels):
        opens = label.startswith("I-") and (i == 0 or labels[i - 1][2:] != label[2:] or labels[i - 1] == "O")
        entities += label.startswith("B-") or opens
        invalid += opens
    return entities, invalid


def score(model_dir: Path, sentences: list[Any], decoding: str) -> dict[str, Any]:
    """Entity scores of one decoding, and how many entities and sentences IOB2 does not allow."""
    from hf_layer_tokclf.running.loading import load_model
    from hf_layer_tokclf.running.sentences import evaluate_sentences

    model, tokenizer = load_model(model_dir)
    scores, predictions = evaluate_sentences(model, tokenizer, sentences, decoding=decoding, progress=False)
    counts = [entity_starts(labels) for labels in predictions]
    found = {"decoding": decoding, **{key: scores[key] for key in ("f1", "precision", "recall")}}
    found |= {"entities": sum(entities for entities, _ in counts), "invalid_entities": sum(i for _, i in counts)}
    return found | {"invalid_sentences": sum(invalid > 0 for _, invalid in counts)}


def decode_timing(model_dir: Path, sentences: list[Any], rounds: int) -> dict[str, Any]:
    """Seconds of the forward pass and of each decoding over the test set, best of ``rounds`` interleaved."""
    from hf_layer_tokclf.running.decoding import label_decoder, word_labels
    from hf_layer_tokclf.running.features import encode, word_rows
    from hf_layer_tokclf.running.loading import load_model
    from hf_layer_tokclf.running.logits import default_max_length, window_logits

    model, tokenizer = load_model(model_dir)
    features = encode(sentences, tokenizer, max_length=default_max_length(model, tokenizer))
    lengths, decoder = [len(s.tokens) for s in sentences], label_decoder(model)
    times: dict[str, list[float]] = {"forward": [], "viterbi": [], "argmax": []}
    for _ in range(rounds):
        logits, seconds = common.timed(lambda: window_logits(model, tokenizer, features, 32))
        times["forward"].append(seconds)
        rows = word_rows(features, logits, lengths)
        for decoding in ("viterbi", "argmax"):
            decode = partial(word_labels, rows, model.config.id2label, decoding=decoding, decoder=decoder)
            times[decoding].append(common.timed(decode)[1])
    best = {name: min(values) for name, values in times.items()}
    found = {f"{name}_s": round(value, 4) for name, value in best.items()}
    found |= {f"{name}_fraction": best[name] / best["forward"] for name in ("viterbi", "argmax")}
    return found | {"sentences": len(sentences), "rounds": rounds}


def report(data: dict[str, Any]) -> str:
    timings = data["timings"]
    some = next(iter(timings.values()))
    verdicts = ", ".join(f"{name} {common.pass_fail(t['viterbi_fraction'] < TARGET)}" for name, t in timings.items())
    lines = [
        "# Valid entities on NCBI-disease test (packaged MiniLM, the main job's settings)",
        "",
        f"Command: `{data['command']}`. Options of both runs: `{shlex.join(data['options'])}` (the CRF run adds "
        "`--crf`).",
        "",
        *common.md_table(
            "model | decoding | test F1 | precision | recall | entities | invalid entities | sentences with one",
            "| {model} | {decoding} | {f1:.2fp} | {precision:.2fp} | {recall:.2fp} | {entities} | {invalid_entities} "
            "| {invalid_sentences} |",
            data["runs"],
            left=2,
        ),
        "",
        f"Decoding time against the forward pass (best of {some['rounds']} rounds, {some['sentences']} sentences):",
        "",
        *common.md_table(
            "model | forward (s) | Viterbi (s) | Viterbi / forward | argmax / forward",
            "| {model} | {forward_s:.3f} | {viterbi_s:.4f} | {viterbi_fraction:.3f} | {argmax_fraction:.3f} |",
            [{"model": name, **t} for name, t in timings.items()],
        ),
        "",
        f"Target: Viterbi under {TARGET:.0%} of the forward pass: {verdicts}.",
    ]
    return "\n".join(lines)


def measure(args: Any) -> dict[str, Any]:
    os.chdir(common.REPO)  # the main-job options name data/ relative to the repository
    base, test = common.main_job_argv(args.quick), common.ncbi_sentences("test.tsv")
    runs, timings = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("softmax head (the main job)", []), ("CRF head (--crf)", ["--crf"])):
            print(f"training the {name} ...", file=sys.stderr, flush=True)
            folder = Path(tmp) / ("crf" if extra else "softmax")
            wall_s = common.train_cli([*base, *extra], folder)["wall_s"]
            runs += [{"model": name, "wall_s": wall_s, **score(folder, test, d)} for d in ("argmax", "viterbi")]
            timings[name] = decode_timing(folder, test, args.rounds)
    return {"options": base, "runs": runs, "timings": timings}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    rounds = {"--rounds": {"type": int, "default": 5, "help": "Timing rounds (the best one counts)."}}
    quick = "500 training sentences, 1 epoch: a smoke run."
    return common.run_and_publish("benchmarks.decoding", __doc__, measure, report, argv, rounds, quick)


if __name__ == "__main__":
    main()

"""Entity-level precision, recall and F1 with seqeval, as transformers' ``run_ner.py`` reports them.

seqeval's default mode is compatible with the CoNLL ``conlleval`` script: an entity counts as
found only if its type and both boundaries are right. The numbers match the ``seqeval`` metric of
`evaluate` (``overall_precision`` ... ``overall_accuracy``) that ``run_ner.py`` uses.
"""

import warnings
from collections.abc import Sequence
from typing import Any

from seqeval.metrics import accuracy_score, classification_report

__all__ = ["entity_scores", "format_scores"]

# classification_report's averages; every other key of its dict is an entity type.
_AVERAGES = ("micro avg", "macro avg", "weighted avg")


def _check_shapes(true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
    if len(true) != len(pred):
        raise ValueError(f"{len(true)} true sentences but {len(pred)} predicted ones")
    for index, (true_labels, pred_labels) in enumerate(zip(true, pred, strict=True)):
        if len(true_labels) != len(pred_labels):
            raise ValueError(f"sentence {index}: {len(true_labels)} true labels but {len(pred_labels)} predicted ones")


def entity_scores(true: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
    """Entity-level scores of predicted label sequences against the true ones.

    Returns:
        ``{"precision", "recall", "f1", "accuracy", "per_type"}``: micro-averaged entity precision,
        recall and F1, token accuracy, and ``per_type[TYPE] = {"precision", "recall", "f1",
        "support"}`` with ``support`` the number of true entities. All scores are Python floats
        in 0..1; a score with a zero denominator is 0.0.

    Raises:
        ValueError: the lists disagree in the number of sentences or a sentence's length.
    """
    _check_shapes(true, pred)
    with warnings.catch_warnings():
        # Without any entity, numpy warns about the (unused) macro average of nothing.
        warnings.simplefilter("ignore", RuntimeWarning)
        # zero_division=0 gives what seqeval's "warn" gives, without the warning for absent types.
        report = classification_report(true, pred, output_dict=True, zero_division=0)
    overall = report["micro avg"]
    per_type = {
        kind: {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
        }
        for kind, row in sorted(report.items())
        if kind not in _AVERAGES
    }
    return {
        "precision": float(overall["precision"]),
        "recall": float(overall["recall"]),
        "f1": float(overall["f1-score"]),
        "accuracy": float(accuracy_score(true, pred)),
        "per_type": per_type,
    }


def format_scores(scores: dict[str, Any]) -> str:
    """Renders `entity_scores` as a fixed-width table, in percent with 2 decimals.

    One row per entity type, then an ``overall`` row (support = all true entities), then the
    token accuracy.
    """
    per_type = scores.get("per_type", {})
    width = max([len("overall"), len("type"), *(len(kind) for kind in per_type)])
    header = f"{'type':<{width}}  {'precision':>9}  {'recall':>9}  {'F1':>9}  {'support':>9}"

    def row(name: str, values: dict[str, Any], support: int) -> str:
        return (
            f"{name:<{width}}  {100 * values['precision']:>9.2f}  {100 * values['recall']:>9.2f}  "
            f"{100 * values['f1']:>9.2f}  {support:>9d}"
        )

    lines = [header, "-" * len(header)]
    lines += [row(kind, values, values["support"]) for kind, values in per_type.items()]
    if per_type:
        lines.append("-" * len(header))
    lines.append(row("overall", scores, sum(values["support"] for values in per_type.values())))
    if "accuracy" in scores:
        lines.append(f"token accuracy: {100 * scores['accuracy']:.2f}")
    return "\n".join(lines)

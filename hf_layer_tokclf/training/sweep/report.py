"""The output files of a sweep: the Markdown table, the JSON and the plot of F1 and cost per layer (`write_sweep`);
a multi-task sweep's have a part per task (a table, a JSON entry and a panel of the plot each)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ...base.extras import install_line
from ...base.files import OutputExistsError, atomic_writer, write_json
from ...base.niceties import optional_step
from .result import SweepResult, TaskSweepResult

# Output file names, in the output directory.
TABLE_FILE, JSON_FILE, PLOT_FILE = "sweep.md", "sweep.json", "sweep.png"


def write_sweep(
    result: SweepResult | TaskSweepResult, output_dir: str | Path, *, overwrite: bool = False, plot: bool = True
) -> dict[str, Path]:
    """Writes ``sweep.md`` (the table), ``sweep.json`` and ``sweep.png`` (the plot) in ``output_dir``, each atomically.

    A `TaskSweepResult` writes a table and a plot panel per task, and its JSON (`TaskSweepResult.to_json`).

    Existing files of those names are refused unless ``overwrite``. ``plot=False`` writes no plot; without
    matplotlib (`run_sweep` refuses that first), or when plotting fails, the plot is skipped with a warning
    (`niceties.optional_step`). Returns the paths written, and only those.
    """
    output_dir = Path(output_dir)
    paths = {"table": output_dir / TABLE_FILE, "json": output_dir / JSON_FILE}
    if plot:
        paths["plot"] = output_dir / PLOT_FILE
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise OutputExistsError(f"{path} already exists; pass --overwrite-output-dir to replace it.")
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_table(result, paths["table"])
    write_json(paths["json"], result.to_json())
    if not plot:
        return paths
    plotted = False
    with optional_step(f"the plot {paths['plot']} ({install_line('plot')} for matplotlib)"):
        _plot(result, paths["plot"])
        plotted = True
    if not plotted:  # the table and the JSON hold every figure; the plot is a view of them
        del paths["plot"]
    return paths


def _write_table(result: SweepResult | TaskSweepResult, path: Path) -> None:
    """``sweep.md``: a title, the table (one per task) and the command that trains at the recommended layer(s)."""
    first = _panels(result)[0][1]
    tasks = isinstance(result, TaskSweepResult)
    with atomic_writer(path) as f:
        f.write(f"# Layer sweep of {_model_label(first.model_name_or_path)}{', per task' if tasks else ''}\n\n")
        f.write(f"Model: `{first.model_name_or_path}`. Dev entity F1 of a linear probe on each frozen layer")
        f.write(" (and of fine-tuning, where run); relative cost = compute up to that layer / the full model.")
        if tasks:
            f.write(" Each task's probes learn from its own corpus, which the encoder read once.")
        f.write(f"\n\n{result.table()}\n")
        if result.train_command:
            what = "the joint model, each task at its recommended layer" if tasks else "at the recommended layer"
            f.write(f"\nTrain {what}:\n\n```bash\n{result.train_command}\n```\n")
        if tasks and result.finetune:
            f.write(f"\nThat joint model, fine-tuned: `{result.finetune['output_dir']}` (its dev F1 per task above).\n")


def _panels(result: SweepResult | TaskSweepResult) -> list[tuple[str | None, SweepResult]]:
    """The results to show, each with its task's name (`None` for a single corpus)."""
    if isinstance(result, TaskSweepResult):
        return list(result.results.items())
    return [(None, result)]


def _model_label(model_name_or_path: str) -> str:
    """A short name for titles: the folder or Hub id's last part (the packaged MiniLM by its name)."""
    from ..arguments import default_backbone

    if str(model_name_or_path) == default_backbone():
        return "all-MiniLM-L6-v2"
    return Path(str(model_name_or_path).rstrip("/")).name or str(model_name_or_path)


def _plot(result: SweepResult | TaskSweepResult, path: Path) -> None:
    """F1 (probe and fine-tuned) and relative cost against layer, with the tolerance band, a panel per task;
    PNG, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazily: matplotlib is optional and slow
    from matplotlib.figure import Figure

    panels = _panels(result)
    fig = Figure(figsize=(7.5, 4.5 * len(panels)), dpi=120)
    FigureCanvasAgg(fig)
    for row, (task, panel) in enumerate(panels, 1):
        ax = fig.add_subplot(len(panels), 1, row)
        cost_ax = ax.twinx()
        _plot_costs(cost_ax, panel)
        ax.set_zorder(cost_ax.get_zorder() + 1)
        ax.patch.set_visible(False)
        _plot_f1(ax, panel)
        what = f"Layer sweep of {_model_label(panel.model_name_or_path)}" + (f", task {task!r}" if task else "")
        ax.set_title(f"{what}: dev F1 and cost per layer", fontsize=11)
        handles, names = ax.get_legend_handles_labels()
        cost_handles, cost_names = cost_ax.get_legend_handles_labels()
        if task is None:  # below the axes, so it never hides a point
            fig.legend(
                handles + cost_handles, names + cost_names, loc="lower center", ncol=2, fontsize=8, frameon=False
            )
        else:  # each task's under its own panel: the recommended layer differs
            ax.legend(handles + cost_handles, names + cost_names, loc="upper center", bbox_to_anchor=(0.5, -0.15),
                      ncol=2, fontsize=8, frameon=False)  # fmt: skip
    rows = math.ceil(len(handles + cost_handles) / 2)
    if len(panels) == 1 and panels[0][0] is None:
        fig.tight_layout(rect=(0, 0.04 + 0.035 * rows, 1, 1))
    else:
        fig.tight_layout(h_pad=2.0 + 1.2 * rows)
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png")


def _plot_costs(cost_ax: Any, result: SweepResult) -> None:
    """The relative cost of every layer, as grey bars on the right-hand axis."""
    cost_ax.bar(result.layers, result.relative_cost.values(), width=0.6, color="0.85", label="relative compute cost")
    cost_ax.set_ylim(0, 1.05)
    cost_ax.set_ylabel("relative compute cost (full model = 1)")


def _plot_f1(ax: Any, result: SweepResult) -> None:
    """The tolerance band, probe and fine-tuned F1 and the recommended layer, on the left-hand axis."""
    layers = result.layers
    best = 100 * max(result.f1.values())
    ax.axhspan(
        best - result.tolerance,
        best,
        color="tab:green",
        alpha=0.12,
        lw=0,
        label=f"within {result.tolerance:g} F1 of best",
    )
    ax.plot(layers, [100 * result.f1[k] for k in layers], "o-", color="tab:blue", lw=2, label="linear probe (frozen)")
    if result.finetune:
        tuned = sorted(result.finetune)
        ax.plot(
            tuned,
            [100 * result.finetune[k]["f1"] for k in tuned],
            "s",
            color="tab:orange",
            ms=9,
            label="fine-tuned (encoder + head)",
        )
    k = result.recommended_layer
    ax.axvline(
        k,
        color="tab:red",
        ls="--",
        lw=1.2,
        label=f"recommended: layer {k} (F1 {100 * result.f1[k]:.1f}, cost {result.relative_cost[k]:.2f})",
    )
    scores = [100 * v for v in result.f1.values()] + [100 * v["f1"] for v in result.finetune.values()]
    low, high = min(scores), max(scores)
    margin = max(2.0, 0.08 * (high - low))
    ax.set_ylim(max(0.0, low - margin), min(100.0, high + margin))
    ax.set_xticks(layers)
    ax.set_xlabel("hidden layer (0 = embeddings)")
    ax.set_ylabel("dev entity F1 (%)")
    ax.grid(axis="y", alpha=0.3)

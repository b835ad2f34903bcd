"""The plots of an experiment summary: which :class:`~autometa.launch.figures.Figure` s
:func:`figures_of` makes of it, and their PNGs (:func:`write_plots`, matplotlib; the HTML
report draws the same figures with plotly, :mod:`autometa.launch.html_report`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from autometa.launch.figures import Figure
from autometa.trial.keys import finite_number

if TYPE_CHECKING:
    from autometa.launch.show import ExperimentSummary


def figures_of(summary: ExperimentSummary) -> list[Figure]:
    """Every plot of the experiment (:mod:`autometa.launch.figures`): the metric over trials
    and against each parameter, parameter importance, the hypergradient searcher's chains,
    hyperparameters learned during training, and a race's eliminations."""
    from autometa.launch import figures
    from autometa.launch.importance import MIN_TRIALS, main_effects

    logs = _log_scaled(summary.path)
    order = _trial_order(summary)
    table = summary.table.assign(_order=[order.get(t, i)
                                         for i, t in enumerate(summary.table["trial_id"])])
    table = table.sort_values("_order")
    metric = summary.metric
    values = [float(v) for v in table[metric]]
    endings = [figures.ended(d, e) for d, e in zip(table["diverged"], table["stopped_early"],
                                                    strict=True)]
    ids = [str(t) for t in table["trial_id"]]
    out = [figures.over_trials(values, endings, ids, metric, summary.mode)]
    columns = [c for c in table.columns if c.startswith("config/")]
    for column in columns:
        name = column[len("config/"):]
        fig = figures.against_parameter(name, table[column].tolist(), values, endings, ids,
                                        metric, summary.mode, name.replace("/", ".") in logs)
        if fig is not None:
            out.append(fig)
    full = [i for i, e in enumerate(endings) if e == figures.FINISHED]
    rows = full if len(full) >= MIN_TRIALS else list(range(len(values)))
    importance = main_effects({c[len("config/"):]: [table[c].iloc[i] for i in rows]
                               for c in columns}, [values[i] for i in rows])
    if importance is not None and len(importance.shares) > 1:
        fig = figures.importance_figure(importance.shares, importance.r2, importance.trials,
                                        importance.explained)
        if rows is not full:
            fig.note += "; trials stopped early included (too few ran to the end)"
        out.append(fig)
    if summary.chains:
        value_of = dict(zip(ids, values, strict=True))
        fig = figures.chain_figure(summary.chains, value_of, metric, summary.mode)
        if fig is not None:
            out.append(fig)
    ranked = [str(t) for t in summary.table["trial_id"]]
    for name, paths in sorted(summary.trajectories.items()):
        out.append(figures.trajectory_figure(name, paths, ranked))
    if summary.race_values and summary.candidates is not None \
            and "survivor" in summary.candidates:
        cand = summary.candidates
        varied = [c for c in cand.columns if c.startswith("config/")
                  and cand[c].astype(str).nunique() > 1]
        labels = [", ".join(f"{c[len('config/'):]}={_short(row[c])}" for c in varied)
                  for _, row in cand.iterrows()]
        out.append(figures.race_figure(
            summary.race_values,
            [None if v is None or v != v else int(v) for v in cand["eliminated_after"]],
            [bool(v) for v in cand["survivor"]], labels, metric))
    return out


def _short(value: Any) -> str:
    """A config value for a legend: numbers to four significant digits."""
    number = finite_number(value)
    return f"{number:.4g}" if number is not None and not isinstance(value, int) else str(value)


def write_plots(summary: ExperimentSummary, folder: str,
                figures: list[Figure] | None = None) -> list[str]:
    """Each of :func:`figures_of` (or ``figures``) as ``<name>.png`` in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    files = []
    for fig in figures_of(summary) if figures is None else figures:
        files.append(os.path.join(folder, f"{fig.name}.png"))
        canvas, ax = plt.subplots(figsize=(6.4, 4.4))
        _draw(ax, fig)
        canvas.tight_layout()
        canvas.savefig(files[-1], dpi=100)
        plt.close(canvas)
    return files


def _draw(ax: Any, fig: Figure) -> None:
    """One figure on a matplotlib axis."""
    from autometa.launch.figures import DIVERGED, EARLY

    for trace in fig.traces:
        label = trace.name if trace.legend else None
        color = {} if trace.group is None else {"color": f"C{trace.group % 10}"}
        if trace.style == "bars":
            ax.barh(trace.y, trace.x, label=None)
        elif trace.style == "lines":
            ax.plot(trace.x, trace.y, "-", lw=trace.width, label=label, **color)
        elif trace.ended == EARLY:  # hollow: a shorter training, stopped by a decision
            ax.plot(trace.x, trace.y, "o", mfc="none", color="grey", label=label)
        elif trace.ended == DIVERGED:
            ax.plot(trace.x, trace.y, "x", color="red", label=label)
        else:
            ax.plot(trace.x, trace.y, "o", label=label, **color)
    if fig.xlog:
        ax.set_xscale("log")
    if fig.ylog:
        ax.set_yscale("log")
    if fig.categories is not None:
        ax.set_xticks(range(len(fig.categories)), fig.categories, rotation=30)
    ax.set_xlabel(fig.xlabel)
    ax.set_ylabel(fig.ylabel)
    ax.set_title(fig.title + (f"\n{fig.note}" if fig.note else ""), fontsize=9)
    labelled = [t for t in fig.traces if t.legend and t.style != "bars"]
    if labelled and len(labelled) <= 12:
        ax.legend(fontsize=8)


def _log_scaled(path: str) -> set[str]:
    """Keys of the parameters drawn on a log scale, from the space copy ``autometa run`` left
    in the experiment folder (empty without one)."""
    from autometa.space import SpaceError, load_space

    try:
        space = load_space(os.path.join(path, "autometa_space.yaml"))
    except (SpaceError, OSError, ValueError):
        return set()
    return {p.key for p in space.parameters if getattr(p, "log", False)}


def _trial_order(summary: ExperimentSummary) -> dict[str, int]:
    # Tune names trials <trainable>_<id>_<counter>_...; fall back to table order.
    order = {}
    for name in os.listdir(summary.path):
        parts = name.split("_")
        for i, part in enumerate(parts[:-1]):
            if part in set(summary.table["trial_id"]) and parts[i + 1].isdigit():
                order[part] = int(parts[i + 1])
    return order

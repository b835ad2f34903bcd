"""What ``autometa show`` draws, as data: one :class:`Figure` per plot.

The PNG writer (matplotlib) and the HTML report (plotly) both draw these, so that a plot is
decided once: which trials it shows, how stopped-early and diverged trials are marked, and
where an axis is logarithmic. Pure Python and NumPy (no plotting library here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from autometa.trial.keys import finite_number

FINISHED, EARLY, DIVERGED = "finished", "stopped early", "diverged"
"""How a trial ended, as the plots mark it: filled, hollow grey, a red cross."""


@dataclass
class Trace:
    """One series of a plot.

    ``style``: ``markers``, ``lines`` or ``bars`` (horizontal; ``x`` are the lengths, ``y``
    the labels). ``ended``: how the trials of a markers trace ended (:data:`FINISHED`, ...).
    ``text``: per-point hover text (trial ids). ``width``: line width (a survivor's is wider).
    ``group``: traces of one group share a colour (a chain's points and its line).
    """

    x: list[Any]
    y: list[Any]
    name: str
    style: str = "markers"
    ended: str = FINISHED
    text: list[str] | None = None
    width: float = 1.5
    legend: bool = True
    group: int | None = None


@dataclass
class Figure:
    """One plot: ``name`` is its file stem (``<name>.png``), ``categories`` the x labels of a
    categorical axis (x values are their indices)."""

    name: str
    title: str
    xlabel: str
    ylabel: str
    traces: list[Trace] = field(default_factory=list)
    xlog: bool = False
    ylog: bool = False
    categories: list[str] | None = None
    note: str = ""


def log_axis(values: Any, declared: bool = False) -> bool:
    """Whether to plot ``values`` on a log axis: their finite values are all positive and
    either the parameter is drawn on a log scale (``declared``) or they span over a decade
    (a loss from 0.18 to 2.3 squeezes its good region on a linear axis)."""
    finite = [v for v in map(finite_number, values) if v is not None]
    if not finite or min(finite) <= 0:
        return False
    return declared or max(finite) / min(finite) > 10


def as_cell(value: Any) -> Any:
    """A config value as one cell of a plot or table: a list or mapping (a value of a choice)
    as its text, anything else as it is."""
    return repr(value) if isinstance(value, (list, dict, tuple)) else value


def ended(diverged: bool, early: bool) -> str:
    """How a trial ended, for the plots."""
    return DIVERGED if diverged else EARLY if early else FINISHED


def marked(xs: list[Any], values: list[float], endings: list[str], ids: list[str],
           metric: str, mode: str) -> list[Trace]:
    """The trials as points, one trace per way of ending. A diverged trial has no finite
    value: it is drawn at the worst finite value shown (the legend says so)."""
    finite = [v for v in values if math.isfinite(v)]
    worst = (max(finite) if mode == "min" else min(finite)) if finite else 0.0
    traces = []
    for how in (FINISHED, EARLY, DIVERGED):
        keep = [i for i, e in enumerate(endings) if e == how]
        if not keep:
            continue
        ys = [values[i] if how != DIVERGED else worst for i in keep]
        name = {FINISHED: metric, EARLY: f"{metric}, stopped early",
                DIVERGED: "diverged (drawn at the worst value)"}[how]
        traces.append(Trace([xs[i] for i in keep], ys, name, ended=how,
                            text=[ids[i] for i in keep]))
    return traces


def running_best(values: list[float], mode: str) -> list[float]:
    """The best finite value so far at each position (NaN before the first)."""
    out, best = [], math.nan
    for v in values:
        if math.isfinite(v) and (math.isnan(best) or (v < best if mode == "min" else v > best)):
            best = v
        out.append(best)
    return out


def over_trials(values: list[float], endings: list[str], ids: list[str], metric: str,
                mode: str) -> Figure:
    """The metric of each trial in start order, with the running best."""
    xs = list(range(1, len(values) + 1))
    fig = Figure("metric_over_trials", f"{metric} over trials", "trial (in start order)", metric,
                 marked(xs, values, endings, ids, metric, mode), ylog=log_axis(values))
    fig.traces.append(Trace(xs, running_best(values, mode), f"best so far ({mode})", "lines"))
    return fig


def against_parameter(name: str, column: list[Any], values: list[float], endings: list[str],
                      ids: list[str], metric: str, mode: str,
                      declared_log: bool = False) -> Figure | None:
    """The metric against one parameter (None when it took a single value). A list or
    mapping (a value of a choice) is drawn as its text, on a categorical axis."""
    cells = [as_cell(v) for v in column]
    if len({str(c) for c in cells}) <= 1:
        return None
    fig = Figure(f"metric_vs_{name.replace('/', '.')}", f"{metric} against {name}", name,
                 metric, ylog=log_axis(values))
    if all(finite_number(c) is not None for c in cells):
        xs = [float(c) for c in cells]
        fig.xlog = log_axis(xs, declared_log)
    else:
        labels = [str(c) for c in cells]
        fig.categories = sorted(set(labels))
        xs = [fig.categories.index(v) for v in labels]
    fig.traces = marked(xs, values, endings, ids, metric, mode)
    return fig


def chain_figure(chains: list[list[str]], value_of: dict[str, float], metric: str,
                 mode: str) -> Figure | None:
    """Each descent chain of the hypergradient searcher: the metric of its trials in the
    order the chain ran them, and the chain's best so far."""
    traces = []
    for number, trials in enumerate(chains):
        values = [value_of.get(t, math.nan) for t in trials]
        if not values:
            continue
        steps = list(range(1, len(values) + 1))
        traces.append(Trace(steps, values, f"chain {number}", "markers", text=list(trials),
                            legend=False, group=number))
        traces.append(Trace(steps, running_best(values, mode), f"chain {number}", "lines",
                            group=number))
    if not traces:
        return None
    every = [v for t in traces for v in t.y]
    return Figure("chains", f"{metric} along each hypergradient chain", "step of the chain",
                  metric, traces, ylog=log_axis(every),
                  note="points: each trial of the chain; lines: the chain's best so far")


def trajectory_figure(name: str, paths: dict[str, tuple[list[float], list[float]]],
                      order: list[str], most: int = 10) -> Figure:
    """One hyperparameter learned during training: its value over each trial's own steps,
    for the ``most`` best-ranked trials that changed it (``paths``: trial id -> (steps,
    values))."""
    shown = [t for t in order if t in paths][:most]
    traces = [Trace(*paths[t], name=t, style="lines") for t in shown]
    values = [v for t in traces for v in t.y]
    note = f"the {len(shown)} best of {len(paths)} trials" if len(paths) > len(shown) else ""
    return Figure(f"trajectory_{name}", f"{name} during training", "training iteration",
                  name, traces, ylog=log_axis(values), note=note)


def importance_figure(shares: dict[str, float], r2: float | None, trials: int,
                      explained: bool) -> Figure:
    """Each parameter's share of the metric's variance (see :mod:`autometa.launch.importance`),
    largest on top."""
    names = sorted(shares, key=shares.get)
    quality = ("" if r2 is None else f"; the surrogate's out-of-bag R^2 is {r2:.2f}")
    note = f"main effects of a random forest fitted to {trials} trials{quality}"
    if not explained:
        note += " (it explains little of the metric: read these shares as noise)"
    return Figure("importance", "parameter importance", "share of the metric's variance",
                  "", [Trace([shares[n] for n in names], names, "share", "bars")], note=note)


def race_figure(values: list[dict[int, float]], eliminated: list[int | None],
                survivors: list[bool], labels: list[str], metric: str) -> Figure:
    """A race: each candidate's mean over the instances it ran, instance after instance; a
    line ends where the race dropped the candidate, survivors are drawn wider."""
    traces = []
    for cells, out, alive, label in zip(values, eliminated, survivors, labels, strict=True):
        ks = sorted(cells)
        if out is not None:
            ks = ks[:out]
        if not ks:
            continue
        means, total = [], 0.0
        for i, k in enumerate(ks):
            total += cells[k]
            means.append(total / (i + 1))
        traces.append(Trace([i + 1 for i in range(len(ks))], means, label, "lines",
                            width=3.0 if alive else 1.0,
                            legend=alive))
    every = [v for t in traces for v in t.y]
    return Figure("race", f"mean {metric} of each candidate over the instances it ran",
                  "instances run", f"mean {metric}", traces, ylog=log_axis(every),
                  note="a line ends where the race dropped its candidate; survivors are wide")

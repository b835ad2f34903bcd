"""Reading a finished (or interrupted) experiment: best trials, best config, plots."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from autometa.launch.outcome import error_line
from autometa.trial.keys import (
    CONVERGED,
    HPARAM_PREFIX,
    POLICY_ENTROPY,
    POLICY_MOVED,
    POLICY_SNR,
    POLICY_STILL,
    finite_number,
)


@dataclass
class ExperimentSummary:
    """What ``autometa show`` prints and writes.

    Attributes:
        path: Experiment folder.
        metric, mode: What was optimized.
        table: One row per trial (pandas DataFrame), best first: ranked by the metric at the
            trial's last report (what training with that config for that long gives, as
            Tune's ``get_best_result``), with the best value it ever reported beside it;
            ``diverged`` (its last metric is NaN or infinite) and ``stopped_early`` (stopped
            by the scheduler or a stop rule before the longest trial's length).
        best_config: Config of the best trial; after a race, of the winning candidate
            (without the instance key).
        candidates: After a race (``race``/``irace``), one row per candidate: the mean of
            the metric over its instances and how many it ran, the survivors (most
            instances) first, then by mean; after a ``race``, also ``survivor`` and
            ``eliminated_after`` (instances it had run when the race dropped it); after
            ``irace``, ``survivor`` (alive in its last race, from its saved state), survivors
            first. None otherwise.
        ranked_by: The result key the trials were ranked by: the metric, or the hypergradient
            searcher's ``holdout_metric`` when the experiment set one (the descent follows
            the metric, so the metric of its best trial is biased low: the trial chosen is the
            one best on data the descent did not see).
        hypergrad_checks: ``(reports, failed, last_reports, last_failed)``: how many reports
            carried hypergradient checks (``hypergrad_converged``) and how many of them failed,
            over all reports and over each trial's last report (what a searcher reads); None
            when no trial reported any.
        race_end: After a ``race``, why it ended ("one candidate was left", ...), from
            replaying it on the results; after ``irace``, why it ended (its budget, over how
            many races), from its saved state; None otherwise (or while it runs).
        errors: Each distinct error of the failed trials (the last line of its ``error.txt``:
            the exception and its message) -> the ids of the trials that ended with it.
        trajectories: Hyperparameters a trial changed during its training (``hparams/<name>``
            taking several values in its reports): name -> trial id -> (training iterations,
            values).
        chains: After the hypergradient searcher, the trials of each descent chain in the
            order it ran them (from the searcher state Tune saved); None otherwise.
        searcher: The searcher's name in the saved experiment ("" when unknown).
        race_values: After a ``race``, each candidate's (rows of ``candidates``) metric on
            each instance it ran (instance position -> value); None otherwise.
    """

    path: str
    metric: str
    mode: str
    table: Any
    best_config: dict[str, Any]
    candidates: Any = None
    hypergrad_checks: tuple[int, int, int, int] | None = None
    ranked_by: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)
    race_end: str | None = None
    trajectories: dict[str, dict[str, tuple[list[float], list[float]]]] = field(
        default_factory=dict)
    chains: list[list[str]] | None = None
    race_values: list[dict[int, float]] | None = None
    searcher: str = ""

    def __post_init__(self) -> None:
        self.ranked_by = self.ranked_by or self.metric


def summarize(path: str, metric: str | None = None, mode: str | None = None,
              rank_by: str | None = None) -> ExperimentSummary:
    """Load the experiment in ``path`` and rank its trials by their last ``metric`` value.

    ``rank_by`` (default: the hypergradient searcher's ``holdout_metric``, when the saved
    experiment has one) ranks them by that key instead (same mode); trials without it last.

    Raises:
        FileNotFoundError: no Tune experiment in ``path``.
        ValueError: the metric is unknown or no trial reported it.
    """
    from ray.tune import ExperimentAnalysis

    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such folder")
    if not any(f.startswith("experiment_state") for f in os.listdir(path)):
        if os.path.isfile(os.path.join(path, "tuner.pkl")):
            raise FileNotFoundError(
                f"{path}: the run stopped before Tune first saved its state, so no results "
                f"were recorded; `autometa run FILE --resume` starts that search again")
        raise FileNotFoundError(f"{path}: not a Tune experiment folder (no experiment_state file)")
    with _quiet_missing_results():
        analysis = ExperimentAnalysis(path)
    saved = _saved_experiment(path)
    searched_metric, searched_mode = _searched_objective(path)
    metric = metric or analysis.default_metric or saved.get("metric") or searched_metric
    # an autometa run's file: mode min unless it says otherwise (as `autometa run` read it)
    mode = (mode or analysis.default_mode or saved.get("mode") or searched_mode
            or ("min" if saved else None))
    if not metric:
        raise ValueError("the experiment has no default metric: pass --metric")
    if mode is None:
        raise ValueError(f"the experiment does not say whether {metric!r} is minimized or "
                         f"maximized: pass --mode min or --mode max")
    searcher = saved.get("searcher")
    options = searcher if isinstance(searcher, dict) else {}
    rank_by = rank_by or options.get("holdout_metric") or metric
    rows, raws = [], []
    errors: dict[str, list[str]] = {}
    checks = [0, 0, 0, 0]
    trajectories: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for trial in analysis.trials:
        history = analysis.trial_dataframes.get(trial.trial_id)
        for name, learned in _learned(history).items():
            trajectories.setdefault(name, {})[trial.trial_id] = learned
        if history is not None and CONVERGED in history and len(history):
            flags = [finite_number(v) for v in history[CONVERGED].tolist()]
            flags = [f for f in flags if f is not None]
            checks[0] += len(flags)
            checks[1] += sum(f != 1.0 for f in flags)
            last = finite_number(history[CONVERGED].iloc[-1])
            if last is not None:
                checks[2] += 1
                checks[3] += last != 1.0
        values = [] if history is None or metric not in history else [
            v for v in map(finite_number, history[metric].tolist()) if v is not None]
        best = (min(values) if mode == "min" else max(values)) if values else math.nan
        last = history[metric].iloc[-1] if values else math.nan
        last = finite_number(last)
        last = math.nan if last is None else last
        held = {}
        if rank_by != metric:
            column = [] if history is None or rank_by not in history else history[rank_by]
            value = finite_number(column.iloc[-1]) if len(column) else None
            held = {rank_by: math.nan if value is None else value}
        reported = history is not None and len(history) > 0
        policy = {key: finite_number(history[key].iloc[-1]) for key in POLICY_KEYS
                  if reported and key in history}
        raw = history[metric].iloc[-1] if reported and metric in history else None
        raws.append(raw)
        error = error_line(os.path.join(trial.path, "error.txt"))
        if error:
            errors.setdefault(error, []).append(trial.trial_id)
        rows.append({"trial_id": trial.trial_id, metric: last, f"best_{metric}": best, **held,
                     "status": trial.status,
                     "iterations": 0 if history is None else len(history), **policy,
                     # the metric's last report is NaN or infinite (the stopper ended it)
                     "diverged": raw is not None and finite_number(raw) is None,
                     # its last report came with a stop (Tune marks it done)
                     "_stopped": reported and "done" in history
                                 and _true(history["done"].iloc[-1]),
                     **{f"config/{k}": v for k, v in _flatten(trial.config).items()}})
    import pandas as pd

    table = pd.DataFrame(rows)
    if not table.empty:  # stopped before the longest trial's length: early, by a decision
        table["stopped_early"] = table["_stopped"] & (table["iterations"]
                                                      < table["iterations"].max())
        table = table.drop(columns="_stopped")
    if table.empty or table[metric].isna().all():
        seen = [r for r in raws if r is not None]
        hint = (f" (a trial's last report had {metric}={seen[0]!r}, a {type(seen[0]).__name__}: "
                f"report a number)" if seen and isinstance(seen[0], str) else "")
        raise ValueError(f"no trial reported a finite {metric!r}{hint}")
    if rank_by != metric and table[rank_by].isna().all():
        rank_by = metric  # no trial reported it: say so below by ranking on the metric
    table = table.sort_values([rank_by, metric] if rank_by != metric else metric,
                              ascending=(mode == "min"), na_position="last")
    best_id = table.iloc[0]["trial_id"]
    best_config = next(t.config for t in analysis.trials if t.trial_id == best_id)
    candidates, race_end, race_values, chains = None, None, None, None
    from autometa.searchers import SEARCHERS, searcher_spec
    from autometa.searchers.specs import SearcherSpec

    name = searcher.get("name") if isinstance(searcher, dict) else searcher
    spec = searcher_spec(name) if name in SEARCHERS else SearcherSpec
    if spec.keeps_chains:
        saved_searcher = spec.load().saved_in(path)
        chains = saved_searcher.chain_trials() if saved_searcher is not None else None
    if spec.is_race:
        key = (searcher.get("instance_key") if isinstance(searcher, dict) else None) or "instance"
        candidates = race_candidates(table, metric, mode, key)
        if spec.replays_race:  # one F-race: replayed, it says who survived and why it ended
            budget = {"budget": options.get("budget", saved.get("num_samples"))}  # (as run)
            candidates, race_end, race_values = replay_outcome(
                table, candidates, metric, mode, key, {**options, **budget})
        else:  # irace: who survived its last race and why it ended, from its saved state
            candidates, race_end = irace_outcome(path, candidates)
        best_id = candidates.iloc[0]["trial_id"]
        best_config = {k: v for k, v in next(t.config for t in analysis.trials
                                             if t.trial_id == best_id).items() if k != key}
    return ExperimentSummary(path, metric, mode, table.reset_index(drop=True), best_config,
                             candidates, tuple(checks) if checks[0] else None, rank_by, errors,
                             race_end, trajectories, chains, race_values,
                             name if isinstance(name, str) else "")


def irace_outcome(path: str, candidates: Any) -> tuple[Any, str | None]:
    """The candidates with a ``survivor`` column (alive in irace's last race) and why irace
    ended, from the searcher state Tune saved in ``path``; unchanged and None without one."""
    from autometa.searchers.racing import IteratedRacingSearcher

    searcher = IteratedRacingSearcher.saved_in(path)
    if searcher is None:
        return candidates, None
    alive = [{f"config/{k.replace('.', '/')}": str(v) for k, v in flat.items()}
             for flat in searcher.survivors()]
    survivor = [any(all(c not in row or str(row[c]) == v for c, v in flat.items())
                    for flat in alive) for _, row in candidates.iterrows()]
    out = candidates.assign(survivor=survivor)
    out = out.sort_values("survivor", ascending=False, kind="stable").reset_index(drop=True)
    return out, searcher.end_reason()


def _learned(history: Any) -> dict[str, tuple[list[float], list[float]]]:
    """The ``hparams/<name>`` a trial's reports changed: name -> (iterations, values)."""
    if history is None or len(history) < 2:
        return {}
    steps = (history["training_iteration"].tolist() if "training_iteration" in history
             else list(range(1, len(history) + 1)))
    out = {}
    for column in history.columns:
        if not column.startswith(HPARAM_PREFIX):
            continue
        pairs = [(s, v) for s, v in zip(steps, map(finite_number, history[column].tolist()),
                                        strict=True) if v is not None]
        if len({v for _, v in pairs}) > 1:
            xs, ys = zip(*pairs, strict=True)
            out[column[len(HPARAM_PREFIX):]] = (list(xs), list(ys))
    return out


POLICY_KEYS = (POLICY_MOVED, POLICY_ENTROPY, POLICY_STILL, POLICY_SNR)
"""A learned augmentation policy's diagnostics, read from each trial's last report."""


def replay_outcome(table: Any, candidates: Any, metric: str, mode: str, instance_key: str,
                   options: dict[str, Any]) -> tuple[Any, str | None, list[dict[int, float]]]:
    """The candidates with ``survivor`` and ``eliminated_after`` (instances) columns, why
    the race ended, from replaying it on the trials' results (:func:`replay_race`), and each
    candidate's finite metric by instance position."""
    from autometa.racing.race import RaceSettings, replay_race

    defaults = {"min_instances": 5, "max_instances": 10, "alpha": 0.05, "test": "friedman"}
    try:
        settings = RaceSettings(**{k: options.get(k, v) for k, v in defaults.items()})
    except (TypeError, ValueError):
        return candidates, None, []
    order = list(options.get("instances") or range(settings.max_instances))
    columns = [c for c in table.columns
               if c.startswith("config/") and c != f"config/{instance_key}"]
    ids = {tuple(map(str, row)): i for i, row in
           enumerate(candidates[columns].itertuples(index=False, name=None))}
    values: list[dict[int, float]] = [{} for _ in ids]
    raw: list[dict[int, float]] = [{} for _ in ids]
    sign = 1.0 if mode == "min" else -1.0
    for _, cells in table.iterrows():
        candidate = ids.get(tuple(str(cells[c]) for c in columns))
        instance = cells.get(f"config/{instance_key}")
        if candidate is None or instance not in order:
            continue
        value = finite_number(cells[metric])
        values[candidate][order.index(instance)] = math.inf if value is None else sign * value
        if value is not None:
            raw[candidate][order.index(instance)] = value
    race = replay_race(values, settings, options.get("budget"))
    out = candidates.assign(survivor=[i in race.alive for i in range(len(values))],
                            eliminated_after=[race.eliminated.get(i) for i in range(len(values))])
    return out, race.end_reason, raw


def _true(value: Any) -> bool:
    """A boolean cell that is True (NumPy's bool too; a missing cell, NaN, is not)."""
    import numpy as np

    return isinstance(value, (bool, np.bool_)) and bool(value)


class MissingResults(logging.Filter):
    """Drops Tune's "Failed to fetch metrics ... FileNotFoundError" for trials whose results
    never reached the folder (a run stopped before Tune copied them there): such a trial has
    0 iterations in the summary."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Could not fetch metrics" not in record.getMessage()


@contextlib.contextmanager
def _quiet_missing_results() -> Iterator[None]:
    log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    quiet = MissingResults()
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)


def race_candidates(table: Any, metric: str, mode: str, instance_key: str) -> Any:
    """One row per raced candidate (trials grouped by config without the instance key)."""
    columns = [c for c in table.columns
               if c.startswith("config/") and c != f"config/{instance_key}"]
    keyed = table.assign(_candidate=table[columns].astype(str).agg("|".join, axis=1))
    grouped = keyed.groupby("_candidate", sort=False)
    out = grouped.agg(trial_id=("trial_id", "first"), mean=(metric, "mean"),
                      instances=(metric, "size"), **{c: (c, "first") for c in columns})
    out = out.rename(columns={"mean": f"mean_{metric}"})
    out = out.sort_values(["instances", f"mean_{metric}"], ascending=[False, mode == "min"])
    return out.reset_index(drop=True)


def _searched_objective(path: str) -> tuple[str | None, str | None]:
    """The metric and mode a plain Tune experiment was run with: the metric from Tune's saved
    controller state, the mode (and metric) from an autometa searcher's saved state."""
    import glob
    import json

    from autometa.searchers.base import SpaceSearcher

    metric, mode = SpaceSearcher.saved_objective(path)
    states = sorted(glob.glob(os.path.join(path, "experiment_state-*.json")))
    if metric is None and states:
        try:
            with open(states[-1]) as handle:
                saved = json.load(handle).get("runner_data", {}).get("_metric")
        except (OSError, ValueError, AttributeError):
            saved = None
        metric = saved if isinstance(saved, str) and saved and saved != "None" else None
    return metric, mode


def _saved_experiment(path: str) -> dict[str, Any]:
    file = os.path.join(path, "autometa_space.yaml")
    if not os.path.exists(file):
        return {}
    with open(file) as handle:
        doc = yaml.safe_load(handle) or {}
    return doc.get("experiment") or {}


def write_best_config(summary: ExperimentSummary, file: str) -> None:
    """Write the best config as YAML."""
    with open(file, "w") as handle:
        yaml.safe_dump(summary.best_config, handle, sort_keys=False)


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out

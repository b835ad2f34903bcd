"""Checking an experiment against the registries, before anything starts.

Everything a run needs is resolved here (searcher, scheduler, trainable,
resources) so that a bad file fails in ``autometa validate`` with the key path
and line, never half-way through a search. Ray is not started here (its searcher and
scheduler classes are built once to check their options, and a ``module:function``
trainable is imported, as the run will).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, replace
from typing import Any

from autometa.space import Component, Experiment, Space, SpaceError


@dataclass
class Overrides:
    """Command-line overrides of the file's ``experiment`` section."""

    searcher: str | None = None
    scheduler: str | None = None
    num_samples: int | None = None
    storage_path: str | None = None
    name: str | None = None
    resources: dict[str, float] | None = None


def plan_experiment(space: Space, overrides: Overrides | None = None,
                    need_trainable: bool = True) -> Experiment:
    """The experiment to run, with overrides applied and every name checked.

    Raises:
        SpaceError: naming the file, key path and line of what is wrong.
    """
    from autometa.schedulers import POPULATION_SCHEDULERS, REQUIRED_SEARCHER, SCHEDULERS, scheduler_options
    from autometa.searchers import SEARCHERS, searcher_options

    exp = copy.deepcopy(space.experiment) if space.experiment is not None else Experiment()
    o = overrides or Overrides()
    if o.searcher and o.searcher != exp.searcher.name:
        exp.searcher = Component(o.searcher)  # the file's options belong to its own searcher
    if o.scheduler and (exp.scheduler is None or o.scheduler != exp.scheduler.name):
        exp.scheduler = Component(o.scheduler)
    exp = replace(exp, num_samples=o.num_samples or exp.num_samples,
                  storage_path=o.storage_path or exp.storage_path, name=o.name or exp.name)
    if o.resources is not None:
        from autometa.space.experiment import check_resources

        try:
            exp.resources_per_trial = check_resources(o.resources, ("--resources",))
        except SpaceError as err:
            raise ValueError(str(err)) from None
    if exp.scheduler is None:
        exp.scheduler = Component("bohb" if exp.searcher.name == "bohb" else "fifo")

    where = ("experiment",)
    if exp.searcher.name not in SEARCHERS:
        problem = f"unknown searcher {exp.searcher.name!r}; expected one of {sorted(SEARCHERS)}"
        if o.searcher:  # the command line's, not the file's
            raise ValueError(f"--searcher: {problem}")
        raise space.error(problem, *where, "searcher")
    _check_options(space, exp.searcher, searcher_options(exp.searcher.name), "searcher")
    if exp.scheduler.name not in SCHEDULERS:
        problem = (f"unknown scheduler {exp.scheduler.name!r}; expected one of "
                   f"{sorted(SCHEDULERS)}")
        if o.scheduler:
            raise ValueError(f"--scheduler: {problem}")
        raise space.error(problem, *where, "scheduler")
    _check_options(space, exp.scheduler, scheduler_options(exp.scheduler.name), "scheduler")
    required = REQUIRED_SEARCHER.get(exp.scheduler.name)
    if required and exp.searcher.name != required:
        raise space.error(f"the {exp.scheduler.name} scheduler works only with the {required} "
                          f"searcher, not {exp.searcher.name!r}", *where, "scheduler")
    if exp.scheduler.name in POPULATION_SCHEDULERS:
        if exp.searcher.name != "random":
            raise space.error(f"the {exp.scheduler.name} scheduler changes configs itself and takes "
                              "no searcher: use searcher: random (the initial population is drawn "
                              "at random)", *where, "searcher")
        if space.forbidden:
            raise space.error(f"the {exp.scheduler.name} scheduler cannot enforce forbidden "
                              "combinations (its population is drawn by Tune)", "forbidden")
    if exp.searcher.name in ("race", "irace"):
        key = exp.searcher.options.get("instance_key", "instance")
        if key in {p.key for p in space.searchable()}:
            raise space.error(f"the instance key {key!r} is a searchable parameter; the race sets "
                              "it per trial (make it a constant or leave it out)", "parameters",
                              key)
    if (exp.searcher.name == "hypergradient" and exp.searcher.options.get("base") == "bohb"
            and exp.scheduler.name != "bohb"):
        raise space.error("the hypergradient searcher with base: bohb needs the bohb scheduler "
                          "(its base model learns from HyperBandForBOHB's budgets)", *where,
                          "scheduler")
    if exp.searcher.name == "bohb" and exp.scheduler.name != "bohb":
        raise space.error("the bohb searcher needs the bohb scheduler (HyperBandForBOHB), which "
                          "gives it the budgets its model is built on", *where, "scheduler")
    if exp.searcher.name == "bohb":
        try:
            from autometa.convert.configspace import to_configspace

            to_configspace(space)
        except ValueError as err:
            raise space.error(str(err), "parameters") from None
    if need_trainable:
        if not exp.trainable:
            raise space.error("missing key 'trainable' (a built-in name such as digits_mlp, or "
                              "'module:function')", *where)
        if not exp.metric:
            raise space.error("missing key 'metric' (the result key to optimize)", *where)
    if exp.trainable:
        from autometa.trainables import TRAINABLES, resolve_trainable

        if exp.trainable not in TRAINABLES and ":" not in exp.trainable:
            raise space.error(f"unknown trainable {exp.trainable!r}: use a built-in name "
                              f"({', '.join(sorted(TRAINABLES))}) or 'module:function'",
                              *where, "trainable")
        if exp.trainable not in TRAINABLES:  # import it now, as the run will
            near = [os.path.dirname(os.path.abspath(space.source))] if space.source else []
            try:
                resolve_trainable(exp.trainable, near)
            except ValueError as err:
                raise space.error(str(err), *where, "trainable") from None
    _check_location(space, exp)
    _check_searcher(space, exp)
    if exp.scheduler.name in SYNCHRONOUS_HYPERBAND:
        _fill_brackets(space, exp)
    _check_scheduler(space, exp)
    if not exp.name:
        exp.name = "autometa"
    return exp


SYNCHRONOUS_HYPERBAND = ("hyperband", "bohb")


def _fill_brackets(space: Space, exp: Experiment) -> None:
    """Let one Hyperband band's trials be in flight at once (see ``schedulers.brackets``)."""
    import inspect

    from autometa.schedulers import scheduler_class
    from autometa.schedulers.brackets import hyperband_bracket_sizes

    defaults = inspect.signature(scheduler_class(exp.scheduler.name).__init__).parameters
    opts = scheduler_defaults(exp)
    max_t = opts.get("max_t", defaults["max_t"].default)
    eta = opts.get("reduction_factor", defaults["reduction_factor"].default)
    try:
        sizes = hyperband_bracket_sizes(max_t, eta)
    except (TypeError, ValueError) as err:
        raise space.error(f"bad Hyperband settings: {err}", "experiment", "scheduler") from None
    needed = sum(sizes)
    if exp.max_concurrent_trials is None:
        exp.max_concurrent_trials = needed  # trials beyond the free resources wait
    elif exp.max_concurrent_trials < needed:
        raise space.error(
            f"the {exp.scheduler.name} scheduler (Tune's synchronous Hyperband, max_t {max_t}, "
            f"reduction_factor {eta}) stops trials only once a bracket's trials are all in "
            f"flight, {needed} for its brackets of {' + '.join(map(str, sizes))} trials; with "
            f"max_concurrent_trials {exp.max_concurrent_trials} its brackets do not fill and "
            f"trials are not stopped. Use max_concurrent_trials >= {needed} (trials "
            "beyond the free CPUs/GPUs wait; paused ones resume from their checkpoints), a "
            "smaller max_t, or the asha scheduler", "experiment", "max_concurrent_trials")


def _check_searcher(space: Space, exp: Experiment) -> None:
    """Build the searcher once (its constructor checks its options) and check its
    ``points_to_evaluate`` against the space, so that neither fails after Ray started."""
    import numpy as np

    from autometa.searchers import make_searcher

    where = ("experiment", "searcher")
    try:
        searcher = make_searcher(exp.searcher.name, space, metric=exp.metric or "metric",
                                 mode=exp.mode or "min", seed=exp.seed, **exp.searcher.options)
    except (TypeError, ValueError) as err:
        if str(err).startswith("seed "):
            raise space.error(str(err), "experiment", "seed") from None
        raise space.error(f"{exp.searcher.name}: {err}", *where) from None
    points = exp.searcher.options.get("points_to_evaluate") or []
    rng = np.random.default_rng(0)
    for i, point in enumerate(points):
        try:
            searcher.checked_point(point, f"points_to_evaluate[{i}]", rng)
        except ValueError as err:
            raise space.error(str(err).split(": ", 1)[1], *where, "points_to_evaluate",
                              i) from None


def _check_location(space: Space, exp: Experiment) -> None:
    """The results folder: ``storage_path`` is (or can be) a folder, ``name`` one folder in it."""
    name = exp.name or "autometa"
    if name in (".", "..") or "/" in name or "\\" in name or name != name.strip():
        raise space.error(f"name {name!r} must be one folder name (no '/', '..' or spaces "
                          "around it): results go to storage_path/name", "experiment", "name")
    path = os.path.abspath(os.path.expanduser(exp.storage_path))
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    if path and not os.path.isdir(path):
        raise space.error(f"storage_path {exp.storage_path!r}: {path} is a file, not a folder",
                          "experiment", "storage_path")


def _check_scheduler(space: Space, exp: Experiment) -> None:
    """Build the scheduler once: the values Ray's schedulers assert on (``grace_period: -1``,
    ``reduction_factor: 1``, ...) become file errors instead of tracebacks after Ray started."""
    from autometa.schedulers import make_scheduler

    try:
        make_scheduler(exp.scheduler.name, space=space, seed=exp.seed, **scheduler_defaults(exp))
    except (AssertionError, TypeError, ValueError) as err:
        problem = str(err).strip() or f"{type(err).__name__} from Ray (an option's value)"
        raise space.error(f"{exp.scheduler.name}: {problem}; options: "
                          f"{exp.scheduler.options}", "experiment", "scheduler") from None


def _check_options(space: Space, comp: Component, allowed: list[str], kind: str) -> None:
    from autometa.registry import check_options

    try:
        check_options(kind, comp.name, comp.options, allowed)
    except ValueError as err:
        bad = next(k for k in comp.options if k not in allowed)
        raise space.error(str(err), "experiment", kind, bad) from None


def scheduler_defaults(exp: Experiment) -> dict[str, Any]:
    """Options a scheduler gets from the rest of the experiment (``max_t`` from ``stop``)."""
    opts = dict(exp.scheduler.options)
    limit = exp.stop.get("training_iteration")
    if exp.scheduler.name in ("asha", "hyperband", "bohb") and "max_t" not in opts and limit:
        opts["max_t"] = int(limit)
    return opts


__all__ = ["Overrides", "SpaceError", "plan_experiment", "scheduler_defaults"]

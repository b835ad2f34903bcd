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
                    need_trainable: bool = True, build: bool = True) -> Experiment:
    """The experiment to run, with overrides applied and every name checked.

    Every option is checked against its searcher's and scheduler's declaration
    (:mod:`autometa.options`), which imports no Ray. With ``build`` the searcher and scheduler
    are then built once too, as the run will build them (this imports Ray; ``autometa
    validate`` does not, and the fuzz suite checks that both come to the same verdict).

    Raises:
        SpaceError: naming the file, key path and line of what is wrong.
    """
    from autometa.schedulers import SCHEDULERS, scheduler_for, scheduler_spec
    from autometa.searchers import SEARCHERS, searcher_name, searcher_spec

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
    where = ("experiment",)
    if exp.searcher.name not in SEARCHERS:
        problem = f"unknown searcher {exp.searcher.name!r}; expected one of {sorted(SEARCHERS)}"
        if o.searcher:  # the command line's, not the file's
            raise ValueError(f"--searcher: {problem}")
        raise space.error(problem, *where, "searcher")
    searcher = searcher_spec(exp.searcher.name)
    searcher_values = _check_options(space, exp.searcher, searcher, "searcher")
    found = searcher.against_space(searcher_values, space)
    if found:
        raise space.error(f"{exp.searcher.name}: {found[1]}", *where, "searcher",
                          *([found[0]] if found[0] in exp.searcher.options else []))
    if exp.scheduler is None:
        exp.scheduler = Component(scheduler_for(searcher))
    if exp.scheduler.name not in SCHEDULERS:
        problem = (f"unknown scheduler {exp.scheduler.name!r}; expected one of "
                   f"{sorted(SCHEDULERS)}")
        if o.scheduler:
            raise ValueError(f"--scheduler: {problem}")
        raise space.error(problem, *where, "scheduler")
    scheduler = scheduler_spec(exp.scheduler.name)
    scheduler_values = _check_options(space, exp.scheduler, scheduler, "scheduler",
                                      scheduler_defaults(exp),
                                      {"max_t": ("stop", "training_iteration")})
    found = scheduler.against_space(scheduler_values, space)
    if found:
        raise space.error(f"{exp.scheduler.name}: {found[1]}", *where, "scheduler",
                          *([found[0]] if found[0] in exp.scheduler.options else []))
    # the searcher whose model the scheduler's budgets are for: itself, or its base
    modelled = searcher.base(searcher_values) or searcher
    if scheduler.only_with is not None and modelled is not scheduler.only_with:
        required = searcher_name(scheduler.only_with)
        raise space.error(f"the {exp.scheduler.name} scheduler works only with the {required} "
                          f"searcher (or a searcher with base: {required}), not "
                          f"{exp.searcher.name!r}", *where, "scheduler")
    if modelled.needs_budgets and scheduler.only_with is not modelled:
        needed = scheduler_for(modelled)
        who = (f"the {exp.searcher.name} searcher" if modelled is searcher else
               f"the {exp.searcher.name} searcher with base: {searcher_name(modelled)}")
        raise space.error(f"{who} needs the {needed} scheduler, which gives its model the "
                          "budgets it is built on", *where, "scheduler")
    if scheduler.population:
        if not searcher.draws_at_random:
            plain = next(n for n in SEARCHERS if searcher_spec(n).draws_at_random)
            raise space.error(f"the {exp.scheduler.name} scheduler changes configs itself and takes "
                              f"no searcher: use searcher: {plain} (the initial population is "
                              "drawn at random)", *where, "searcher")
        if space.forbidden:
            raise space.error(f"the {exp.scheduler.name} scheduler cannot enforce forbidden "
                              "combinations (its population is drawn by Tune)", "forbidden")
    if searcher.is_race:
        key = searcher_values["instance_key"]
        if key in {p.key for p in space.searchable()}:
            raise space.error(f"the instance key {key!r} is a searchable parameter; the race sets "
                              "it per trial (make it a constant or leave it out)", "parameters",
                              key)
    if searcher.needs_budgets:
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
    _check_points(space, exp)
    if scheduler.synchronous_hyperband:
        _fill_brackets(space, exp, scheduler_values)
    if build:
        _check_searcher(space, exp)
        _check_scheduler(space, exp)
    if not exp.name:
        exp.name = "autometa"
    return exp


def _fill_brackets(space: Space, exp: Experiment, options: dict[str, Any]) -> None:
    """Let one Hyperband band's trials be in flight at once (see ``schedulers.brackets``).

    ``options``: the scheduler's, checked, with its defaults filled in."""
    from autometa.schedulers.brackets import hyperband_bracket_sizes

    max_t, eta = options["max_t"], options["reduction_factor"]
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
    """Build the searcher once, as the run will (it imports Ray)."""
    from autometa.searchers import make_searcher

    try:
        make_searcher(exp.searcher.name, space, metric=exp.metric or "metric",
                      mode=exp.mode or "min", seed=exp.seed, **exp.searcher.options)
    except (TypeError, ValueError) as err:
        if str(err).startswith("seed "):
            raise space.error(str(err), "experiment", "seed") from None
        raise space.error(f"{exp.searcher.name}: {err}", "experiment", "searcher") from None


def _check_points(space: Space, exp: Experiment) -> None:
    """Each of ``points_to_evaluate`` against the space (as the searcher will check it)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for i, point in enumerate(exp.searcher.options.get("points_to_evaluate") or []):
        try:
            space.checked_point(point, f"points_to_evaluate[{i}]", rng)
        except ValueError as err:
            raise space.error(str(err).split(": ", 1)[1], "experiment", "searcher",
                              "points_to_evaluate", i) from None


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


def _check_options(space: Space, comp: Component, spec: Any, kind: str,
                   options: dict[str, Any] | None = None,
                   implied: dict[str, tuple] | None = None) -> dict[str, Any]:
    """``options`` (default: the component's own) checked against ``spec``, a declaration
    (:mod:`autometa.options`); the values with the defaults filled in. ``implied``: where in
    the experiment section an option not in the component comes from."""
    from autometa.options import OptionError

    try:
        return spec.check(comp.options if options is None else options,
                          f"{kind} {comp.name!r}")
    except OptionError as err:
        at: tuple = (kind, err.key) if err.key in comp.options else (kind,)
        if err.key in (implied or {}) and err.key not in comp.options:
            at = implied[err.key]  # e.g. max_t, from stop: {training_iteration: N}
        raise space.error(f"{comp.name}: {err}", "experiment", *at) from None


def scheduler_defaults(exp: Experiment) -> dict[str, Any]:
    """Options a scheduler gets: the file's, autometa's defaults for it and what the rest of
    the experiment implies (``max_t`` from ``stop``)."""
    from autometa.schedulers import scheduler_spec

    spec = scheduler_spec(exp.scheduler.name)
    opts = {**spec.run_defaults, **exp.scheduler.options}
    limit = exp.stop.get("training_iteration")
    if spec.max_t_from_stop and "max_t" not in opts and limit:
        opts["max_t"] = int(limit)
    return opts


__all__ = ["Overrides", "SpaceError", "plan_experiment", "scheduler_defaults"]

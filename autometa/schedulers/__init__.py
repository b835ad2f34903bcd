"""Schedulers: when to stop, pause or continue trials. The registry is the only list of names.

The classic schedulers are Ray Tune's own, with their state kept across
``Tuner.restore`` (:mod:`autometa.schedulers.resumable`); autometa only wires
names and options to them. ``metric`` and ``mode`` come from the experiment (Tune passes
them through ``TuneConfig``).

========== =============================== ==============================
name       class                           pairs with
========== =============================== ==============================
fifo       ``FIFOScheduler``               any searcher
asha       ``ASHAScheduler``               any searcher
hyperband  ``HyperBandScheduler``          any searcher
bohb       ``HyperBandForBOHB``            the ``bohb`` searcher (required)
median     ``MedianStoppingRule``          any searcher
pbt        ``SpacePBT`` (Ray's PBT,       ``random`` (Tune draws the population);
           mutations from the space)       trials that checkpoint
hypergradient_pbt ``HypergradientPBT``     as ``pbt``; trials that report
                                           ``hypergrad/<key>``
========== =============================== ==============================
"""

from __future__ import annotations

import inspect
from typing import Any

from autometa.registry import check_options, lookup

SCHEDULERS: dict[str, str] = {
    "fifo": "ray.tune.schedulers:FIFOScheduler",
    "asha": "autometa.schedulers.resumable:ResumableASHAScheduler",
    "hyperband": "autometa.schedulers.resumable:ResumableHyperBandScheduler",
    "bohb": "autometa.schedulers.resumable:ResumableHyperBandForBOHB",
    "median": "autometa.schedulers.resumable:ResumableMedianStoppingRule",
    "pbt": "autometa.schedulers.population:SpacePBT",
    "hypergradient_pbt": "autometa.schedulers.population:HypergradientPBT",
}
"""Registered scheduler names and the classes behind them."""

REQUIRED_SEARCHER = {"bohb": "bohb"}
"""Schedulers that only work with one searcher (HyperBandForBOHB calls BOHB's pause hooks)."""

POPULATION_SCHEDULERS = {"pbt", "hypergradient_pbt"}
"""Schedulers that change trial configs themselves: Ray allows no ``Searcher`` with them, so the
initial population is drawn by Tune's own variant generator from the Tune form of the space."""

_DEFAULTS: dict[str, dict[str, Any]] = {
    "asha": {"time_attr": "training_iteration"},
    "hyperband": {"time_attr": "training_iteration"},
    "bohb": {"time_attr": "training_iteration"},
    "median": {"time_attr": "training_iteration"},
    "pbt": {"perturbation_interval": 2},
    "hypergradient_pbt": {"perturbation_interval": 2},
}
_FROM_EXPERIMENT = ("space", "seed")  # given by the experiment, not options in the file


def scheduler_class(name: str) -> type:
    """The class registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    return lookup(SCHEDULERS, "scheduler", name)


def scheduler_options(name: str) -> list[str]:
    """Option names the scheduler ``name`` accepts (``metric`` and ``mode`` come from Tune).

    A class that passes ``**kwargs`` on to its parent accepts the parent's options too.
    """
    names: list[str] = []
    for klass in scheduler_class(name).__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        names += [p for p in params if p not in ("self", "metric", "mode", *_FROM_EXPERIMENT)
                  and p not in names and params[p].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                            inspect.Parameter.KEYWORD_ONLY)]
        if not any(v.kind is inspect.Parameter.VAR_KEYWORD for v in params.values()):
            break
    return names


def make_scheduler(name: str, space: Any = None, seed: int | None = None, **options: Any) -> Any:
    """Build the scheduler registered as ``name`` with ``options``.

    ``space`` and ``seed`` go to schedulers that take them (``hypergradient_pbt``).

    Raises:
        ValueError: unknown name or option, or a missing space.
    """
    cls = scheduler_class(name)
    check_options("scheduler", name, options, scheduler_options(name))
    params = inspect.signature(cls.__init__).parameters
    given = {"space": space, "seed": seed}
    extra = {k: v for k, v in given.items() if k in params and v is not None}
    if "space" in params and space is None:
        raise ValueError(f"scheduler {name!r} needs the search space (space=...)")
    return cls(**{**_DEFAULTS.get(name, {}), **extra, **options})

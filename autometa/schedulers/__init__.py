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

from typing import Any

from autometa.registry import lookup
from autometa.schedulers.specs import SchedulerSpec
from autometa.searchers.specs import SearcherSpec

SCHEDULERS: dict[str, str] = {
    "fifo": "autometa.schedulers.specs:FIFOSpec",
    "asha": "autometa.schedulers.specs:ASHASpec",
    "hyperband": "autometa.schedulers.specs:HyperbandSpec",
    "bohb": "autometa.schedulers.specs:BOHBSchedulerSpec",
    "median": "autometa.schedulers.specs:MedianSpec",
    "pbt": "autometa.schedulers.specs:PBTSpec",
    "hypergradient_pbt": "autometa.schedulers.specs:HypergradientPBTSpec",
}
"""Registered scheduler names and their declarations (:mod:`autometa.schedulers.specs`: the
options and capabilities of each, and the class that implements it)."""


def scheduler_spec(name: str) -> type[SchedulerSpec]:
    """The declaration registered as ``name`` (imports no Ray).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    return lookup(SCHEDULERS, "scheduler", name)


def scheduler_class(name: str) -> type:
    """The class registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    return scheduler_spec(name).load()


def scheduler_options(name: str) -> list[str]:
    """Option names the scheduler ``name`` accepts (``metric`` and ``mode`` come from Tune)."""
    return scheduler_spec(name).option_names()


def scheduler_for(searcher: type[SearcherSpec]) -> str:
    """The scheduler a searcher gets when the file names none: the one that works only with
    it (bohb's), else the first registered (fifo)."""
    for name in SCHEDULERS:
        if scheduler_spec(name).only_with is searcher:
            return name
    return next(iter(SCHEDULERS))


def make_scheduler(name: str, space: Any = None, seed: int | None = None, **options: Any) -> Any:
    """Build the scheduler registered as ``name`` with ``options``.

    ``space`` and ``seed`` go to schedulers that take them (``hypergradient_pbt``).

    Raises:
        ValueError: unknown name or option, or a missing space.
    """
    spec = scheduler_spec(name)
    options = {**spec.run_defaults, **options}
    spec.check(options, f"scheduler {name!r}")
    extra = {}
    if spec.needs_space:
        if space is None:
            raise ValueError(f"scheduler {name!r} needs the search space (space=...)")
        extra = {"space": space, **({"seed": seed} if seed is not None else {})}
    return spec.load()(**extra, **options)

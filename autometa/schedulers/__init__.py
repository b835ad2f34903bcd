"""Schedulers: when to stop, pause or continue trials. The registry is the only list of names.

The classic schedulers are Ray Tune's own; autometa only wires names and
options to them. ``metric`` and ``mode`` come from the experiment (Tune passes
them through ``TuneConfig``).

========== =============================== ==============================
name       class                           pairs with
========== =============================== ==============================
fifo       ``FIFOScheduler``               any searcher
asha       ``ASHAScheduler``               any searcher
hyperband  ``HyperBandScheduler``          any searcher
bohb       ``HyperBandForBOHB``            the ``bohb`` searcher (required)
median     ``MedianStoppingRule``          any searcher
========== =============================== ==============================
"""

from __future__ import annotations

import inspect
from typing import Any

from autometa.registry import check_options, lookup

SCHEDULERS: dict[str, str] = {
    "fifo": "ray.tune.schedulers:FIFOScheduler",
    "asha": "ray.tune.schedulers:ASHAScheduler",
    "hyperband": "ray.tune.schedulers:HyperBandScheduler",
    "bohb": "ray.tune.schedulers:HyperBandForBOHB",
    "median": "ray.tune.schedulers:MedianStoppingRule",
}
"""Registered scheduler names and the classes behind them."""

REQUIRED_SEARCHER = {"bohb": "bohb"}
"""Schedulers that only work with one searcher (HyperBandForBOHB calls BOHB's pause hooks)."""

_DEFAULTS: dict[str, dict[str, Any]] = {
    "asha": {"time_attr": "training_iteration"},
    "hyperband": {"time_attr": "training_iteration"},
    "bohb": {"time_attr": "training_iteration"},
    "median": {"time_attr": "training_iteration"},
}


def scheduler_class(name: str) -> type:
    """The class registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    return lookup(SCHEDULERS, "scheduler", name)


def scheduler_options(name: str) -> list[str]:
    """Option names the scheduler ``name`` accepts (``metric`` and ``mode`` come from Tune)."""
    params = inspect.signature(scheduler_class(name).__init__).parameters
    return [p for p in params if p not in ("self", "metric", "mode")
            and params[p].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                   inspect.Parameter.KEYWORD_ONLY)]


def make_scheduler(name: str, **options: Any) -> Any:
    """Build the scheduler registered as ``name`` with ``options``.

    Raises:
        ValueError: unknown name or option.
    """
    cls = scheduler_class(name)
    check_options("scheduler", name, options, scheduler_options(name))
    return cls(**{**_DEFAULTS.get(name, {}), **options})

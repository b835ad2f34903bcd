"""The scheduler conformance suite.

Each check takes a *factory* returning a fresh ``TrialScheduler`` (e.g.
``functools.partial(make_scheduler, "asha", max_t=3)``) and the name of a
searcher the scheduler works with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray import cloudpickle
from ray.tune.schedulers import TrialScheduler

Factory = Callable[..., TrialScheduler]


def check_pickle_round_trip(factory: Factory) -> None:
    """Tune pickles the scheduler into the experiment state: it must survive that."""
    scheduler = factory()
    scheduler.set_search_properties("loss", "min")
    copy = cloudpickle.loads(cloudpickle.dumps(scheduler))
    assert type(copy) is type(scheduler)
    assert getattr(copy, "_metric", "loss") == "loss"


def check_in_tune(factory: Factory, searcher: str, storage: str | None = None) -> Any:
    """A real Tune run: every trial ends, none errors, NaN-reporting trials included."""
    import functools

    from autometa.searchers import make_searcher
    from autometa.testing.searchers import check_in_tune as run

    return run(functools.partial(make_searcher, searcher), scheduler=factory(), storage=storage)


ALL_CHECKS = (check_pickle_round_trip,)
"""Offline checks; :func:`check_in_tune` additionally needs a running Ray."""

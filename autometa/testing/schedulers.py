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


def check_in_tune(factory: Factory, searcher: str | None, storage: str | None = None) -> Any:
    """A real Tune run: every trial ends, none errors, NaN-reporting trials included.

    ``searcher=None`` runs a population scheduler, which takes no searcher: Tune draws the
    population from the Tune form of the space.
    """
    import functools

    from autometa.searchers import make_searcher
    from autometa.testing.searchers import check_in_tune as run

    if searcher is not None:
        return run(functools.partial(make_searcher, searcher), scheduler=factory(), storage=storage)
    import tempfile

    from ray import tune

    from autometa.convert.tune import to_tune
    from autometa.testing.spaces import nan_space
    from autometa.trainables.synthetic import quadratic

    space = nan_space()
    with tempfile.TemporaryDirectory() as folder:
        results = tune.Tuner(
            quadratic, param_space=to_tune(space),
            tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=6,
                                        scheduler=factory(), max_concurrent_trials=2,
                                        reuse_actors=True),  # as `autometa run` does
            run_config=tune.RunConfig(storage_path=storage or folder, verbose=0)).fit()
    assert not results.errors, f"trials failed: {results.errors}"
    assert len(results) == 6
    return results


ALL_CHECKS = (check_pickle_round_trip,)
"""Offline checks; :func:`check_in_tune` additionally needs a running Ray."""

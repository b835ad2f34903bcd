"""Every registered searcher passes the conformance suite (offline checks and a real Tune run)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from autometa.schedulers import make_scheduler, scheduler_for
from autometa.searchers import SEARCHERS, make_searcher, searcher_spec
from autometa.testing import searchers as suite

OPTIONS = {"grid": {"repeats": 50}, "tpe": {"n_initial_points": 3},
           "bohb": {"bohb_config": {"min_points_in_model": 4}},
           "race": {"candidates": 4, "min_instances": 2, "max_instances": 3},
           "irace": {"candidates": 4, "min_instances": 2, "max_instances": 3, "budget": 40}}


def factory(name: str):
    return functools.partial(make_searcher, name, **OPTIONS.get(name, {}))


@pytest.mark.parametrize("check", suite.ALL_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_searcher_conformance(name, check):
    check(factory(name))


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_searcher_in_real_tune(name, ray_session, storage):
    spec = searcher_spec(name)
    scheduler = make_scheduler(scheduler_for(spec), max_t=3) if spec.needs_budgets else None
    results = suite.check_in_tune(factory(name), scheduler=scheduler, storage=storage)
    assert any(r.metrics.get("loss") == r.metrics.get("loss") for r in results)  # some finite


def test_restored_bohb_keeps_its_model(tmp_path):
    """Ray's TuneBOHB after a restore: the hpbandster observations and KDE models come back
    (not only the random state), so model-based suggestions continue as before."""
    from autometa.testing.spaces import full_space

    space = full_space()
    make = factory("bohb")
    original = make(space, metric="loss", mode="min", seed=0)
    suite._drive(original, space, 40)  # a model needs more good and bad points than dims
    generator = original._base.bohber
    assert generator.kde_models, "no model built: the check would not test it"
    original.save(str(tmp_path / "bohb.pkl"))
    restored = make(space, metric="loss", mode="min", seed=7)
    restored.restore(str(tmp_path / "bohb.pkl"))
    again = restored._base.bohber
    assert again.configs.keys() == generator.configs.keys()
    for budget in generator.configs:
        assert np.array_equal(again.configs[budget], generator.configs[budget], equal_nan=True)
        assert again.losses[budget] == generator.losses[budget]
    assert again.kde_models.keys() == generator.kde_models.keys()
    assert suite._drive(original, space, 4, prefix="after") == \
        suite._drive(restored, space, 4, prefix="after")


def test_bohb_model_suggestions_follow_the_seed():
    """hpbandster samples its model with NumPy's global generator; the searcher's own is used."""
    from autometa.testing.spaces import full_space

    space = full_space()
    runs = []
    for outside in (1, 2):
        np.random.seed(outside)  # whatever the global generator holds
        runs.append(suite._drive(factory("bohb")(space, metric="loss", mode="min", seed=3),
                                 space, 44))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_no_searcher_relies_on_tunes_repeater(name):
    """Tune's ``Repeater`` raises ``KeyError`` when a trial suggested after the last experiment
    checkpoint completes after a restore. autometa's repeats (``grid``'s ``repeats``, racing's
    instances) are the searchers' own, covered by ``check_unknown_trial_after_restore``."""
    from ray.tune.search import Repeater

    searcher = factory(name)(metric="loss", mode="min", seed=0)
    assert not isinstance(searcher, Repeater)
    assert not any(isinstance(v, Repeater) for v in vars(searcher).values())


@pytest.mark.parametrize(("metric", "said"), [(float("nan"), "is non-finite"),
                                              ("0.5", "is not a number (str)")])
def test_a_metric_that_is_not_a_finite_number_is_named_for_what_it_is(metric, said, caplog):
    import logging

    from autometa.space import space_from_dict

    space = space_from_dict({"parameters": {"x": {"type": "uniform", "low": 0, "high": 1}}})
    searcher = make_searcher("random", space, metric="loss", mode="min", seed=0)
    assert searcher.suggest("t1") is not None
    with caplog.at_level(logging.WARNING, logger="autometa"):
        searcher.on_trial_complete("t1", {"loss": metric})
    assert any(said in r.getMessage() and "treated as a failed evaluation" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]

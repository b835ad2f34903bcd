"""Every registered scheduler passes the conformance suite, in a real Tune run."""

from __future__ import annotations

import functools

import pytest

from autometa.schedulers import SCHEDULERS, make_scheduler, scheduler_options, scheduler_spec
from autometa.searchers import searcher_name
from autometa.testing import schedulers as suite
from autometa.testing.spaces import nan_space


def factory(name: str):
    options = {"max_t": 3} if "max_t" in scheduler_options(name) else {}
    if name == "median":
        options = {"grace_period": 1, "min_samples_required": 2}
    if scheduler_spec(name).population:
        options = {"space": nan_space(), "perturbation_interval": 1}
    return functools.partial(make_scheduler, name, **options)


@pytest.mark.parametrize("check", suite.ALL_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_scheduler_conformance(name, check):
    check(factory(name))


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_scheduler_in_real_tune(name, ray_session, storage):
    spec = scheduler_spec(name)
    searcher = (None if spec.population
                else searcher_name(spec.only_with) if spec.only_with else "random")
    suite.check_in_tune(factory(name), searcher, storage=storage)


def test_unknown_scheduler_and_option_are_clear():
    with pytest.raises(ValueError, match="unknown scheduler 'nope'"):
        make_scheduler("nope")
    with pytest.raises(ValueError, match="unknown option 'bogus' for scheduler 'asha'"):
        make_scheduler("asha", bogus=1)


@pytest.mark.parametrize("name", ["hyperband", "bohb"])
@pytest.mark.parametrize(("max_t", "eta"), [(9, 3), (10, 3), (81, 3), (100, 4), (4, 2), (1, 3)])
def test_bracket_sizes_are_tunes(name, max_t, eta):
    from autometa.schedulers.brackets import hyperband_bracket_sizes

    tune_hb = make_scheduler(name, max_t=max_t, reduction_factor=eta)
    expected = [tune_hb._get_n0(s) for s in range(tune_hb._s_max_1) if tune_hb._get_r0(s) > 0]
    assert hyperband_bracket_sizes(max_t, eta) == expected


def test_plan_lets_a_band_in_flight():
    from autometa.launch.plan import plan_experiment
    from autometa.space import space_from_dict

    doc = {"experiment": {"metric": "loss", "scheduler": {"name": "hyperband"},
                          "stop": {"training_iteration": 27}},
           "parameters": {"x": {"type": "uniform", "low": 0, "high": 1}}}
    exp = plan_experiment(space_from_dict(doc), need_trainable=False)
    assert exp.max_concurrent_trials == 4 + 6 + 12 + 27  # max_t 27 from stop, eta 3
    doc["experiment"]["scheduler"] = "asha"
    assert plan_experiment(space_from_dict(doc), need_trainable=False).max_concurrent_trials is None

"""Every registered scheduler passes the conformance suite, in a real Tune run."""

from __future__ import annotations

import functools

import pytest

from autometa.schedulers import (
    POPULATION_SCHEDULERS,
    REQUIRED_SEARCHER,
    SCHEDULERS,
    make_scheduler,
    scheduler_options,
)
from autometa.testing import schedulers as suite
from autometa.testing.spaces import nan_space


def factory(name: str):
    options = {"max_t": 3} if "max_t" in scheduler_options(name) else {}
    if name == "median":
        options = {"grace_period": 1, "min_samples_required": 2}
    if name in POPULATION_SCHEDULERS:
        options = {"space": nan_space(), "perturbation_interval": 1}
    return functools.partial(make_scheduler, name, **options)


@pytest.mark.parametrize("check", suite.ALL_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_scheduler_conformance(name, check):
    check(factory(name))


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_scheduler_in_real_tune(name, ray_session, storage):
    searcher = None if name in POPULATION_SCHEDULERS else REQUIRED_SEARCHER.get(name, "random")
    suite.check_in_tune(factory(name), searcher, storage=storage)


def test_unknown_scheduler_and_option_are_clear():
    with pytest.raises(ValueError, match="unknown scheduler 'nope'"):
        make_scheduler("nope")
    with pytest.raises(ValueError, match="unknown option 'bogus' for scheduler 'asha'"):
        make_scheduler("asha", bogus=1)

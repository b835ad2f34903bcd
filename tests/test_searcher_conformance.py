"""Every registered searcher passes the conformance suite (offline checks and a real Tune run)."""

from __future__ import annotations

import functools

import pytest

from autometa.schedulers import REQUIRED_SEARCHER, make_scheduler
from autometa.searchers import SEARCHERS, make_searcher
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
    required = {v: k for k, v in REQUIRED_SEARCHER.items()}
    scheduler = make_scheduler(required[name], max_t=3) if name in required else None
    results = suite.check_in_tune(factory(name), scheduler=scheduler, storage=storage)
    assert any(r.metrics.get("loss") == r.metrics.get("loss") for r in results)  # some finite

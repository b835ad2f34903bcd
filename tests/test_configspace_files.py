"""Real ConfigSpace search spaces (tests/data/configspace, from ConfigSpace's own tests): what
converts, what is refused by name, and the defaults kept as a point to evaluate."""

import os
import warnings

import pytest
from ConfigSpace import Configuration

from autometa.convert.configspace import default_config, from_configspace, to_configspace
from autometa.searchers import make_searcher

DATA = os.path.join(os.path.dirname(__file__), "data", "configspace")


def _read(name):
    from ConfigSpace.read_and_write import pcs, pcs_new

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (pcs readers: kept, unmaintained)
        for reader in (pcs_new, pcs):
            try:
                with open(os.path.join(DATA, name)) as handle:
                    return reader.read(handle)
            except Exception:  # noqa: BLE001 - the other pcs dialect
                continue
    raise AssertionError(f"ConfigSpace cannot read {name}")


def _lossy(cs):
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        space = from_configspace(cs, lossy=True)
    return space, " ".join(str(w.message) for w in said)


@pytest.mark.parametrize("name", ["mini_autosklearn_original.pcs", "spear-params-simple.pcs"])
def test_a_real_file_converts_and_its_samples_are_configurations_of_the_original(name):
    cs = _read(name)
    with pytest.raises(ValueError, match="its default") as refused:
        from_configspace(cs)  # real files set defaults; autometa spaces hold none
    assert "default_config(cs, space)" in str(refused.value)
    space, said = _lossy(cs)
    assert "not kept" in said and "its default" in said
    assert {p.key for p in space.parameters} == set(cs)
    for seed in range(40):
        config = space.sample(seed)
        active = {k: v for k, v in config.items() if v is not None}
        # the original space accepts it as is: the conditions and forbidden pairs carried over
        Configuration(cs, values=active).check_valid_configuration()
    back = to_configspace(space)
    assert set(back) == set(cs) and len(back.conditions) == len(cs.conditions)
    assert len(back.forbidden_clauses) == len(cs.forbidden_clauses)


def test_the_default_configuration_runs_first_as_a_point_to_evaluate():
    cs = _read("mini_autosklearn_original.pcs")
    space, _ = _lossy(cs)
    point = default_config(cs, space)
    assert point["classifier"] == "random_forest" and point["random_forest:max_features"] == 10
    assert point["liblinear:LOG2_C"] is None  # inactive under random_forest, as in ConfigSpace
    searcher = make_searcher("tpe", space, metric="loss", mode="min", seed=0,
                             points_to_evaluate=[point])
    assert searcher.suggest("t0") == point


def test_a_not_equals_condition_converts_and_an_or_is_refused_by_name():
    cs = _read("vampire-condition-or.pcs")
    with pytest.raises(ValueError, match=r"\|\|.*joined by AND"):
        from_configspace(cs, lossy=True)
    # without the "||" part, "saturation_algorithm != inst_gen" is an "in" over the others
    from ConfigSpace import ConfigurationSpace, NotEqualsCondition

    alone = ConfigurationSpace(seed=0)
    alone.add([cs["age_weight_ratio:log_ratio"], cs["saturation_algorithm"]])
    alone.add(NotEqualsCondition(alone["age_weight_ratio:log_ratio"],
                                 alone["saturation_algorithm"], "inst_gen"))
    space, _ = _lossy(alone)
    condition = space["age_weight_ratio:log_ratio"].conditions[0]
    assert set(condition.values) == {"discount", "fmb", "lrs", "otter", "z3"}
    for seed in range(30):
        config = space.sample(seed)
        assert (config["age_weight_ratio:log_ratio"] is None) == \
            (config["saturation_algorithm"] == "inst_gen")

"""Converters: round trips, exact bound conventions, native samples inside the space, rejections."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from ConfigSpace import ConfigurationSpace

from autometa.convert.configspace import (
    decode_configspace,
    from_configspace,
    to_configspace,
    to_configspace_json,
)
from autometa.convert.document import dump_document
from autometa.convert.hyperopt import decode_hyperopt, to_hyperopt
from autometa.convert.nni import to_nni
from autometa.convert.tune import from_tune, to_tune
from autometa.space import space_from_dict, space_from_text
from autometa.testing.spaces import FULL_SPACE, full_space


def test_configspace_round_trip_object_and_json():
    space = full_space()
    assert from_configspace(to_configspace(space)).parameters == space.parameters
    back = from_configspace(ConfigurationSpace.from_json(io.StringIO(to_configspace_json(space))))
    assert back.parameters == space.parameters
    assert back.forbidden == space.forbidden


def test_configspace_samples_satisfy_the_space():
    space = full_space()
    cs = to_configspace(space, seed=0)
    for config in cs.sample_configuration(300):
        assert space.problems(space.assemble(decode_configspace(space, dict(config)))) == []


def test_configspace_keeps_bounds_inclusive():
    cs = to_configspace(space_from_dict({"parameters": {"k": {"type": "randint", "low": 1,
                                                              "high": 5}}}))
    assert (cs["k"].lower, cs["k"].upper) == (1, 5)


def test_configspace_rejects_unbounded_normal():
    space = space_from_dict({"parameters": {"x": {"type": "normal", "mu": 0, "sigma": 1}}})
    with pytest.raises(ValueError, match="x: ConfigSpace .* needs both 'low' and 'high'"):
        to_configspace(space)


def test_tune_round_trip_and_bounds():
    space = full_space()
    back = from_tune(to_tune(space))
    assert back.parameters == space.parameters
    tune_space = to_tune(space_from_dict({"parameters": {"k": {"type": "randint", "low": 1,
                                                               "high": 5}}}))
    assert (tune_space["k"].lower, tune_space["k"].upper) == (1, 6)  # Tune excludes upper


def test_tune_variants_satisfy_the_space():
    from ray.tune.search.variant_generator import generate_variants

    space = full_space()
    tune_space = to_tune(space)
    seen = 0
    for _ in range(30):
        for _, config in generate_variants({"config": tune_space}):
            problems = space.problems(config["config"])
            # Tune cannot express forbidden combinations; autometa's searchers enforce them.
            assert all(p.startswith("forbidden") for p in problems), problems
            seen += 1
    assert seen == 60  # the grid parameter doubles each draw


def test_from_tune_rejects_what_it_cannot_read():
    from ray import tune

    with pytest.raises(ValueError, match="x: cannot read tune.sample_from"):
        from_tune({"x": tune.sample_from(lambda spec: 1)})
    with pytest.raises(ValueError, match="qrandint"):
        from_tune({"x": tune.qrandint(0, 10, 2)})


def test_hyperopt_samples_decode_inside_the_space():
    from hyperopt.pyll.stochastic import sample

    space = full_space()
    hp_space = to_hyperopt(space)
    rng = np.random.default_rng(0)
    widths = set()
    for _ in range(500):
        config = space.assemble(decode_hyperopt(space, sample(hp_space, rng=rng)))
        problems = space.problems(config)
        # hyperopt cannot truncate a normal nor forbid combinations: the searcher redraws those.
        assert all(p.startswith(("forbidden", "shift")) for p in problems), problems
        widths.add(config["width"])
    assert min(widths) == 2 and max(widths) == 64


def test_hyperopt_randint_upper_bound():
    from hyperopt.pyll.stochastic import sample

    space = space_from_dict({"parameters": {"k": {"type": "randint", "low": 1, "high": 3}}})
    rng = np.random.default_rng(0)
    values = {decode_hyperopt(space, sample(to_hyperopt(space), rng=rng))["k"] for _ in range(200)}
    assert values == {1, 2, 3}


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_document_round_trip(fmt):
    space = full_space()
    back = space_from_text(dump_document(space, fmt), file=f"x.{fmt}")
    assert back.parameters == space.parameters and back.forbidden == space.forbidden


def test_nni_export_round_trip(tmp_path):
    doc = {"parameters": {
        "lr": {"type": "loguniform", "low": 1e-4, "high": 0.1},
        "units": {"type": "randint", "low": 8, "high": 63},
        "drop": {"type": "quniform", "low": 0.0, "high": 0.5, "q": 0.1},
        "opt": {"type": "choice", "values": [
            {"name": "sgd", "momentum": {"type": "uniform", "low": 0, "high": 0.9}},
            {"name": "adam"}]},
    }}
    space = space_from_dict(doc)
    nni = to_nni(space)
    assert nni["units"] == {"_type": "randint", "_value": [8, 64]}  # NNI excludes upper
    file = tmp_path / "search_space.json"
    file.write_text(json.dumps(nni))
    from autometa.space import load_space

    # read back as NNI's: the trial finds the option's label under NNI's key, "_name"
    doc["parameters"]["opt"] = {"type": "choice", "name_key": "_name", "values": [
        {"_name": "sgd", "momentum": {"type": "uniform", "low": 0, "high": 0.9}},
        {"_name": "adam"}]}
    assert load_space(str(file)).parameters == space_from_dict(doc).parameters
    assert to_nni(load_space(str(file))) == nni


def test_nni_export_rejects_what_nni_cannot_express():
    with pytest.raises(ValueError, match="forbidden"):
        to_nni(full_space())
    conditional = space_from_dict({"parameters": {
        "o": {"type": "choice", "values": ["a", "b"]},
        "x": {"type": "uniform", "low": 0, "high": 1, "condition": {"o": "a"}}}})
    with pytest.raises(ValueError, match="x: NNI cannot express conditional"):
        to_nni(conditional)


def test_full_space_fixture_is_the_documented_one():
    assert set(FULL_SPACE["parameters"]) >= {"lr", "optimizer", "model", "epochs"}


def test_hyperopt_encoding_round_trips_through_hyperopts_own_evaluation():
    """encode_hyperopt (used to tell TPE evaluated points) is the inverse of decode_hyperopt:
    hyperopt's space_eval of the encoded values decodes back to the same flat values, for
    nested choices, a condition, integers, log and quantized parameters."""
    import hyperopt
    import numpy as np

    from autometa.convert.hyperopt import decode_hyperopt, encode_hyperopt, to_hyperopt
    from autometa.testing.spaces import full_space

    space = full_space()
    rng = np.random.default_rng(0)
    for _ in range(30):
        flat = space.flatten(space.sample(rng))
        encoded = encode_hyperopt(space, flat, rng)
        native = hyperopt.space_eval(to_hyperopt(space), encoded)
        decoded = decode_hyperopt(space, native)
        searched = {k: v for k, v in flat.items() if space[k].dist != "constant"}
        assert {k: v for k, v in decoded.items() if k in flat} == searched


def test_a_tune_distribution_inside_a_list_is_refused_by_name():
    """Tune would hand the trial the distribution object itself as a constant list item."""
    from ray import tune

    from autometa.convert.tune import from_tune

    assert from_tune({"sizes": [1, 2], "opt": {"betas": [0.9, 0.99]}}).keys == ["sizes", "opt.betas"]
    with pytest.raises(ValueError, match=r"layers\[1\]: a Tune distribution inside a list"):
        from_tune({"layers": [1, tune.uniform(2, 3), 4]})
    with pytest.raises(ValueError, match=r"model\.blocks\[0\]: a Tune distribution"):
        from_tune({"model": {"blocks": [{"width": tune.choice([8, 16])}]}})


def _foreign(name):
    from ConfigSpace import Beta, Categorical, Float, Integer, Normal, OrdinalHyperparameter

    return {
        "weights": (Categorical("c", ["a", "b"], weights=[0.9, 0.1]), "c: weights [0.9, 0.1]"),
        "log normal": (Float("f", (1e-3, 1.0), distribution=Normal(0.1, 0.1), log=True),
                       "f: a normal distribution on the log scale"),
        "beta": (Float("b", (0.0, 1.0), distribution=Beta(2, 3)), "b: a beta(2, 3) distribution"),
        "normal integer": (Integer("i", (1, 10), distribution=Normal(5, 2)),
                           "i: a normal(5, 2) distribution over integers"),
        "beta integer": (Integer("j", (1, 10), distribution=Beta(2, 3)), "j: a beta(2, 3)"),
        "ordinal": (OrdinalHyperparameter("o", ["low", "mid", "high"]),
                    "o: the order of an ordinal"),
        "float default": (Float("d", (0.0, 1.0), default=0.9), "d: its default 0.9"),
        "choice default": (Categorical("e", ["a", "b"], default="b"), "e: its default 'b'"),
    }[name]


@pytest.mark.parametrize("name", ["weights", "log normal", "beta", "normal integer",
                                  "beta integer", "ordinal", "float default", "choice default"])
def test_configspace_features_autometa_cannot_hold_are_refused_by_name(name):
    hp, says = _foreign(name)
    cs = ConfigurationSpace()
    cs.add(hp)
    with pytest.raises(ValueError, match="cannot hold") as err:
        from_configspace(cs)
    assert says in str(err.value) and "lossy=True" in str(err.value)
    with pytest.warns(UserWarning, match="not kept: " + says.split(":")[0]):
        space = from_configspace(cs, lossy=True)
    assert [p.key for p in space.parameters] == [hp.name]


def test_plain_configspace_features_convert_without_a_word():
    import warnings

    from ConfigSpace import Categorical, Float, Integer, Normal

    cs = ConfigurationSpace()
    cs.add([Float("lr", (1e-4, 1e-1), log=True), Integer("n", (1, 100), log=True),
            Float("m", (0.0, 10.0), distribution=Normal(5.0, 2.0)),
            Categorical("act", ["relu", "tanh"]), Categorical("w", ["a", "b"], weights=[1, 1])])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        space = from_configspace(cs)
    assert {p.key: p.dist for p in space.parameters} == {
        "act": "choice", "lr": "uniform", "m": "normal", "n": "randint", "w": "choice"}


def test_a_default_the_forbidden_clauses_exclude_moves_to_an_allowed_combination():
    space = space_from_dict({
        "parameters": {"a": {"type": "choice", "values": ["x", "y"]},
                       "b": {"type": "choice", "values": ["u", "v"]},
                       "n": {"type": "randint", "low": 1, "high": 3}},
        "forbidden": [{"a": "x", "b": "u"}, {"a": "y", "b": "u"}, {"a": "x", "b": "v", "n": 2}]})
    cs = to_configspace(space, seed=0)  # (ConfigSpace refused this space before)
    default = decode_configspace(space, dict(cs.get_default_configuration()))
    assert not space.is_forbidden(default) and default["b"] == "v"
    for config in cs.sample_configuration(50):
        assert not space.is_forbidden(decode_configspace(space, dict(config)))
    from autometa.searchers import make_searcher

    bohb = make_searcher("bohb", space, metric="loss", mode="min", seed=0)  # it can start
    suggested = [bohb.suggest(f"t{i}") for i in range(6)]
    assert all(not space.is_forbidden(c) for c in suggested), suggested
    back = from_configspace(cs)  # and the round trip is whole (ConfigSpace sorts the clauses)
    assert back.parameters == space.parameters
    assert sorted(map(repr, back.forbidden)) == sorted(map(repr, space.forbidden))

"""The declarations `autometa validate` checks files against (``autometa.options``) agree with
the classes that run: every option value a declaration accepts builds the searcher (which
then suggests) or Ray's scheduler; the declared options and defaults are the constructors'."""

from __future__ import annotations

import inspect

import pytest

from autometa.launch.plan import plan_experiment
from autometa.options import Declared, Option, OptionError
from autometa.schedulers import SCHEDULERS, make_scheduler, scheduler_for, scheduler_spec
from autometa.searchers import SEARCHERS, make_searcher, searcher_spec
from autometa.space import SpaceError, space_from_dict

PARAMETERS = {"x": {"type": "uniform", "low": 0.0, "high": 1.0, "differentiable": True},
              "act": {"type": "choice", "values": ["relu", "tanh"]}}
COMMON = [None, True, False, "", "two", -1, 0, 1, 2, 3, 0.5, 1e9, -1e308, float("nan"),
          float("inf"), [1, 2], [], {"a": 1}, {}, 10 ** 40]


def probes(option: Option) -> list:
    """Values on both sides of the option's bounds, its choices and every wrong kind."""
    out = list(COMMON) + list(option.choices) + [option.default]
    for bound in (option.low, option.high):
        if bound is not None:
            out += [bound, bound - 1e-9, bound + 1e-9, bound - 1, bound + 1, int(bound)]
    return out


def signature_options(cls: type, skip: tuple) -> dict:
    """Options a class's constructor takes (following ``**kwargs`` to its parents), with
    their defaults: the way the registries read them before the declarations."""
    found: dict = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        for name, p in params.items():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in skip \
                    and name not in found:
                found[name] = p.default
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return found


def _same_default(a, b) -> bool:
    return a == b or (isinstance(a, (list, tuple)) and tuple(a) == tuple(b))


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_a_searchers_declared_options_are_its_constructors(name):
    spec = searcher_spec(name)
    taken = signature_options(spec.load(), ("self", "args", "space", "metric", "mode", "seed"))
    assert set(spec.option_names()) == set(taken)
    for option in spec.options:
        assert _same_default(option.default, taken[option.name]), option.name


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_a_schedulers_declared_options_are_its_constructors(name):
    spec = scheduler_spec(name)
    taken = signature_options(spec.load(), ("self", "metric", "mode", "space", "seed"))
    assert set(spec.option_names()) == set(taken)
    for option in spec.options:
        assert _same_default(option.default, taken[option.name]), option.name


def _verdict(doc: dict) -> tuple[bool, str]:
    try:
        plan_experiment(space_from_dict(doc), need_trainable=False, build=False)
    except SpaceError as err:
        return False, str(err)
    return True, ""


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_every_value_a_searcher_declares_valid_builds_and_suggests(name):
    spec = searcher_spec(name)
    refused = 0
    for option in spec.options:
        for value in probes(option):
            doc = {"experiment": {"searcher": {"name": name, option.name: value}},
                   "parameters": PARAMETERS}
            ok, _ = _verdict(doc)
            if not ok:
                refused += 1
                continue
            space = space_from_dict(doc)
            searcher = make_searcher(name, space, metric="loss", mode="min", seed=0,
                                     **{option.name: value})
            config = searcher.suggest("t0")
            assert config is None or isinstance(config, (dict, str)), (option.name, value)
    assert refused > 0


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_value_a_scheduler_declares_valid_builds(name):
    spec = scheduler_spec(name)
    searcher = "bohb" if spec.only_with is searcher_spec("bohb") else "random"
    space = space_from_dict({"parameters": PARAMETERS})
    refused = 0
    for option in spec.options:
        for value in probes(option):
            doc = {"experiment": {"searcher": {"name": searcher},
                                  "scheduler": {"name": name, option.name: value},
                                  "max_concurrent_trials": 1000},
                   "parameters": PARAMETERS}
            ok, _ = _verdict(doc)
            if not ok:
                refused += 1
                continue
            make_scheduler(name, space=space, seed=0, **{option.name: value})
    assert refused > 0 or not spec.options


@pytest.mark.parametrize(("name", "options", "key"), [
    ("asha", {"max_t": 0}, "max_t"), ("asha", {"grace_period": 0}, "grace_period"),
    ("asha", {"reduction_factor": 1}, "reduction_factor"), ("asha", {"brackets": 0}, "brackets"),
    ("asha", {"max_t": 3, "grace_period": 4}, "grace_period"),
    ("hyperband", {"max_t": 0}, "max_t"), ("bohb", {"max_t": -2}, "max_t"),
    ("pbt", {"quantile_fraction": 0.6}, "quantile_fraction"),
    ("pbt", {"perturbation_interval": 0}, "perturbation_interval"),
])
def test_what_ray_refuses_the_declaration_refuses(name, options, key):
    """The other side of the bounds: Ray's own constructor raises, and so does the check."""
    spec = scheduler_spec(name)
    space = space_from_dict({"parameters": PARAMETERS})
    with pytest.raises((AssertionError, ValueError)):
        spec.load()(**({"space": space} if spec.needs_space else {}), **options)
    with pytest.raises(OptionError) as err:
        spec.check(options)
    assert err.value.key == key


def test_an_option_is_checked_by_kind_range_and_choice():
    n = Option("n", "int", 1, low=1)
    assert n.problem(1) is None and n.problem(2 ** 62) is None
    assert n.problem(10 ** 40) == "must be an integer >= 1, got an integer of 41 digits"
    assert n.problem(0) == "must be an integer >= 1, got 0"
    assert n.problem(True) == "must be an integer >= 1, got True"
    assert n.problem(1.0) == "must be an integer >= 1, got 1.0"
    assert n.problem(None) == "must be an integer >= 1, got null"
    frac = Option("f", "number", 0.5, low=0, high=1, low_open=True)
    assert frac.problem(1) is None and frac.problem(1e-12) is None
    assert frac.problem(0) == "must be a number in (0, 1], got 0"
    for bad in (float("nan"), float("inf"), 10 ** 400, "0.5", [0.5]):
        assert frac.problem(bad), bad
    import numpy as np

    assert frac.problem(np.float32(0.25)) is None  # NumPy scalars are numbers
    word = Option("w", "str", "a", choices=("a", "b"))
    assert word.problem("b") is None and word.problem("c") == "must be one of ['a', 'b'], got 'c'"
    pair = Option("p", "list", (1, 2), length=2)
    assert pair.problem([1.2, 0.8]) is None and pair.problem([1, "x"]) and pair.problem([1])
    maybe = Option("m", "int", None, low=0, optional=True)
    assert maybe.problem(None) is None and maybe.describe() == "an integer >= 0 (or null)"


def test_a_declaration_checks_unknown_options_and_options_together():
    class Pair(Declared):
        options = (Option("low", "number", 0), Option("high", "number", 1))

        @classmethod
        def together(cls, values):
            return ("high", "high must be > low") if values["high"] <= values["low"] else None

    assert Pair.check({"low": 0.5}) == {"low": 0.5, "high": 1}
    with pytest.raises(OptionError, match="unknown option 'lwo' for pair; accepted") as err:
        Pair.check({"lwo": 1}, "pair")
    assert err.value.key == "lwo"
    with pytest.raises(OptionError, match="high must be > low") as err:
        Pair.check({"low": 2})
    assert err.value.key == "high"


def test_capabilities_pair_searchers_and_schedulers_without_names():
    assert scheduler_for(searcher_spec("bohb")) == "bohb"
    assert scheduler_for(searcher_spec("tpe")) == "fifo"
    assert [n for n in SEARCHERS if searcher_spec(n).is_race] == ["race", "irace"]
    assert [n for n in SCHEDULERS if scheduler_spec(n).population] == ["pbt",
                                                                       "hypergradient_pbt"]
    from autometa.racing import TESTS

    assert searcher_spec("race").option("test").choices == TESTS  # the race's own list


@pytest.mark.parametrize(("experiment", "says"), [
    ({"searcher": {"name": "tpe"}, "scheduler": {"name": "bohb"}},
     "the bohb scheduler works only with the bohb searcher (or a searcher with base: bohb)"),
    ({"searcher": {"name": "hypergradient", "base": "bohb"}},
     "the hypergradient searcher with base: bohb needs the bohb scheduler"),
    ({"searcher": {"name": "tpe"}, "scheduler": {"name": "pbt"}},
     "use searcher: random"),
    ({"searcher": {"name": "hypergradient", "base": "grid"}}, "base must be one of"),
])
def test_pairings_are_refused_by_capability(experiment, says):
    ok, message = _verdict({"experiment": experiment, "parameters": PARAMETERS})
    assert not ok and says in message, message


def test_hypergradient_with_a_bohb_base_plans_with_the_bohb_scheduler():
    ok, message = _verdict({"experiment": {"searcher": {"name": "hypergradient", "base": "bohb"},
                                           "scheduler": {"name": "bohb"}},
                            "parameters": PARAMETERS})
    assert ok, message

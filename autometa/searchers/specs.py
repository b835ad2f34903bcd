"""What each registered searcher accepts and can do, known without importing it (no Ray).

A registry line in :mod:`autometa.searchers` names one of these classes; the
implementation's constructor checks its options through the same declaration, so a file
that ``autometa validate`` passes builds (``tests/test_declared_options.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from autometa.options import Declared, Option, differentiable_against_space

MOST_CANDIDATES = 100_000
"""Most candidates (and instances) a race may have: all are drawn when it starts."""


class SearcherSpec(Declared):
    """Options every searcher takes (:class:`~autometa.searchers.base.SpaceSearcher`'s) and
    the capabilities a searcher can have."""

    options = (Option("max_resamples", "int", 200, low=1),
               Option("points_to_evaluate", "list", None, optional=True))

    num_samples_option: ClassVar[str | None] = None
    """The option that receives the run's ``num_samples``; the searcher then says itself when
    it is finished (Tune runs it with ``num_samples: -1``)."""
    is_race: ClassVar[bool] = False
    """It sets ``instance_key`` per trial and eliminates candidates (its results are shown as
    a race)."""
    replays_race: ClassVar[bool] = False
    """A finished race can be replayed from the trials' results alone (one F-race)."""
    can_be_base: ClassVar[bool] = False
    """Another searcher may compose it (the hypergradient searcher's ``base``)."""
    keeps_chains: ClassVar[bool] = False
    """It follows hypergradient chains, kept in its saved state (``chain_trials()``)."""
    needs_budgets: ClassVar[bool] = False
    """Its model is built on the budgets of a scheduler that gives them (BOHB)."""
    draws_at_random: ClassVar[bool] = False
    """Its suggestions are independent draws from the space, as Tune's own variant generator
    makes them (the searcher a population scheduler's file names)."""

    @classmethod
    def base(cls, values: dict[str, Any]) -> type[SearcherSpec] | None:
        """The declaration of the searcher it composes with these (checked) option values,
        None when it composes none."""
        return None


class GridSpec(SearcherSpec):
    implementation = "autometa.searchers.grid:GridSearcher"
    options = SearcherSpec.options + (Option("repeats", "int", 1, low=1),)
    num_samples_option = "repeats"


class RandomSpec(SearcherSpec):
    implementation = "autometa.searchers.random:RandomSearcher"
    can_be_base = True
    draws_at_random = True


class TPESpec(SearcherSpec):
    implementation = "autometa.searchers.tpe:TPESearcher"
    options = SearcherSpec.options + (
        Option("n_initial_points", "int", 20, low=0),
        Option("gamma", "number", 0.25, low=0, high=1, low_open=True, high_open=True))
    can_be_base = True


class BOHBSpec(SearcherSpec):
    implementation = "autometa.searchers.bohb:BOHBSearcher"
    options = SearcherSpec.options + (Option("bohb_config", "dict", None, optional=True, fields=(
        # hpbandster's BOHB config generator (its defaults)
        Option("min_points_in_model", "int", None, low=1, high=10**6, optional=True),
        Option("top_n_percent", "number", 15, low=0, high=100, low_open=True, high_open=True),
        Option("num_samples", "int", 64, low=1, high=10**6),
        Option("random_fraction", "number", 1 / 3, low=0, high=1),
        Option("bandwidth_factor", "number", 3, low=0, low_open=True),
        Option("min_bandwidth", "number", 1e-3, low=0, low_open=True))),)
    can_be_base = True
    needs_budgets = True


class HypergradientSpec(SearcherSpec):
    implementation = "autometa.searchers.hypergradient:HypergradientSearcher"
    options = SearcherSpec.options + (
        Option("base", "str", "random"),
        Option("base_options", "dict", None, optional=True),
        Option("chains", "int", 4, low=1),
        Option("probes", "int", 1, low=1),
        Option("radius", "number", 0.1, low=0, low_open=True),
        Option("max_radius", "number", 0.5, low=0, low_open=True),
        Option("min_radius", "number", 1e-4, low=0, low_open=True),
        Option("grow", "number", 2.0, low=1),
        Option("shrink", "number", 0.3, low=0, high=1, low_open=True, high_open=True),
        Option("chain_length", "int", 30, low=1),
        Option("precondition", "bool", True),
        Option("memory", "int", 8, low=0),
        Option("start", "str", "center", choices=("center", "base")),
        Option("holdout_metric", "str", None, optional=True),
        Option("patience", "int", 3, low=0),
        Option("differentiable", "list", None, optional=True))
    keeps_chains = True

    @classmethod
    def base(cls, values: dict[str, Any]) -> type[SearcherSpec] | None:
        from autometa.searchers import searcher_spec

        return searcher_spec(values["base"])

    @classmethod
    def together(cls, values: dict[str, Any]) -> tuple[str, str] | None:
        from autometa.options import OptionError
        from autometa.searchers import base_searcher_names

        bases = base_searcher_names()
        if values["base"] not in bases:
            return "base", f"base must be one of {bases}, got {values['base']!r}"
        try:
            cls.base(values).check(values["base_options"] or {},
                                   f"the base searcher {values['base']!r}")
        except OptionError as err:
            return "base_options", f"base_options: {err}"
        if not values["min_radius"] <= values["radius"] <= values["max_radius"]:
            return "radius", (f"need min_radius <= radius <= max_radius, got "
                              f"{values['min_radius']}, {values['radius']}, "
                              f"{values['max_radius']}")
        return None


    @classmethod
    def against_space(cls, values: dict[str, Any], space: Any) -> tuple[str, str] | None:
        return differentiable_against_space(values, space)


class RaceSpec(SearcherSpec):
    implementation = "autometa.searchers.racing:RacingSearcher"
    options = SearcherSpec.options + (
        # every candidate is drawn at the start, every instance listed: bounded
        Option("candidates", "int", 16, low=0, high=MOST_CANDIDATES),
        Option("configs", "list", None, optional=True),
        Option("min_instances", "int", 5, low=2),
        Option("max_instances", "int", 10, low=2, high=MOST_CANDIDATES),
        Option("alpha", "number", 0.05, low=0, high=1, low_open=True, high_open=True),
        Option("test", "str", "friedman", choices=("friedman", "wilcoxon", "t")),
        Option("instance_key", "str", "instance"),
        Option("instances", "list", None, optional=True),
        Option("budget", "int", None, low=1, optional=True))
    num_samples_option = "budget"
    is_race = True
    replays_race = True

    @classmethod
    def together(cls, values: dict[str, Any]) -> tuple[str, str] | None:
        if values["max_instances"] < values["min_instances"]:
            return "max_instances", (f"max_instances ({values['max_instances']}) must be >= "
                                     f"min_instances ({values['min_instances']})")
        if values["instances"] is not None and len(values["instances"]) < values["max_instances"]:
            return "instances", (f"instances lists {len(values['instances'])} values; "
                                 f"max_instances is {values['max_instances']}")
        if values["candidates"] == 0 and not values["configs"]:
            return "candidates", "candidates must be >= 1 (or give configs)"
        return None


class IteratedRaceSpec(RaceSpec):
    implementation = "autometa.searchers.racing:IteratedRacingSearcher"
    options = tuple(o for o in RaceSpec.options if o.name != "budget") + (
        Option("budget", "int", 200, low=1),
        Option("elites", "int", 3, low=1),
        Option("iterations", "int", None, low=1, optional=True))
    replays_race = False


__all__ = ["BOHBSpec", "GridSpec", "HypergradientSpec", "IteratedRaceSpec", "RaceSpec",
           "RandomSpec", "SearcherSpec", "TPESpec"]

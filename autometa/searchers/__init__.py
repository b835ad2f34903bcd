"""Searchers: what to try next. The registry below is the only list of their names.

Every searcher is a ``ray.tune.search.Searcher`` built on
:class:`~autometa.searchers.base.SpaceSearcher`, so it works in plain
``tune.Tuner`` code, under ``ConcurrencyLimiter``, and passes the conformance
suite in :mod:`autometa.testing.searchers`.
"""

from __future__ import annotations

from typing import Any

from autometa.registry import lookup
from autometa.searchers.specs import SearcherSpec

SEARCHERS: dict[str, str] = {
    "grid": "autometa.searchers.specs:GridSpec",
    "random": "autometa.searchers.specs:RandomSpec",
    "tpe": "autometa.searchers.specs:TPESpec",
    "bohb": "autometa.searchers.specs:BOHBSpec",
    "hypergradient": "autometa.searchers.specs:HypergradientSpec",
    "race": "autometa.searchers.specs:RaceSpec",
    "irace": "autometa.searchers.specs:IteratedRaceSpec",
}
"""Registered searcher names and their declarations (:mod:`autometa.searchers.specs`: the
options and capabilities of each, and the class that implements it)."""


def searcher_spec(name: str) -> type[SearcherSpec]:
    """The declaration registered as ``name`` (imports no Ray).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    return lookup(SEARCHERS, "searcher", name)


def searcher_class(name: str) -> type:
    """The class registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    return searcher_spec(name).load()


def searcher_options(name: str) -> list[str]:
    """Option names the searcher ``name`` accepts (besides space, metric, mode, seed)."""
    return searcher_spec(name).option_names()


def base_searcher_names() -> list[str]:
    """Searchers another one may compose (the hypergradient searcher's ``base``)."""
    return [name for name in SEARCHERS if searcher_spec(name).can_be_base]


def searcher_name(spec: type) -> str:
    """The name a declaration is registered under."""
    for name in SEARCHERS:
        if searcher_spec(name) is spec:
            return name
    raise ValueError(f"{spec.__name__} is not registered")


def make_searcher(name: str, space: Any = None, *, metric: str | None = None,
                  mode: str | None = None, seed: int | None = None, **options: Any) -> Any:
    """Build the searcher registered as ``name``.

    Args:
        name: A key of :data:`SEARCHERS`.
        space: An autometa :class:`~autometa.space.Space`, or None to take Tune's ``param_space``.
        metric: Result key to optimize.
        mode: ``"min"`` or ``"max"``.
        seed: Seed for reproducible suggestions.
        **options: Searcher-specific options (see :func:`searcher_options`).

    Raises:
        ValueError: unknown name or option.
    """
    searcher_spec(name).check(options, f"searcher {name!r}")
    return searcher_class(name)(space, metric=metric, mode=mode, seed=seed, **options)


def __getattr__(name: str) -> Any:
    # every registered class is importable from here (HypergradientSearcher, ...), by the
    # registry line alone
    for registered in SEARCHERS:
        if searcher_spec(registered).class_name() == name:
            return searcher_class(registered)
    raise AttributeError(f"module 'autometa.searchers' has no attribute {name!r}")

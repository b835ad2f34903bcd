"""Searchers: what to try next. The registry below is the only list of their names.

Every searcher is a ``ray.tune.search.Searcher`` built on
:class:`~autometa.searchers.base.SpaceSearcher`, so it works in plain
``tune.Tuner`` code, under ``ConcurrencyLimiter``, and passes the conformance
suite in :mod:`autometa.testing.searchers`.
"""

from __future__ import annotations

import inspect
from typing import Any

from autometa.registry import check_options, lookup

SEARCHERS: dict[str, str] = {
    "grid": "autometa.searchers.grid:GridSearcher",
    "random": "autometa.searchers.random:RandomSearcher",
    "tpe": "autometa.searchers.tpe:TPESearcher",
    "bohb": "autometa.searchers.bohb:BOHBSearcher",
    "hypergradient": "autometa.searchers.hypergradient:HypergradientSearcher",
    "race": "autometa.searchers.racing:RacingSearcher",
    "irace": "autometa.searchers.racing:IteratedRacingSearcher",
}
"""Registered searcher names and the classes behind them."""


def searcher_class(name: str) -> type:
    """The class registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    return lookup(SEARCHERS, "searcher", name)


def searcher_options(name: str) -> list[str]:
    """Option names the searcher ``name`` accepts (besides space, metric, mode, seed)."""
    cls = searcher_class(name)
    names = []
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            for pname, param in inspect.signature(klass.__init__).parameters.items():
                if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) \
                        and pname not in ("self", "space", "metric", "mode", "seed") \
                        and pname not in names:
                    names.append(pname)
        if klass.__name__ == "SpaceSearcher":
            break
    return names


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
    cls = searcher_class(name)
    check_options("searcher", name, options, searcher_options(name))
    return cls(space, metric=metric, mode=mode, seed=seed, **options)


def __getattr__(name: str) -> Any:
    # every registered class is importable from here (HypergradientSearcher, ...), by the
    # registry line alone
    for registered, path in SEARCHERS.items():
        if path.rsplit(":", 1)[1] == name:
            return searcher_class(registered)
    raise AttributeError(f"module 'autometa.searchers' has no attribute {name!r}")

"""autometa: AutoML for Ray Tune.

Search-space files, classic searchers and schedulers wired to Ray Tune, gradient-based
search from the hypergradients trials report, and the trial side that computes them
(``autometa.Hyperparameters``, ``autometa.ImplicitEngine``, ``autometa.report_hypergradients``:
see "Bring your own model" in the README).

Importing ``autometa`` loads neither Ray nor torch; they load when a searcher,
scheduler or trainable is used.

Example:
    >>> import autometa
    >>> space = autometa.space_from_dict({"parameters": {"x": {"type": "uniform",
    ...                                                      "low": 0, "high": 1}}})
    >>> sorted(space.sample(0))
    ['x']
"""

from __future__ import annotations

import importlib
from typing import Any

from autometa.space import ConstraintViolation, Space, SpaceError, load_space, space_from_dict

__version__ = "0.1.0"

_LAZY = {
    "make_searcher": "autometa.searchers", "make_scheduler": "autometa.schedulers",
    "SEARCHERS": "autometa.searchers", "SCHEDULERS": "autometa.schedulers",
    "to_tune": "autometa.convert.tune", "from_tune": "autometa.convert.tune",
    "to_hyperopt": "autometa.convert.hyperopt", "to_configspace": "autometa.convert.configspace",
    "from_configspace": "autometa.convert.configspace", "to_nni": "autometa.convert.nni",
    "Hyperparameters": "autometa.hypergrad.model", "ImplicitEngine": "autometa.hypergrad.model",
    "Hypergradients": "autometa.hypergrad.model", "hypergrad_metrics": "autometa.trial.keys",
    "report_hypergradients": "autometa.trial.tune", "restore_state": "autometa.trial.tune",
    "finish_before_exit": "autometa.trial.exit", "UnrolledEngine": "autometa.hypergrad.forward",
    "OnlineUpdater": "autometa.hypergrad.online",
}
__all__ = ["ConstraintViolation", "Space", "SpaceError", "load_space", "space_from_dict",
           *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name.endswith("Searcher"):  # the registered searcher classes (HypergradientSearcher, ...)
        return getattr(importlib.import_module("autometa.searchers"), name)
    raise AttributeError(f"module 'autometa' has no attribute {name!r}")

"""Bundled datasets (shipped with dependencies; nothing is downloaded), dataset derivatives and
wrong-label detection (:mod:`autometa.data.label_issues`, cleanlab's conventions).

``loo_error``/``loo_gradient`` (:mod:`autometa.data.loo`) need torch and are imported on
first use, so that the digits data stay torch-free.
"""

from typing import Any

from autometa.data.digits import DigitsSplits, load_digits_splits

__all__ = ["DigitsSplits", "load_digits_splits", "loo_error", "loo_gradient", "loo_residuals"]


def __getattr__(name: str) -> Any:
    if name in ("loo_error", "loo_gradient", "loo_residuals"):
        from autometa.data import loo

        return getattr(loo, name)
    raise AttributeError(f"module 'autometa.data' has no attribute {name!r}")

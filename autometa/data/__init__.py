"""Bundled datasets (shipped with dependencies; nothing is downloaded)."""

from autometa.data.digits import DigitsSplits, load_digits_splits

__all__ = ["DigitsSplits", "load_digits_splits"]

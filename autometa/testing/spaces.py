"""Search spaces that exercise every feature of the format, for conformance checks."""

from __future__ import annotations

from autometa.space import Space, space_from_dict

FULL_SPACE = {
    "parameters": {
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0, "differentiable": True},
        "width": {"type": "randint", "low": 2, "high": 64, "log": True},
        "depth": {"type": "randint", "low": 1, "high": 3},
        "dropout": {"type": "quniform", "low": 0.0, "high": 0.5, "q": 0.1},
        "scale": {"type": "qloguniform", "low": 0.5, "high": 8.0, "q": 0.5},
        "shift": {"type": "normal", "mu": 0.0, "sigma": 1.0, "low": -2.0, "high": 2.0},
        "act": {"type": "grid", "values": ["relu", "tanh"]},
        "optimizer": {"type": "choice", "values": [
            {"name": "sgd", "momentum": {"type": "uniform", "low": 0.0, "high": 0.9}},
            {"name": "adam", "beta1": {"type": "uniform", "low": 0.8, "high": 0.99}},
        ]},
        "model": {
            "bias": {"type": "uniform", "low": -1.0, "high": 1.0, "condition": {"act": "tanh"}},
            "norm": {"type": "choice", "values": [True, False]},
        },
        "epochs": 3,
    },
    "forbidden": [{"act": "tanh", "depth": 3}],
}
"""Continuous, log, quantized, integer, truncated normal, grid, nested choice,
a condition, a group and a forbidden combination."""


def full_space() -> Space:
    return space_from_dict(FULL_SPACE)


def simple_space() -> Space:
    """Two continuous parameters with a known optimum at (0.5, 0.5) of the quadratic trainable."""
    return space_from_dict({"parameters": {
        "x": {"type": "uniform", "low": 0.0, "high": 1.0},
        "y": {"type": "uniform", "low": 0.0, "high": 1.0},
        "iterations": 3,
    }})


def nan_space() -> Space:
    """The simple space plus ``nan_at``: about half the trials report NaN from iteration 2."""
    return space_from_dict({"parameters": {
        "x": {"type": "uniform", "low": 0.0, "high": 1.0},
        "y": {"type": "uniform", "low": 0.0, "high": 1.0},
        "nan_at": {"type": "choice", "values": [None, 2]},
        "iterations": 3,
    }})

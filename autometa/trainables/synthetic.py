"""A synthetic trainable with a known optimum, for tests and quick demos (no torch)."""

from __future__ import annotations

import math
import time
from typing import Any

from ray import tune


def quadratic(config: dict[str, Any]) -> None:
    """Report ``loss = sum((x_i - target)^2)`` over the numeric config values, per iteration.

    Config keys: every numeric value counts; ``target`` (default 0.5), ``iterations``
    (default 5), ``noise`` (default 0) and ``sleep`` (seconds per iteration, default 0)
    steer it. ``fail_at``: raise at that iteration; ``nan_at``: report NaN from then on.
    Iteration ``i`` reports ``loss * (1 + 1/i)``, so later iterations are better.
    With ``report_hypergrad: true`` every report also carries the exact derivative
    ``hypergrad/<key> = 2 (x - target)(1 + 1/i)`` and ``hparams/<key>`` for each numeric key.
    """
    target = config.get("target", 0.5)
    iterations = int(config.get("iterations", 5))
    skip = {"target", "iterations", "noise", "sleep", "fail_at", "nan_at", "seed",
            "report_hypergrad"}
    numbers = [(k, v) for k, v in _numbers(config) if k not in skip]
    loss = sum((v - target) ** 2 for _, v in numbers)
    for i in range(1, iterations + 1):
        if config.get("fail_at") == i:
            raise RuntimeError(f"planned failure at iteration {i}")
        if config.get("sleep"):
            time.sleep(config["sleep"])
        value = loss * (1 + 1 / i)
        if config.get("nan_at") is not None and i >= config["nan_at"]:
            value = math.nan
        metrics = {"loss": value, "iteration": i}
        if config.get("report_hypergrad"):
            for key, x in numbers:
                metrics[f"hypergrad/{key}"] = 2 * (x - target) * (1 + 1 / i)
                metrics[f"hparams/{key}"] = x
        tune.report(metrics)


def _numbers(config: dict, prefix: str = "") -> list[tuple[str, float]]:
    out = []
    for key, value in config.items():
        if isinstance(value, dict):
            out += _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((f"{prefix}{key}", float(value)))
    return out

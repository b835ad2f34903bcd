"""A synthetic trainable with a known optimum, for tests and quick demos (no torch)."""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
from typing import Any

from ray import tune

from autometa.trial.keys import hypergrad_metrics


def quadratic(config: dict[str, Any]) -> None:
    """Report ``loss = sum((x_i - target)^2)`` over the numeric config values, per iteration.

    Config keys: every numeric value counts; ``target`` (default 0.5), ``iterations``
    (default 5), ``noise`` (default 0) and ``sleep`` (seconds per iteration, default 0)
    steer it. With an ``instance`` key (racing), the loss gets an offset shared by every
    configuration on that instance (``instance_effect`` x a standard normal seeded by the
    instance) plus noise of its own (``noise`` x a standard normal seeded by instance and
    configuration): the same configuration on the same instance always scores the same.
    ``fail_at``: raise at that iteration; ``nan_at``: report NaN from then on.
    Iteration ``i`` reports ``loss * (1 + c/i)`` (``curve``: c, default 1), so later
    iterations are better.
    With ``report_hypergrad: true`` every report also carries the exact derivative
    ``hypergrad/<key> = 2 (x - target)(1 + c/i)`` and ``hparams/<key>`` for each numeric key.
    With ``checkpoint: true`` each report saves the iteration, and a restored trial (Tune's
    pause/resume, PBT's exploit, a retry after its node died) continues from it with its
    current config. With ``report_placement: true`` every report also says where the trial
    runs (:func:`placement`) and ``resumed_from`` (the checkpointed iteration it started after).
    """
    target = config.get("target", 0.5)
    iterations = int(config.get("iterations", 5))
    curve = float(config.get("curve", 1.0))
    numbers = [(k, v) for k, v in _numbers(config) if k not in _CONTROL]
    loss = sum((v - target) ** 2 for _, v in numbers) + _instance_noise(config, numbers)
    start = 1
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder, open(os.path.join(folder, "iteration")) as f:
            start = int(f.read()) + 1
    for i in range(start, iterations + 1):
        if config.get("fail_at") == i:
            raise RuntimeError(f"planned failure at iteration {i}")
        if config.get("sleep"):
            time.sleep(config["sleep"])
        value = loss * (1 + curve / i)
        if config.get("nan_at") is not None and i >= config["nan_at"]:
            value = math.nan
        metrics = {"loss": value, "iteration": i}
        if config.get("report_placement"):
            metrics.update(placement(), resumed_from=start - 1)
        if config.get("report_hypergrad"):  # exact: d loss / dx = 2 (x - target)(1 + c/i)
            metrics.update(hypergrad_metrics({k: 2 * (x - target) * (1 + curve / i)
                                              for k, x in numbers},
                                             dict(numbers)))
        if not config.get("checkpoint"):
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "iteration"), "w") as f:
                f.write(str(i))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _instance_noise(config: dict[str, Any], numbers: list[tuple[str, float]]) -> float:
    if "instance" not in config:
        return 0.0
    return instance_offset(numbers, int(config["instance"]), float(config.get("noise", 0.0)),
                           float(config.get("instance_effect", 0.0)), config.get("noise_df"))


def instance_offset(numbers: list[tuple[str, float]], instance: int, noise: float,
                    instance_effect: float, noise_df: float | None = None) -> float:
    """``instance_effect * z_k + noise * z_kc``: ``z_k`` seeded by the instance alone (shared
    by every configuration), ``z_kc`` by the instance and the configuration's numbers:
    standard normal, or Student's t with ``noise_df`` degrees of freedom (heavy tails: a
    configuration that now and then does much worse on one instance, as a diverging seed)."""
    import numpy as np

    shared = np.random.default_rng([instance]).standard_normal()
    digest = int(hashlib.sha256(repr(numbers).encode()).hexdigest()[:12], 16)
    rng = np.random.default_rng([instance, digest])
    own = rng.standard_t(float(noise_df)) if noise_df else rng.standard_normal()
    return instance_effect * shared + noise * own


def instance_score(config: dict[str, Any], instance: int) -> float:
    """Score of ``config`` on ``instance``: ``(x - target)^2`` plus :func:`instance_offset`."""
    target = config.get("target", 0.5)
    numbers = [(k, v) for k, v in _numbers(config) if k not in _CONTROL]
    return sum((v - target) ** 2 for _, v in numbers) + instance_offset(
        numbers, instance, float(config.get("noise", 0.0)),
        float(config.get("instance_effect", 0.0)), config.get("noise_df"))


_CONTROL = {"target", "iterations", "curve", "noise", "sleep", "fail_at", "nan_at", "seed",
            "report_hypergrad", "checkpoint", "instance", "instance_effect", "instances",
            "noise_df", "report_placement"}


def placement() -> dict[str, Any]:
    """Where this trial runs: Ray node, the resources Ray assigned it, the GPUs it sees."""
    import ray

    context = ray.get_runtime_context()
    assigned = context.get_assigned_resources()
    return {"node_id": context.get_node_id(), "assigned_cpu": assigned.get("CPU", 0.0),
            "assigned_gpu": assigned.get("GPU", 0.0),
            "assigned_custom": {k: v for k, v in assigned.items()
                                if k not in ("CPU", "GPU", "memory") and "_group_" not in k},
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


def noisy_instances(config: dict[str, Any]) -> None:
    """A configuration scored on instances (for racing and its baselines; no torch).

    With ``instance`` in the config: one report, ``loss`` = :func:`instance_score` on it (one
    trial per configuration and instance, as the racing searchers run). Otherwise iteration i
    scores instance ``instances[i - 1]`` and reports the running mean as ``loss`` (one trial per
    configuration, so ASHA and Hyperband can stop it after some instances), with a checkpoint
    of the scores so far: a trial that Hyperband pauses at a milestone continues where it was
    (without one, Tune restarts it from its first instance and Ray's synchronous Hyperband can
    wait forever on its bracket).
    """
    if "instance" in config:
        tune.report({"loss": instance_score(config, int(config["instance"]))})
        return
    scores: list[float] = []
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder, open(os.path.join(folder, "scores")) as f:
            scores = [float(v) for v in f.read().split()]
    for instance in config["instances"][len(scores):]:
        scores.append(instance_score(config, int(instance)))
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "scores"), "w") as f:
                f.write(" ".join(repr(v) for v in scores))
            tune.report({"loss": sum(scores) / len(scores), "instances_seen": len(scores)},
                        checkpoint=tune.Checkpoint.from_directory(folder))


def _numbers(config: dict, prefix: str = "") -> list[tuple[str, float]]:
    out = []
    for key, value in config.items():
        if isinstance(value, dict):
            out += _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((f"{prefix}{key}", float(value)))
    return out

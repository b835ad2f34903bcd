"""Result keys of the trial contract (pure: no Ray, no torch at import)."""

from __future__ import annotations

from typing import Any

HPARAM_PREFIX = "hparams/"
HYPERGRAD_PREFIX = "hypergrad/"


def _flatten(name: str, value: Any) -> dict[str, float]:
    if hasattr(value, "detach"):
        value = value.detach().cpu().reshape(-1).tolist()
        if len(value) == 1:
            return {name: float(value[0])}
        return {f"{name}.{i}": float(v) for i, v in enumerate(value)}
    return {name: float(value)}


def hyperstep_metrics(result: Any) -> dict[str, float]:
    """Result keys of a :class:`~autometa.hypergrad.loop.HyperStepResult`."""
    out: dict[str, float] = {"train_loss": result.train_loss, "val_loss": result.val_loss,
                             "hyperstep_skipped": float(result.skipped)}
    for name, value in result.values.items():
        out.update({HPARAM_PREFIX + k: v for k, v in _flatten(name, value).items()})
    for name, value in result.hypergrads.items():
        out.update({HYPERGRAD_PREFIX + k: v for k, v in _flatten(name, value).items()})
    if result.info is not None:
        out["hypergrad_converged"] = float(result.info.converged)
    return out

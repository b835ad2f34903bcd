"""Reporting hypergradients to Ray Tune, with checkpoints: a user's own loop
(:func:`report_hypergradients`, :func:`restore_state`) or a
:class:`~autometa.hypergrad.loop.HyperTrainer` (:func:`report_hyperstep`, :func:`restore_trainer`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch
from ray import tune

from autometa.trial.keys import hyperstep_metrics

STATE_FILE = "hypertrainer.pt"
USER_STATE_FILE = "state.pt"


def report_hypergradients(hypergradients: Any, metrics: dict[str, Any] | None = None,
                          state: dict[str, Any] | None = None,
                          write: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``tune.report`` your metrics with the hypergradients' result keys and checks.

    Args:
        hypergradients: A :class:`~autometa.hypergrad.model.Hypergradients` (from
            ``ImplicitEngine.hypergradients``), or None to report ``metrics`` alone.
        metrics: Your own metrics (``val_loss``, ``epoch``, ...).
        state: Anything ``torch.save`` can write (model and optimizer ``state_dict()``, the
            epoch, the engine's ``state_dict()``): saved as the trial's checkpoint, so a paused,
            failed or exploited trial gets it back from :func:`restore_state`.
        write: ``write(folder)`` adds files of your own to the checkpoint.

    Returns:
        What was reported.
    """
    reported = dict(metrics or {})
    if hypergradients is not None:
        reported.update(hypergradients.metrics())
    if state is None and write is None:
        tune.report(reported)
        return reported
    with tempfile.TemporaryDirectory() as folder:
        if state is not None:
            torch.save(state, os.path.join(folder, USER_STATE_FILE))
        if write is not None:
            write(folder)
        tune.report(reported, checkpoint=tune.Checkpoint.from_directory(folder))
    return reported


def restore_state(map_location: Any = None) -> dict[str, Any] | None:
    """The ``state`` last given to :func:`report_hypergradients` in this trial, or None."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        path = os.path.join(folder, USER_STATE_FILE)
        if not os.path.exists(path):
            return None
        return torch.load(path, map_location=map_location, weights_only=False)


def report_hyperstep(trainer: Any, result: Any, extra: dict[str, float] | None = None,
                     checkpoint: bool = True,
                     write: Callable[[str], None] | None = None) -> dict[str, float]:
    """``tune.report`` the step's result keys (plus ``extra``), with the trainer's whole state;
    ``write(folder)`` adds files of the trial's own to the checkpoint."""
    metrics = {**hyperstep_metrics(result), **(extra or {}), "hyperstep": trainer.steps}
    if not checkpoint:
        tune.report(metrics)
        return metrics
    with tempfile.TemporaryDirectory() as folder:
        torch.save(trainer.state_dict(), os.path.join(folder, STATE_FILE))
        if write is not None:
            write(folder)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
    return metrics


def restore_trainer(trainer: Any) -> bool:
    """Load the trainer's state from Tune's checkpoint, if the trial has one."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as folder:
        state = torch.load(os.path.join(folder, STATE_FILE), weights_only=False,
                           map_location=next(trainer.model.parameters()).device)
    trainer.load_state_dict(state)
    return True

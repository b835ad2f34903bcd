"""Reporting a :class:`~autometa.hypergrad.loop.HyperTrainer` to Ray Tune, with checkpoints."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch
from ray import tune

from autometa.trial.keys import hyperstep_metrics

STATE_FILE = "hypertrainer.pt"


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

"""Stopping rules from the file, plus reporting of diverging trials."""

from __future__ import annotations

import logging
from typing import Any

from ray.tune.stopper import Stopper

from autometa.trial.keys import nonfinite_number

logger = logging.getLogger("autometa")


class ExperimentStopper(Stopper):
    """Stop a trial when a result key reaches its ``stop`` value, or when it diverges.

    A trial whose ``metric`` is NaN or infinite is stopped at once and reported
    (once) on the console; the rest of the search goes on.

    Args:
        stop: ``{result_key: value}``: stop when ``result[key] >= value``.
        metric: The searched metric, watched for NaN/inf.
    """

    def __init__(self, stop: dict[str, float], metric: str | None) -> None:
        self.stop = dict(stop)
        self.metric = metric
        self.diverged: dict[str, Any] = {}

    def __call__(self, trial_id: str, result: dict) -> bool:
        value = result.get(self.metric) if self.metric else None
        if nonfinite_number(value):
            if trial_id not in self.diverged:
                self.diverged[trial_id] = value
                logger.warning("trial %s diverged (%s=%r): stopping it, the search goes on",
                               trial_id, self.metric, value)
            return True
        return any(key in result and result[key] >= limit for key, limit in self.stop.items())

    def stop_all(self) -> bool:
        return False

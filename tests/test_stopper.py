"""The experiment stopper: the file's stop rules, and diverging trials stopped and reported."""

from __future__ import annotations

import logging
import math

from autometa.launch.stopper import ExperimentStopper


def test_stop_rules_and_divergence(caplog):
    stopper = ExperimentStopper({"training_iteration": 3}, "loss")
    assert not stopper("a", {"loss": 1.0, "training_iteration": 2})
    assert stopper("a", {"loss": 1.0, "training_iteration": 3})
    with caplog.at_level(logging.WARNING, logger="autometa"):
        assert stopper("b", {"loss": math.nan, "training_iteration": 1})
        assert stopper("b", {"loss": math.inf, "training_iteration": 2})
        assert stopper("c", {"loss": -math.inf, "training_iteration": 1})
    messages = [r.message for r in caplog.records]
    assert len(messages) == 2 and "trial b diverged" in messages[0]  # once per trial
    assert set(stopper.diverged) == {"b", "c"}
    assert not stopper.stop_all()

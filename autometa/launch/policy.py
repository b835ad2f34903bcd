"""``autometa policy export``: the best trial's learned augmentation policy, as a policy file.

Trials of ``digits_augment`` (or any trainable that does the same) save their current policy
as ``policy.yaml`` in every checkpoint; the best trial by the experiment's metric gives its
latest one.
"""

from __future__ import annotations

import os
import shutil

from autometa.augment.policy_file import load_policy
from autometa.launch.show import summarize


def export_best_policy(results: str, output: str | None = None, metric: str | None = None,
                       mode: str | None = None) -> tuple[str, str]:
    """Copy the best trial's latest ``policy.yaml`` to ``output`` (default: ``policy.yaml`` in
    ``results``); return the file and the trial id.

    Raises:
        FileNotFoundError: not an experiment folder, or the best trial saved no policy.
        ValueError: no trial reported the metric.
    """
    from ray.tune import ExperimentAnalysis

    summary = summarize(results, metric=metric, mode=mode)
    best = str(summary.table.iloc[0]["trial_id"])
    trial = next(t for t in ExperimentAnalysis(summary.path).trials if t.trial_id == best)
    folder = os.path.join(summary.path, os.path.basename(trial.path))
    saved = sorted(d for d in os.listdir(folder) if d.startswith("checkpoint_")
                   and os.path.isfile(os.path.join(folder, d, "policy.yaml")))
    if not saved:
        raise FileNotFoundError(f"{folder}: the best trial ({best}) saved no policy.yaml in its "
                                f"checkpoints; is its trainable one that learns a policy "
                                f"(e.g. digits_augment)?")
    source = os.path.join(folder, saved[-1], "policy.yaml")
    load_policy(source)  # a broken file is an error here, not later
    output = output or os.path.join(summary.path, "policy.yaml")
    shutil.copyfile(source, output)
    return output, best

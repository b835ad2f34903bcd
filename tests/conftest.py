"""Shared fixtures: one real local Ray per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray with 2 CPUs, started once per test session."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def storage(tmp_path):
    """A fresh results folder."""
    path = tmp_path / "results"
    path.mkdir()
    return str(path)

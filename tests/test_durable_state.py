"""The durable experiment state: snapshots taken after each Tune save, checkpoints pruned only
behind them, and the snapshot put back before a resume (real Tune, real files)."""

from __future__ import annotations

import json
import os

import pytest
from ray import tune

from autometa.launch.durable import (
    FOLDER,
    DurableStateCallback,
    checkpoint_index,
    current_snapshot,
    restore_snapshot,
    snapshot_refs,
    stale_checkpoints,
)
from autometa.trainables.synthetic import quadratic

ITERATIONS = 60


def test_checkpoint_index_reads_tunes_folder_names():
    assert checkpoint_index("checkpoint_000012") == 12
    assert checkpoint_index("checkpoint_tmp") is None
    assert checkpoint_index("result.json") is None


def test_stale_checkpoints_spares_the_needed_one_and_everything_after_it():
    names = [f"checkpoint_{i:06d}" for i in range(8)] + ["result.json"]
    # the snapshot resumes from 5: 0-4 may go, minus the newest `keep` (6, 7 are newer anyway)
    assert stale_checkpoints(names, "checkpoint_000005", keep=2) == [
        f"checkpoint_{i:06d}" for i in range(5)]
    # keep counts the newest overall: with keep=4, 4 stays too
    assert stale_checkpoints(names, "checkpoint_000005", keep=4) == [
        f"checkpoint_{i:06d}" for i in range(4)]
    assert stale_checkpoints(names, None, keep=1) == []  # resumes from scratch: keep all
    assert stale_checkpoints(names, "checkpoint_000000", keep=1) == []


def test_keep_must_be_positive():
    with pytest.raises(ValueError, match="keep must be at least 1"):
        DurableStateCallback(keep=0)


class _SnapshotChecker(tune.Callback):
    """After every step: the checkpoints the current snapshot resumes from exist, whole."""

    def __init__(self, experiment: str) -> None:
        self.experiment, self.checked, self.most = experiment, 0, 0

    def on_step_end(self, iteration, trials, **info):
        snapshot = current_snapshot(self.experiment)
        if snapshot is None:
            return
        for folder, name in snapshot_refs(snapshot).items():
            trial_dir = os.path.join(self.experiment, folder)
            if name is not None:
                assert os.path.isfile(os.path.join(trial_dir, name, "iteration")), (folder, name)
                self.checked += 1
            elif not os.path.isdir(trial_dir):
                continue  # a trial that has not reached the storage yet
            self.most = max(self.most, sum(n.startswith("checkpoint_")
                                           for n in os.listdir(trial_dir)))


def _run(storage: str, checker: tune.Callback | None = None):
    tuner = tune.Tuner(
        quadratic,
        param_space={"x": tune.grid_search([0.2, 0.7]), "iterations": ITERATIONS,
                     "sleep": 0.05, "checkpoint": True},
        run_config=tune.RunConfig(
            name="durable", storage_path=storage, verbose=0,
            callbacks=[DurableStateCallback(keep=2)] + ([checker] if checker else []),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None)))
    return tuner.fit()


def _rows(experiment: str) -> dict[str, list[dict]]:
    out = {}
    for name in os.listdir(experiment):
        file = os.path.join(experiment, name, "result.json")
        if os.path.isfile(file):
            with open(file) as handle:
                out[name] = [json.loads(line)["iteration"] for line in handle if line.strip()]
    return out


@pytest.fixture
def finished(ray_session, storage, monkeypatch):
    """A finished two-trial experiment that checkpointed every 50 ms, saved its state every
    second, and was checked after every step."""
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "1")
    experiment = os.path.join(storage, "durable")
    checker = _SnapshotChecker(experiment)
    results = _run(storage, checker)
    return experiment, results, checker


def test_snapshots_never_lose_the_checkpoints_they_need_and_old_ones_are_pruned(finished):
    experiment, results, checker = finished
    assert not results.errors and len(results) == 2
    assert checker.checked > 0  # the snapshot was looked at while the trials checkpointed
    for folder in _rows(experiment):
        kept = [n for n in os.listdir(os.path.join(experiment, folder))
                if n.startswith("checkpoint_")]
        assert kept and len(kept) < ITERATIONS, kept  # pruned, the last one still there
        assert f"checkpoint_{ITERATIONS - 1:06d}" in kept
    # the final snapshot is Tune's final state: a resume of the finished run changes nothing
    assert restore_snapshot(experiment) is None


def test_a_cut_off_state_file_is_replaced_by_the_snapshot_and_the_resume_reruns_nothing(
        finished):
    experiment, _, _ = finished
    rows = _rows(experiment)
    state = sorted(n for n in os.listdir(experiment) if n.startswith("experiment_state-"))[-1]
    with open(os.path.join(experiment, state), "r+") as handle:  # as a killed copy leaves it
        handle.truncate(os.path.getsize(os.path.join(experiment, state)) // 2)
    message = restore_snapshot(experiment)
    assert message and "resuming from the experiment state as saved at" in message
    with open(os.path.join(experiment, state)) as handle:
        json.load(handle)  # whole again
    assert os.listdir(os.path.join(experiment, FOLDER, "superseded"))  # the cut copy, kept
    results = tune.Tuner.restore(experiment, quadratic, resume_unfinished=True).fit()
    assert not results.errors and len(results) == 2
    assert _rows(experiment) == rows  # both had finished: nothing ran again


def test_without_a_snapshot_a_cut_off_state_is_named_not_silently_restarted(tmp_path):
    experiment = tmp_path / "old"
    experiment.mkdir()
    (experiment / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": [')
    with pytest.raises(FileNotFoundError, match="cut off when the run stopped.*nothing to resume"):
        restore_snapshot(str(experiment))
    # with an earlier, whole state of another session, that one is used
    (experiment / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    (experiment / "experiment_state-2026-01-02_00-00-00.json").write_text('{"trial_data": [')
    (experiment / "searcher-state-2026-01-02_00-00-00.pkl").write_bytes(b"")
    message = restore_snapshot(str(experiment))
    assert "experiment_state-2026-01-02_00-00-00.json was cut off" in message
    assert sorted(os.listdir(experiment)) == [FOLDER, "experiment_state-2026-01-01_00-00-00.json"]
    assert restore_snapshot(str(experiment)) is None  # nothing left to fix

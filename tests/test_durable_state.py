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
    NoSavedState,
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
    with pytest.raises(NoSavedState, match="cut off when the run stopped, and no earlier one"):
        restore_snapshot(str(experiment))
    # with an earlier, whole state of another session, that one is used
    (experiment / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    (experiment / "experiment_state-2026-01-02_00-00-00.json").write_text('{"trial_data": [')
    (experiment / "searcher-state-2026-01-02_00-00-00.pkl").write_bytes(b"")
    message = restore_snapshot(str(experiment))
    assert "experiment_state-2026-01-02_00-00-00.json was cut off" in message
    assert sorted(os.listdir(experiment)) == [FOLDER, "experiment_state-2026-01-01_00-00-00.json"]
    assert restore_snapshot(str(experiment)) is None  # nothing left to fix


def _write_trial(folder, checkpoints, cut_line=False):
    """A trial folder as Tune leaves it: one result row (and CSV record) per report, the
    report's checkpoint named in it."""
    import csv

    folder.mkdir(parents=True)
    rows = [{"iteration": i, "loss": 1.0 / i, "training_iteration": i,
             "checkpoint_dir_name": checkpoints.get(i)} for i in range(1, 6)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if cut_line:
        text += '{"iteration": 6, "lo'
    (folder / "result.json").write_text(text)
    with open(folder / "progress.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(rows[0]))
        writer.writerows([list(map(str, r.values())) for r in rows])
    return rows


def test_trim_results_keeps_the_reports_up_to_the_checkpoint_it_resumes_from(tmp_path):
    import csv

    from autometa.launch.durable import trim_results

    # checkpoints at iterations 2 and 4 (checkpoint_000000, checkpoint_000001)
    names = {2: "checkpoint_000000", 4: "checkpoint_000001"}
    trial = tmp_path / "trial"
    rows = _write_trial(trial, names, cut_line=True)
    aside = tmp_path / "aside"
    assert trim_results(str(trial), "checkpoint_000000", str(aside)) == 4  # 3, 4, 5, cut line
    kept = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert kept == rows[:2]
    with open(trial / "progress.csv", newline="") as handle:
        records = list(csv.reader(handle))
    assert len(records) == 3 and records[-1][0] == "2"  # header + iterations 1, 2
    assert (aside / "result.json").read_text().count("\n") == 5  # the old files, kept
    # resuming from no checkpoint (from scratch): nothing is kept
    assert trim_results(str(trial), None, str(tmp_path / "aside2")) == 2
    assert (trial / "result.json").read_text() == ""
    # a checkpoint no report names (e.g. a row not yet copied): left alone
    other = tmp_path / "other"
    _write_trial(other, names)
    before = (other / "result.json").read_text()
    assert trim_results(str(other), "checkpoint_000007", str(tmp_path / "aside3")) == 0
    assert (other / "result.json").read_text() == before


def test_the_resume_trims_only_trials_that_resume(tmp_path):
    from autometa.launch.durable import write_snapshot

    experiment = tmp_path / "exp"
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    names = {2: "checkpoint_000000", 4: "checkpoint_000001"}
    done = _write_trial(experiment / "done", names)
    _write_trial(experiment / "running", names)
    _write_trial(experiment / "exploited", names)
    _write_trial(experiment / "exploited_started", names)
    write_snapshot(str(staging), str(experiment),
                   {"done": "checkpoint_000001", "running": "checkpoint_000000",
                    "exploited": "checkpoint_000000", "exploited_started": "checkpoint_000001"},
                   {"done": "TERMINATED", "running": "RUNNING", "exploited": "PAUSED",
                    "exploited_started": "RUNNING"},
                   {"done": "done", "running": "running", "exploited": "done",
                    "exploited_started": "done"},
                   {"exploited_started": 3})  # 3 reports when it started from done's
    message = restore_snapshot(str(experiment))
    assert "2 trial(s) resume from a checkpoint older than their last reports (exploited_started" \
           ", running)" in message
    lines = lambda name: (experiment / name / "result.json").read_text().splitlines()  # noqa: E731
    assert [json.loads(x) for x in lines("done")] == done  # finished: untouched
    assert len(lines("running")) == 2
    assert len(lines("exploited")) == 5  # not started from another's checkpoint yet: untouched
    assert len(lines("exploited_started")) == 3  # the reports it makes again from it: cut


def test_trial_folders_the_saved_state_does_not_know_are_set_aside(tmp_path):
    from autometa.launch.durable import write_snapshot

    experiment = tmp_path / "exp"
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    names = {2: "checkpoint_000000"}
    known = _write_trial(experiment / "quadratic_0001_known", names)
    # started (and finished) after the last save, then the kill: unknown to the saved state
    _write_trial(experiment / "quadratic_0002_later", names)
    (experiment / "quadratic_0003_bare").mkdir()  # params only: it had just started
    (experiment / "quadratic_0003_bare" / "params.json").write_text("{}")
    (experiment / "notes").mkdir()  # not a trial's folder: left alone
    (experiment / "notes" / "mine.txt").write_text("kept")
    write_snapshot(str(staging), str(experiment), {"quadratic_0001_known": None},
                   {"quadratic_0001_known": "TERMINATED"})
    message = restore_snapshot(str(experiment))
    assert "2 trial folder(s) started after the saved state (quadratic_0002, quadratic_0003)" \
        in message
    left = sorted(n for n in os.listdir(experiment) if not n.startswith("experiment_state"))
    assert left == [FOLDER, "notes", "quadratic_0001_known"]
    (aside,) = os.listdir(experiment / FOLDER / "superseded")
    moved = experiment / FOLDER / "superseded" / aside
    assert sorted(os.listdir(moved)) == ["quadratic_0002_later", "quadratic_0003_bare"]
    assert (moved / "quadratic_0002_later" / "result.json").read_text().count("\n") == 5
    lines = (experiment / "quadratic_0001_known" / "result.json").read_text().splitlines()
    assert [json.loads(x) for x in lines] == known
    assert restore_snapshot(str(experiment)) is None  # nothing left to set aside


def test_a_snapshot_without_statuses_sets_no_folder_aside(tmp_path):
    from autometa.launch.durable import write_snapshot

    experiment, staging = tmp_path / "exp", tmp_path / "staging"
    staging.mkdir()
    (staging / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    _write_trial(experiment / "quadratic_0001_a", {})
    write_snapshot(str(staging), str(experiment), {"quadratic_0001_a": None})  # autometa 0.1
    restore_snapshot(str(experiment))
    assert (experiment / "quadratic_0001_a" / "result.json").is_file()


def test_results_are_copied_only_where_the_staged_log_extends_the_folders(tmp_path):
    from autometa.launch.durable import copy_results

    staging, folder = tmp_path / "staging", tmp_path / "trial"
    staging.mkdir()
    assert copy_results(str(staging), str(folder)) == []  # nothing written yet
    (staging / "result.json").write_text('{"i": 1}\n{"i": 2}\n')
    assert copy_results(str(staging), str(folder)) == ["result.json"]
    assert (folder / "result.json").read_text() == '{"i": 1}\n{"i": 2}\n'
    assert copy_results(str(staging), str(folder)) == []  # up to date
    (folder / "result.json").write_text('{"i": 1}\n{"i": 2}\n{"i": 3}\n')  # the folder ahead
    assert copy_results(str(staging), str(folder)) == []
    (staging / "result.json").write_text('{"i": 7}\n{"i": 8}\n{"i": 9}\n{"i": 10}\n')
    assert copy_results(str(staging), str(folder)) == []  # longer, but another log
    assert (folder / "result.json").read_text().startswith('{"i": 1}')

"""An experiment state that survives a killed driver, and checkpoints pruned only when safe.

Tune writes its experiment state (trials, searcher, callbacks) to a staging folder and copies
it to the storage folder in a background thread; ``CheckpointConfig(num_to_keep=k)`` deletes a
trial's old checkpoints as soon as a new one is registered. A driver killed at the wrong
moment (SIGKILL, a lost head node) therefore leaves either

* a state file cut off in the middle: ``Tuner.restore`` logs "Failed to restore the run
  state" and silently starts the experiment over, or
* a saved state whose trials point at checkpoints that were deleted since: each such trial
  ends in ERROR on resume (``FileNotFoundError: Path not found``).

A third loss comes from Tune's result loggers: each time a trial starts again from a
checkpoint (after a synchronous Hyperband pause, a retry, a resume) they copy its results
back from the experiment folder over the driver's newer copy, and a trial's results reach
the experiment folder only with Tune's background copy: the reports in between are lost.

:class:`DurableStateCallback` closes all three: it brings a trial's results to the
experiment folder before the trial starts again and before each snapshot; after every save
of the experiment state it copies the finished state files into a new ``.autometa/state-N``
folder of the experiment and then switches ``.autometa/CURRENT`` to it (one atomic rename),
and it deletes a trial's older checkpoints only once a snapshot that no longer needs them is
in place. Before ``Tuner.restore``, :func:`restore_snapshot` puts the snapshot's files back
in the experiment folder (Tune's own copies that differ are moved to
``.autometa/superseded``) and cuts the results of resuming trials back to their checkpoint.

    tuner = tune.Tuner(train, run_config=tune.RunConfig(
        callbacks=[DurableStateCallback(keep=2)],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None)))  # the callback prunes
    ...
    restore_snapshot(path)
    tuner = tune.Tuner.restore(path, train)

``autometa run`` does both. Storage on a shared file system (NFS) works as a local folder;
with a cloud URI (``s3://``) the callback does nothing (keep Tune's ``num_to_keep`` there).
"""

from __future__ import annotations

import filecmp
import fnmatch
import json
import os
import shutil
import time
from typing import Any

from ray.tune import Callback

FOLDER = ".autometa"
POINTER = "CURRENT"
REFS = "autometa-checkpoint-refs.json"
# The files Tune writes for an experiment state (the templates of TuneController, SearchGenerator,
# Searcher, BasicVariantGenerator and CallbackList).
STATE_FILES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl",
               "basic-variant-state-*.json", "callback-states-*.pkl")
# A trial's results, written by Tune's JSON and CSV logger callbacks; with the error file that
# Tune writes for a failed trial, what the driver keeps in its staging folder and copies later.
RESULT_FILES = ("result.json", "progress.csv")
STAGED_FILES = (*RESULT_FILES, "error.txt")


def is_state_file(name: str) -> bool:
    """Whether ``name`` is one of the files of a Tune experiment state."""
    return any(fnmatch.fnmatch(name, pattern) for pattern in STATE_FILES)


def checkpoint_index(name: str) -> int | None:
    """``checkpoint_000012`` -> 12; None for any other name."""
    prefix, _, number = name.partition("_")
    return int(number) if prefix == "checkpoint" and number.isdigit() else None


def stale_checkpoints(names: list[str], needed: str | None, keep: int) -> list[str]:
    """The checkpoints of one trial that can go: older than ``needed`` (the one the durable
    state resumes from; None: it resumes from scratch, so none can go), beyond the ``keep``
    newest."""
    limit = checkpoint_index(needed) if needed is not None else None
    if limit is None:
        return []
    ordered = sorted((i, n) for n in names if (i := checkpoint_index(n)) is not None)
    newest = {n for _, n in ordered[-keep:]} if keep > 0 else set()
    return [n for i, n in ordered if i < limit and n not in newest]


def current_snapshot(experiment: str) -> str | None:
    """The folder of the experiment's last complete snapshot, or None."""
    try:
        with open(os.path.join(experiment, FOLDER, POINTER)) as handle:
            name = handle.read().strip()
    except FileNotFoundError:
        return None
    folder = os.path.join(experiment, FOLDER, name)
    return folder if name and os.path.isdir(folder) else None


def write_snapshot(staging: str, experiment: str, refs: dict[str, str | None],
                   statuses: dict[str, str] | None = None,
                   sources: dict[str, str | None] | None = None,
                   started: dict[str, int] | None = None) -> str:
    """Copy the state files of ``staging`` to a new snapshot of ``experiment`` and make it the
    current one. Goes with it, per trial folder: ``refs``, the checkpoint it resumes from;
    ``statuses``, its status in that state; ``sources``, the trial folder that checkpoint is in
    (another trial's after a population scheduler's exploit); ``started``, for a trial that
    started from another trial's checkpoint (``refs``), the reports it had then (those after
    them it makes again when it resumes from that checkpoint)."""
    root = os.path.join(experiment, FOLDER)
    os.makedirs(root, exist_ok=True)
    previous = current_snapshot(experiment)
    number = int(os.path.basename(previous).rpartition("-")[2]) + 1 if previous else 1
    folder = os.path.join(root, f"state-{number}")
    shutil.rmtree(folder, ignore_errors=True)  # a leftover of a copy that was cut off
    os.makedirs(folder)
    for name in sorted(os.listdir(staging)):
        if is_state_file(name) and os.path.isfile(os.path.join(staging, name)):
            shutil.copy2(os.path.join(staging, name), os.path.join(folder, name))
    with open(os.path.join(folder, REFS), "w") as handle:
        json.dump({"time": time.time(), "checkpoints": refs, "statuses": statuses or {},
                   "sources": sources or {}, "started": started or {}}, handle)
    pointer = os.path.join(root, POINTER)
    with open(pointer + ".tmp", "w") as handle:
        handle.write(os.path.basename(folder))
    os.replace(pointer + ".tmp", pointer)  # the switch: before it, the old snapshot stands
    for name in os.listdir(root):
        if name.startswith("state-") and name != os.path.basename(folder):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return folder


def snapshot_refs(folder: str) -> dict[str, str | None]:
    """Trial folder -> the checkpoint (folder name) that snapshot resumes it from."""
    return _manifest(folder)["checkpoints"]


def snapshot_statuses(folder: str) -> dict[str, str]:
    """Trial folder -> its status in that snapshot (empty for a snapshot of autometa <= 0.1)."""
    return dict(_manifest(folder).get("statuses", {}))


def snapshot_sources(folder: str) -> dict[str, str | None]:
    """Trial folder -> the trial folder its checkpoint in that snapshot is in (another trial's
    after a population scheduler's exploit; empty for a snapshot of autometa <= 0.1)."""
    return dict(_manifest(folder).get("sources", {}))


def _manifest(folder: str) -> dict[str, Any]:
    with open(os.path.join(folder, REFS)) as handle:
        return json.load(handle)


class DurableStateCallback(Callback):
    """Snapshots each saved experiment state atomically; prunes checkpoints behind it.

    Args:
        keep: Checkpoints kept per trial besides any that the snapshot still needs (at least
            the newest ``keep``); None keeps every checkpoint (population schedulers copy old
            ones).
    """

    def __init__(self, keep: int | None = 2) -> None:
        if keep is not None and keep < 1:
            raise ValueError(f"keep must be at least 1 or None, got {keep}")
        self.keep = keep
        self._reset()

    def _reset(self) -> None:
        self._trials: list[Any] = []
        self._saved_refs: dict[str, str | None] | None = None  # from the last save, if pending
        self._saved_statuses: dict[str, str] = {}
        self._saved_sources: dict[str, str | None] = {}
        self._saved_started: dict[str, int] = {}
        # trial folder -> (another trial's checkpoint it started from, its reports then)
        self._started: dict[str, tuple[str, int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"keep": self.keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.keep = state["keep"]
        self._reset()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self._trials = trials

    def get_state(self) -> None:
        # Tune asks every callback for its state while it saves the experiment state; the
        # trials' checkpoints now are the ones that state refers to.
        local = [t for t in self._trials if _is_local(t)]
        self._saved_refs = {_folder(t): _checkpoint_name(t) for t in local}
        self._saved_statuses = {_folder(t): str(t.status) for t in local}
        self._saved_sources = {_folder(t): _checkpoint_folder(t) for t in local}
        self._saved_started = {
            _folder(t): self._started[_folder(t)][1] for t in local
            if _folder(t) in self._started and t.checkpoint is not None
            and self._started[_folder(t)][0] == t.checkpoint.path}
        return None  # nothing of ours to save

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Tune's result loggers (they run after this callback) copy a trial's results back
        # from the experiment folder each time it starts again with a checkpoint (after a
        # pause, a retry): where Tune's background copy has not brought the latest results
        # there yet, those results would be overwritten. Bring them there first.
        if not _is_local(trial):
            return
        copy_results(trial.storage.trial_driver_staging_path, trial.storage.trial_fs_path)
        folder, checkpoint = _folder(trial), trial.checkpoint
        if checkpoint is not None and _checkpoint_folder(trial) != folder:  # an exploit's
            if self._started.get(folder, ("",))[0] != checkpoint.path:  # (a retry: the first)
                self._started[folder] = (checkpoint.path, count_reports(trial.storage.trial_fs_path))

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._trials = trials
        self._persist()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._trials = trials
        self._persist()  # the final save comes after the last step

    def _persist(self) -> None:
        refs, self._saved_refs = self._saved_refs, None
        local = [t for t in self._trials if _is_local(t)]
        if refs is None or not local:
            return
        for trial in local:  # the results the saved state knows reach the folder first
            copy_results(trial.storage.trial_driver_staging_path, trial.storage.trial_fs_path)
        storage = local[0].storage
        write_snapshot(storage.experiment_driver_staging_path, storage.experiment_fs_path, refs,
                       self._saved_statuses, self._saved_sources, self._saved_started)
        if self.keep is None:
            return
        for trial in local:
            folder = _folder(trial)
            if folder not in refs or not os.path.isdir(trial.storage.trial_fs_path):
                continue
            names = os.listdir(trial.storage.trial_fs_path)
            for name in stale_checkpoints(names, refs[folder], self.keep):
                shutil.rmtree(os.path.join(trial.storage.trial_fs_path, name),
                              ignore_errors=True)


def copy_results(staging: str, folder: str) -> list[str]:
    """Copy a trial's result files (and error file) from Tune's staging folder on the driver
    to its folder where they grew (each atomically: Tune's own background copy may write them meanwhile);
    return the names copied.

    Tune writes results to the staging folder and copies them to the experiment folder in the
    background after it saves the experiment state; a kill before that copy ends leaves the
    folder with fewer results than the saved state has seen, and those reports are lost for
    good once the trial resumes after them.
    """
    copied = []
    for name in STAGED_FILES:
        source, target = os.path.join(staging, name), os.path.join(folder, name)
        try:
            if not _extends(source, target):
                continue
            os.makedirs(folder, exist_ok=True)
            shutil.copyfile(source, target + ".autometa-tmp")
            os.replace(target + ".autometa-tmp", target)
        except OSError:  # not written yet
            continue
        copied.append(name)
    return copied


def count_reports(folder: str) -> int:
    """The whole reports in a trial folder's ``result.json`` (0 where there is none)."""
    try:
        with open(os.path.join(folder, RESULT_FILES[0])) as handle:
            return len(_whole_reports(handle.read().splitlines()))
    except FileNotFoundError:
        return 0


def _whole_reports(lines: list[str]) -> list[Any]:
    """The reports of ``result.json``'s lines, up to the first that does not parse (the line
    a kill cut off: a report of the driver's, never acted on)."""
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
    return rows


def _extends(source: str, target: str, tail: int = 256) -> bool:
    """Whether ``source`` is longer than ``target`` and goes on from it (their bytes agree
    where ``target`` ends: an appended log, not another one)."""
    if not os.path.exists(target):
        return os.path.exists(source)
    size = os.path.getsize(target)
    if os.path.getsize(source) <= size:
        return False
    start = max(0, size - tail)
    with open(source, "rb") as a, open(target, "rb") as b:
        a.seek(start)
        b.seek(start)
        return a.read(size - start) == b.read()


def _is_local(trial: Any) -> bool:
    import pyarrow.fs

    storage = getattr(trial, "storage", None)
    return storage is not None and isinstance(storage.storage_filesystem,
                                              pyarrow.fs.LocalFileSystem)


def _folder(trial: Any) -> str:
    return os.path.basename(trial.storage.trial_fs_path)


def _checkpoint_folder(trial: Any) -> str | None:
    checkpoint = trial.checkpoint
    return (os.path.basename(os.path.dirname(checkpoint.path.rstrip("/")))
            if checkpoint is not None else None)


def _checkpoint_name(trial: Any) -> str | None:
    checkpoint = trial.checkpoint
    return os.path.basename(checkpoint.path.rstrip("/")) if checkpoint is not None else None


class NoSavedState(FileNotFoundError):
    """The run stopped before Tune saved any whole experiment state: nothing to resume from."""


def restore_snapshot(experiment: str) -> str | None:
    """Put the experiment's last snapshot back before ``Tuner.restore``; say what changed.

    Tune's state files that differ from the snapshot, or that it lacks, are moved to
    ``.autometa/superseded``. Without a snapshot (an experiment of an older autometa, or one
    killed before its first save), state files that cannot be read are moved there instead,
    so that Tune does not silently start over. Then each trial that will resume has the
    results it reported after the checkpoint it resumes from moved there too (it reports
    them again; see :func:`trim_results`). Returns a line for the user, or None when nothing
    had to change. Trial folders that the snapshot's state does not know (trials started
    after it was saved) are moved to ``.autometa/superseded`` as well.

    Raises:
        NoSavedState: No whole experiment state is left to resume from (the run stopped
            before Tune first saved it, or every state was cut off).
    """
    snapshot = current_snapshot(experiment)
    aside = os.path.join(experiment, FOLDER, "superseded", time.strftime("%Y%m%d-%H%M%S"))
    if snapshot is None:
        if not any(fnmatch.fnmatch(n, STATE_FILES[0]) for n in os.listdir(experiment)):
            raise NoSavedState(f"{experiment}: the run stopped before Tune first saved its "
                               f"state")
        return _drop_unreadable(experiment, aside)
    wanted = {n for n in os.listdir(snapshot) if is_state_file(n)}
    moved = []
    for name in sorted(os.listdir(experiment)):
        path = os.path.join(experiment, name)
        if not is_state_file(name) or not os.path.isfile(path):
            continue
        if name in wanted and filecmp.cmp(path, os.path.join(snapshot, name), shallow=False):
            wanted.discard(name)  # Tune's copy is the snapshot's
            continue
        os.makedirs(aside, exist_ok=True)
        os.replace(path, os.path.join(aside, name))
        moved.append(name)
    for name in sorted(wanted):
        shutil.copy2(os.path.join(snapshot, name), os.path.join(experiment, name + ".tmp"))
        os.replace(os.path.join(experiment, name + ".tmp"), os.path.join(experiment, name))
    lines = []
    if moved or wanted:
        saved = time.strftime("%H:%M:%S", time.localtime(float(_manifest(snapshot)["time"])))
        note = f"; Tune's differing copies are in {aside}" if moved else ""
        lines.append(f"autometa: resuming from the experiment state as saved at {saved} (the "
                     f"copy Tune was writing when the run stopped was incomplete or ahead of "
                     f"its checkpoints{note})")
    unknown = _set_aside_unknown(experiment, snapshot, aside)
    if unknown:
        names = ", ".join("_".join(t.split("_")[:2]) for t in unknown)
        lines.append(f"autometa: {len(unknown)} trial folder(s) started after the saved state "
                     f"({names}) are not part of the run that resumes; moved to {aside}")
    trimmed = _trim_resuming(experiment, snapshot, aside)
    if trimmed:
        names = ", ".join("_".join(t.split("_")[:2]) for t in trimmed)  # trainable_trialid
        lines.append(f"autometa: {len(trimmed)} trial(s) resume from a checkpoint older than "
                     f"their last reports ({names}); those reports are in {aside} and the "
                     f"trials report them again")
    return "\n".join(lines) or None


def _set_aside_unknown(experiment: str, snapshot: str, aside: str) -> list[str]:
    """Move the trial folders that the snapshot's state does not know to ``aside``.

    A trial that Tune started after its last save (and that may have finished before the
    kill) has a folder but no place in the saved state: the resumed run never lists it and
    its searcher suggests that point again. Left there, the folder would sit among the run's
    trials unlisted. The snapshot's statuses name every trial of the saved state (they come
    from Tune's own trial list at the save); a snapshot without statuses (autometa <= 0.1)
    moves nothing.
    """
    known = snapshot_statuses(snapshot)
    if not known:
        return []
    unknown = [name for name in sorted(os.listdir(experiment))
               if name not in known and _is_trial_folder(os.path.join(experiment, name))]
    for name in unknown:
        os.makedirs(aside, exist_ok=True)
        os.replace(os.path.join(experiment, name), os.path.join(aside, name))
    return unknown


def _is_trial_folder(path: str) -> bool:
    """Whether ``path`` is a folder as Tune writes one per trial (its parameters, results or
    checkpoints in it)."""
    if os.path.basename(path).startswith(".") or not os.path.isdir(path):
        return False
    names = os.listdir(path)
    return (any(n in names for n in ("params.json", "params.pkl", *STAGED_FILES))
            or any(checkpoint_index(n) is not None for n in names))


def _trim_resuming(experiment: str, snapshot: str, aside: str) -> list[str]:
    """Trim the results of the snapshot's trials that resume (every status but TERMINATED)."""
    manifest = _manifest(snapshot)
    refs, statuses = manifest["checkpoints"], manifest.get("statuses", {})
    sources, started = manifest.get("sources", {}), manifest.get("started", {})
    trimmed = []
    for folder, status in sorted(statuses.items()):
        trial_dir = os.path.join(experiment, folder)
        ref = refs.get(folder)
        if status == "TERMINATED" or not os.path.isdir(trial_dir):
            continue
        reports = None
        if ref is not None and sources.get(folder) != folder:  # another trial's (an exploit)
            if folder not in started:
                continue  # not started from it yet: every report is its own history's
            reports = int(started[folder])  # its reports from that checkpoint on come again
        if trim_results(trial_dir, ref, os.path.join(aside, folder), reports=reports):
            trimmed.append(folder)
    return trimmed


def trim_results(trial_dir: str, checkpoint: str | None, aside: str, *,
                 reports: int | None = None) -> int:
    """Cut a trial's ``result.json`` and ``progress.csv`` after the report that saved
    ``checkpoint`` (None: the trial starts over, so after no report), or after its first
    ``reports`` reports where given (it resumes from another trial's checkpoint, which none of
    its reports names); return the reports cut.

    A resumed trial reports again every iteration after the checkpoint it resumes from (a
    trial that finished after Tune's last save of the experiment state, too: to Tune it was
    still running); cutting them first leaves each iteration recorded once, as it was run in
    the history the trial goes on from. A line cut off by the kill goes as well. The old
    files are moved to ``aside``. Nothing changes when no report names ``checkpoint``.
    """
    import csv

    file = os.path.join(trial_dir, RESULT_FILES[0])
    if not os.path.isfile(file):
        return 0
    with open(file) as handle:
        lines = handle.read().splitlines()
    rows = _whole_reports(lines)
    if reports is not None:
        keep = min(reports, len(rows))
    elif checkpoint is None:
        keep = 0
    else:
        named = [i for i, row in enumerate(rows) if isinstance(row, dict)
                 and row.get("checkpoint_dir_name") == checkpoint]
        if not named:
            return 0
        keep = named[-1] + 1
    if keep == len(lines):
        return 0
    os.makedirs(aside, exist_ok=True)
    csv_file = os.path.join(trial_dir, RESULT_FILES[1])
    records = None
    if os.path.isfile(csv_file):
        with open(csv_file, newline="") as handle:
            records = list(csv.reader(handle))
        os.replace(csv_file, os.path.join(aside, RESULT_FILES[1]))
    os.replace(file, os.path.join(aside, RESULT_FILES[0]))
    with open(file + ".tmp", "w") as handle:
        handle.writelines(line + "\n" for line in lines[:keep])
    os.replace(file + ".tmp", file)
    if records:  # a header, then one record per report
        with open(csv_file + ".tmp", "w", newline="") as handle:
            csv.writer(handle).writerows(records[:1 + keep] if keep else records[:1])
        os.replace(csv_file + ".tmp", csv_file)
    return len(lines) - keep


def _drop_unreadable(experiment: str, aside: str) -> str | None:
    states = sorted((n for n in os.listdir(experiment) if fnmatch.fnmatch(n, STATE_FILES[0])),
                    reverse=True)
    dropped = []
    for name in states:  # newest first, as Tune picks them
        try:
            with open(os.path.join(experiment, name)) as handle:
                json.load(handle)
            break
        except (OSError, ValueError):
            session = name[len("experiment_state-"):-len(".json")]
            os.makedirs(aside, exist_ok=True)
            for other in os.listdir(experiment):
                if is_state_file(other) and session in other:
                    os.replace(os.path.join(experiment, other), os.path.join(aside, other))
            dropped.append(name)
    if not dropped:
        return None
    if len(dropped) == len(states):
        raise NoSavedState(
            f"{experiment}: the experiment state was cut off when the run stopped, and no "
            f"earlier one was saved (moved to {aside})")
    return (f"autometa: {', '.join(dropped)} was cut off when the run stopped (moved to "
            f"{aside}); resuming from the state saved before it")

"""The driver killed with SIGKILL, then ``autometa run FILE --resume`` (in the test's process,
on its Ray: a fresh process adds only Ray's start, which test_cli.py's runs cover): a kill campaign over
the registered searchers and schedulers (those left out: see CAMPAIGN), at seeded random
points from the first second of a run (before Tune first saved its state) to just after its
last trial. Every time: no trial
lost, each iteration of each trial recorded once, no trial started again below the checkpoint
the saved state resumes it from, the summary and exit status right, and no Ray process of the
killed run left once the resume is done."""

from __future__ import annotations

import glob
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from autometa.launch.cli import main
from autometa.launch.durable import (
    current_snapshot,
    snapshot_refs,
    snapshot_sources,
    snapshot_statuses,
)
from autometa.launch.leftovers import leftover_ray_processes
from autometa.schedulers import SCHEDULERS
from autometa.searchers import SEARCHERS

ITERATIONS = 4
GRID = [round(0.1 * i, 1) for i in range(10)]
# (searcher, scheduler, kill point): every registered searcher and scheduler at least once;
# "start": within a second of the run's first file, "mid": after a few checkpoints, "end":
# once every trial has saved its last iteration (its trials do not stop early)
CAMPAIGN = [("grid", "asha", "end"), ("bohb", "bohb", "mid"),
            ("hypergradient", "hyperband", "start"), ("irace", "fifo", "start"),
            ("random", "pbt", "end")]
# (five runs, for the suite's time: tpe and race are interrupted and resumed only by
# test_cli.py's Ctrl-C tests, the hypergradient_pbt scheduler by test_population_scheduler.py
# (its state through an interrupted and restored experiment; its exploits' trial folders are
# pbt's, which is here), the median rule by none; every kill point and the other schedulers
# are here)
POPULATION = ("pbt", "hypergradient_pbt")


def test_every_kill_point_and_the_stateful_schedulers_are_covered():
    assert {s for s, _, _ in CAMPAIGN} == set(SEARCHERS) - {"tpe", "race"}
    assert {s for _, s, _ in CAMPAIGN} == set(SCHEDULERS) - {"median", "hypergradient_pbt"}
    assert {k for _, _, k in CAMPAIGN} == {"start", "mid", "end"}


def _planned(searcher):
    return {"grid": len(GRID), "race": None, "irace": None}.get(searcher, 8)


def _file(tmp_path, searcher, scheduler):
    options = {"grid": "{name: grid}", "race": "{name: race, candidates: 3, min_instances: 2, "
               "max_instances: 3}", "irace": "{name: irace, candidates: 3, min_instances: 2, "
               "max_instances: 3}", "hypergradient": "{name: hypergradient, chains: 2}",
               "tpe": "{name: tpe, n_initial_points: 3}"}.get(searcher, searcher)
    sched = {"asha": "{name: asha, grace_period: 1, max_t: 4}",
             "hyperband": "{name: hyperband, max_t: 4, reduction_factor: 2}",
             "bohb": "{name: bohb, max_t: 4, reduction_factor: 2}",
             "median": "{name: median, grace_period: 1, min_samples_required: 2}",
             }.get(scheduler, scheduler)
    x = (f"{{type: grid, values: {GRID}}}" if searcher == "grid" else
         "{type: uniform, low: 0, high: 1, differentiable: true}")
    text = f"""\
        experiment:
          name: crash
          trainable: quadratic
          metric: loss
          searcher: {options}
          scheduler: {sched}
          num_samples: {1 if searcher == "grid" else 8 if searcher not in ("race", "irace") else 12}
          storage_path: {tmp_path / "results"}
          seed: 0
        parameters:
          x: {x}
          iterations: {ITERATIONS}
          sleep: 0.1
          checkpoint: true
          report_hypergrad: true
          report_placement: true
          noise: 0.05
          instance_effect: 1.0
        """
    if scheduler in POPULATION:
        text = text.replace("          seed: 0\n", "          max_concurrent_trials: 4\n"
                                                    "          seed: 0\n")
    path = tmp_path / "crash.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def _rows(folder):
    file = os.path.join(folder, "result.json")
    if not os.path.isfile(file):
        return []
    rows = []
    with open(file) as handle:
        for line in handle:
            try:
                rows.append(json.loads(line))
            except ValueError:
                break  # cut off by the kill
    return rows


def _trials(path):
    if not os.path.isdir(path):
        return {}
    return {d: _rows(os.path.join(path, d)) for d in sorted(os.listdir(path))
            if os.path.isdir(os.path.join(path, d)) and not d.startswith(".")}


def _finished(trials):
    """Trials whose results reach the last iteration (early-stopped ones are not recognized)."""
    return {d for d, rows in trials.items() if rows and rows[-1].get("iteration") == ITERATIONS}


def _checkpoints(path):
    """Checkpoints saved so far, one per trial iteration (they reach the storage at once;
    result files only when Tune syncs the experiment)."""
    return len(glob.glob(os.path.join(path, "*", "checkpoint_*")))


def _at_last_iteration(path):
    """Trials with a checkpoint of their last iteration."""
    done = set()
    for file in glob.glob(os.path.join(path, "*", "checkpoint_*", "iteration")):
        try:
            if open(file).read().strip() == str(ITERATIONS):
                done.add(file.split(os.sep)[-3])
        except OSError:
            continue
    return len(done)


def _resume_points(path):
    """Trial folder -> the iteration the saved state resumes it after (0: from scratch)."""
    snapshot = current_snapshot(path)
    if snapshot is None:
        return {}
    points = {}
    for folder, name in snapshot_refs(snapshot).items():
        file = os.path.join(path, folder, name or "-", "iteration")
        points[folder] = int(open(file).read()) if name and os.path.isfile(file) else 0
    return points


def _exploit_pending(path):
    """Trial folders the saved state resumes from another trial's checkpoint, unfinished."""
    snapshot = current_snapshot(path)
    if snapshot is None:
        return set()
    statuses = snapshot_statuses(snapshot)
    return {folder for folder, source in snapshot_sources(snapshot).items()
            if source and source != folder and statuses.get(folder) != "TERMINATED"}


def _kill_when_due(proc, path, kind, planned, rng):
    deadline = time.time() + 180
    if kind == "start":
        due = lambda: os.path.exists(os.path.join(path, "tuner.pkl"))  # noqa: E731
        extra = rng.uniform(0, 1.0)
    elif kind == "mid":
        wanted = rng.randint(3, 8)
        due = lambda: _checkpoints(path) >= wanted  # noqa: E731
        extra = rng.uniform(0, 0.5)
    else:
        due = lambda: _at_last_iteration(path) >= planned  # noqa: E731
        extra = rng.uniform(0, 0.3)
    while time.time() < deadline and not due() and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(extra)
    if kind != "end":  # (just after the last trial, the run may have ended already)
        assert proc.poll() is None, "the run ended before the kill:\n" + proc.communicate()[0]
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, no cleanup
    except ProcessLookupError:  # it had ended
        assert kind == "end"
    proc.wait(timeout=60)


def _resume_here(cmd, capsys):
    """``autometa run FILE --resume`` in this process, on the session's Ray (as from Python
    after a killed run: the resume first stops the killed run's leftover workers); its exit
    status must be 0. Returns its standard output and the end of both outputs."""
    capsys.readouterr()
    status = main([*cmd[3:], "--resume"])
    out, err = capsys.readouterr()
    log = out[-3000:] + err[-3000:]
    assert status == 0, log
    return out, log


@pytest.mark.parametrize(("searcher", "scheduler", "kind"), CAMPAIGN, ids=lambda v: v)
def test_sigkill_then_resume(tmp_path, ray_session, capsys, searcher, scheduler, kind):
    file = _file(tmp_path, searcher, scheduler)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "autometa.launch.cli", "run", file, "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    path = str(tmp_path / "results" / "crash")
    planned = _planned(searcher)
    rng = random.Random(f"{searcher}-{scheduler}-{kind}")  # a random, reproducible kill point
    _kill_when_due(proc, path, kind, planned, rng)
    left = {p.pid for p in leftover_ray_processes()}  # workers in sessions of their own
    before = _trials(path)
    done_before = {d: before[d] for d in _finished(before)}
    points = _resume_points(path)
    # A trial that started and finished after the last saved state (Tune saves it at most
    # every second; this trainable's trials take less) is in no state a resume can start
    # from: the resume runs a new trial in its place, which the count of finished trials
    # below checks. (Seen once, in a run on a loaded machine.)
    unsaved = {d for d in done_before if d not in points} if current_snapshot(path) else set()
    for folder in unsaved:
        done_before.pop(folder)
    pending = _exploit_pending(path)  # (the state the resume starts from)

    resumed, log = _resume_here(cmd, capsys)
    assert not left & {p.pid for p in leftover_ray_processes()}, "the killed run's Ray is left"
    from ray.tune import ExperimentAnalysis

    if "starting the search again" in resumed:  # killed before Tune's first save
        assert kind == "start" and not done_before and not points, log
    trials = ExperimentAnalysis(path).trials  # what the experiment knows after the resume
    after = _trials(path)
    # (Tune's synchronous Hyperband may leave trials it stopped at a milestone PAUSED at the
    # end, kill or not)
    allowed = {"TERMINATED", "PAUSED"} if scheduler in ("bohb", "hyperband") else {"TERMINATED"}
    errors = [open(f).read()[-2000:] for f in glob.glob(os.path.join(path, "*", "error.txt"))]
    assert {t.status for t in trials} <= allowed, ([t.status for t in trials], errors, log)
    assert done_before.keys() <= {os.path.basename(t.path) for t in trials}  # none lost
    for trial in pending:
        # PBT had decided to exploit it (the saved state resumes it from another trial's
        # checkpoint): it was not finished, though a result Tune logged after that decision
        # may reach the last iteration; it goes on from the donor, as it would have unkilled,
        # after every report it had made (none lost)
        done_before.pop(trial, None)
        assert len(after.get(trial, [])) >= len(before.get(trial, [])), \
            f"{trial} lost reports at the resume"
    for trial, rows in done_before.items():  # finished trials were not run again (a trial
        # that finished after Tune's last save redoes its last iteration, recorded once)
        assert [(r["iteration"], r["loss"]) for r in after[trial]] == \
            [(r["iteration"], r["loss"]) for r in rows], f"{trial} ran again after the resume"
    configs = [t.config for t in trials]
    if searcher == "grid":  # the grid's restored state: each point exactly once
        assert sorted(c["x"] for c in configs) == GRID
    elif searcher in ("race", "irace"):  # no (candidate, instance) pair raced twice
        pairs = [(c["x"], c["instance"]) for c in configs]
        assert len(pairs) == len(set(pairs)) and "Race winner" in resumed
    else:
        assert len(trials) == planned
    counted = [line for line in resumed.splitlines() if line.startswith("Trials: ")]
    head = (f"Trials: {len(trials)} finished (the race decides how many)" if planned is None
            else f"Trials: {planned} of {planned} planned finished")
    assert len(counted) == 1 and counted[0].startswith(head) and ";" not in counted[0], log
    if scheduler in POPULATION:  # (an exploit moves a trial's clock)
        return
    for t in trials:
        folder = os.path.basename(t.path)
        iterations = [r["iteration"] for r in after[folder]]
        assert iterations == list(range(1, len(iterations) + 1)), (folder, iterations)
        point = points.get(folder, 0)  # it went on from there: never from further back
        assert all(r["resumed_from"] >= point for r in after[folder]
                   if r["iteration"] > point), (folder, point, after[folder])


def test_sigkill_while_trials_checkpoint_fast_loses_no_checkpoint(tmp_path, ray_session, capsys):
    """Trials checkpoint every 50 ms, far faster than Tune saves the experiment (every second):
    Tune's own pruning (``num_to_keep``) deletes the checkpoint the saved state resumes from, and
    its background copy of the state can be cut off by the kill. Killed twice, then resumed,
    every trial finishes, none in ERROR, none from scratch. (Without autometa's snapshots, about a
    third of the runs of this test fail on the development machine.)"""
    file = tmp_path / "fast.yaml"
    file.write_text(textwrap.dedent(f"""\
        experiment:
          name: fast
          trainable: quadratic
          metric: loss
          searcher: {{name: grid}}
          scheduler: fifo
          num_samples: 1
          storage_path: {tmp_path / "results"}
        parameters:
          x: {{type: grid, values: [0.1, 0.2]}}
          iterations: 60
          sleep: 0.05
          checkpoint: true
        """))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "autometa.launch.cli", "run", str(file), "--quiet"]
    path = str(tmp_path / "results" / "fast")
    rng = random.Random("fast")
    for kill in range(2):  # killed twice: the first run, then its resume
        log = open(tmp_path / f"run{kill}.log", "w")
        proc = subprocess.Popen(cmd + (["--resume"] if kill else []), stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wanted = rng.randint(8, 16) + 16 * kill  # the iteration to kill after
        deadline = time.time() + 180
        while (time.time() < deadline and proc.poll() is None and not
               glob.glob(os.path.join(path, "*", f"checkpoint_{wanted:06d}"))):
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.1))
        assert proc.poll() is None, "the run ended before the kill:\n" + log.name
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
    _resume_here(cmd, capsys)
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(path).trials
    errors = [open(f).read()[-2000:] for f in glob.glob(os.path.join(path, "*", "error.txt"))]
    assert len(trials) == 2 and {t.status for t in trials} == {"TERMINATED"}, errors
    for t in trials:
        iterations = [r["iteration"] for r in _rows(t.path)]
        assert iterations[-1] == 60 and iterations[0] == 1 and iterations.count(1) == 1, \
            iterations  # resumed from a checkpoint, never from the start

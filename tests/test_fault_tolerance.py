"""The driver killed with SIGKILL at a random point, then ``autometa run FILE --resume``: every
registered searcher and scheduler continues with its state, reruns no finished trial and loses
none."""

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

from autometa.schedulers import SCHEDULERS
from autometa.searchers import SEARCHERS

ITERATIONS = 4
GRID = [round(0.1 * i, 1) for i in range(10)]
# Every registered searcher and every registered scheduler appears at least once.
PAIRS = [("grid", "asha"), ("tpe", "median"), ("bohb", "bohb"), ("hypergradient", "hyperband"),
         ("race", "fifo"), ("irace", "fifo"), ("random", "pbt"), ("random", "hypergradient_pbt")]


def test_every_searcher_and_scheduler_is_covered():
    assert {s for s, _ in PAIRS} == set(SEARCHERS)
    assert {s for _, s in PAIRS} == set(SCHEDULERS)


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
          noise: 0.05
          instance_effect: 1.0
        """
    if scheduler in ("pbt", "hypergradient_pbt"):
        text = text.replace("          seed: 0\n", "          max_concurrent_trials: 4\n"
                                                    "          seed: 0\n")
    path = tmp_path / "crash.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def _rows(folder):
    file = os.path.join(folder, "result.json")
    if not os.path.isfile(file):
        return []
    with open(file) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _trials(path):
    if not os.path.isdir(path):
        return {}
    return {d: _rows(os.path.join(path, d)) for d in sorted(os.listdir(path))
            if os.path.isdir(os.path.join(path, d))}


def _finished(trials):
    """Trials whose results reach the last iteration (early-stopped ones are not recognized)."""
    return {d for d, rows in trials.items() if rows and rows[-1].get("iteration") == ITERATIONS}


def _checkpoints(path):
    """Checkpoints saved so far, one per trial iteration (they reach the storage at once;
    result files only when Tune syncs the experiment)."""
    if not os.path.isdir(path):
        return 0
    return sum(name.startswith("checkpoint_") for d in os.listdir(path)
               if os.path.isdir(os.path.join(path, d)) for name in os.listdir(os.path.join(path, d)))


@pytest.mark.parametrize(("searcher", "scheduler"), PAIRS, ids=lambda v: v)
def test_sigkill_then_resume(tmp_path, searcher, scheduler):
    file = _file(tmp_path, searcher, scheduler)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "autometa.launch.cli", "run", file, "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    path = str(tmp_path / "results" / "crash")
    rng = random.Random(f"{searcher}-{scheduler}")  # a random, reproducible kill point
    wanted, extra = rng.randint(3, 8), rng.uniform(0, 0.5)
    deadline = time.time() + 180
    while time.time() < deadline and _checkpoints(path) < wanted and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(extra)
    assert proc.poll() is None, "the run ended before the kill:\n" + proc.communicate()[0]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, no cleanup
    proc.wait(timeout=60)
    before = _trials(path)
    done_before = {d: before[d] for d in _finished(before)}

    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env,
                             timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = _trials(path)
    for trial, rows in done_before.items():  # finished trials were not run again, except:
        # a trial that finished after Tune's last save of the experiment state (at most a second
        # before the kill) is unfinished to Tune: it redoes its last iteration from its
        # checkpoint, and nothing before it
        redone = after[trial][len(rows):]
        assert after[trial][:len(rows)] == rows, f"{trial} ran again after the resume"
        assert [r["iteration"] for r in redone] in ([], [ITERATIONS]), \
            f"{trial} ran again after the resume: {[r['iteration'] for r in redone]}"
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(path).trials  # what the experiment knows after the resume
    # (Tune's synchronous Hyperband may leave trials it stopped at a milestone PAUSED at the
    # end, kill or not)
    allowed = {"TERMINATED", "PAUSED"} if scheduler in ("bohb", "hyperband") else {"TERMINATED"}
    errors = [open(f).read()[-2000:] for f in glob.glob(os.path.join(path, "*", "error.txt"))]
    assert {t.status for t in trials} <= allowed, ([t.status for t in trials], errors,
                                                   resumed.stdout[-2000:])
    assert done_before.keys() <= {os.path.basename(t.path) for t in trials}  # none lost
    configs = [t.config for t in trials]
    if searcher == "grid":  # the grid's restored state: each point exactly once
        assert sorted(c["x"] for c in configs) == GRID
    elif searcher in ("race", "irace"):  # no (candidate, instance) pair raced twice
        pairs = [(c["x"], c["instance"]) for c in configs]
        assert len(pairs) == len(set(pairs)) and "Race winner" in resumed.stdout
    else:
        assert len(trials) == 8
    if scheduler not in ("pbt", "hypergradient_pbt"):  # (an exploit moves a trial's clock)
        for t in trials:  # every trial went on from a checkpoint: it never starts again
            # below what it had reached (one running at the kill may redo the iterations after
            # its last recorded checkpoint; rows not yet synced at the kill may be missing)
            iterations = [r["iteration"] for r in after[os.path.basename(t.path)]]
            assert iterations == sorted(iterations), iterations


def test_sigkill_while_trials_checkpoint_fast_loses_no_checkpoint(tmp_path):
    """Trials checkpoint every 50 ms, far faster than Tune saves the experiment (every second):
    Tune's own pruning (``num_to_keep``) deletes the checkpoint the saved state resumes from, and
    its background copy of the state can be cut off by the kill. Killed three times, then resumed,
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
    for kill in range(3):  # killed three times: the first run, then two of its resumes
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
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env,
                             timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(path).trials
    errors = [open(f).read()[-2000:] for f in glob.glob(os.path.join(path, "*", "error.txt"))]
    assert len(trials) == 2 and {t.status for t in trials} == {"TERMINATED"}, errors
    for t in trials:
        iterations = [r["iteration"] for r in _rows(t.path)]
        assert iterations[-1] == 60 and iterations[0] == 1 and iterations.count(1) == 1, \
            iterations  # resumed from a checkpoint, never from the start

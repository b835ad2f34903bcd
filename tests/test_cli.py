"""The ``autometa`` command line, as a user runs it."""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import yaml

from autometa.launch.cli import main
from autometa.space import load_space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACES = os.path.join(ROOT, "search_spaces")


def quadratic_file(tmp_path, storage, name="quad", searcher="tpe", scheduler="fifo",
                   num_samples=6, sleep=0.0, iterations=3, tensorboard=False):
    text = f"""\
        experiment:
          name: {name}
          trainable: quadratic
          metric: loss
          mode: min
          searcher: {searcher}
          scheduler: {scheduler}
          num_samples: {num_samples}
          max_concurrent_trials: 2
          storage_path: {storage}
          seed: 0
          tensorboard: {str(tensorboard).lower()}
        parameters:
          x: {{type: uniform, low: 0, high: 1}}
          y: {{type: choice, values: [0.0, 0.5, 1.0]}}
          iterations: {iterations}
          sleep: {sleep}
        """
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_validate_every_bundled_file(capsys):
    files = sorted(os.path.join(SPACES, f) for f in os.listdir(SPACES) if f.endswith((".yaml", ".json")))
    assert len(files) >= 6
    assert main(["validate", *files]) == 0
    assert capsys.readouterr().out.count(": ok") == len(files)


def test_validate_bad_file_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters:\n  lr: {type: loguniform, low: 0, high: 1}\n")
    proc = subprocess.run([sys.executable, "-m", "autometa.launch.cli", "validate", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{bad}:2: parameters.lr.low: a log-scale parameter needs low > 0" in proc.stderr


def test_validate_unknown_searcher_in_file_names_key_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment:\n  metric: loss\n  searcher: {name: smac}\n"
                   "parameters:\n  x: {type: uniform, low: 0, high: 1}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3: experiment.searcher: unknown searcher 'smac'" in err


def test_bohb_needs_its_scheduler(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: {searcher: bohb, scheduler: asha}\n"
                   "parameters:\n  x: {type: uniform, low: 0, high: 1}\n")
    assert main(["validate", str(bad)]) == 2
    assert "needs the bohb scheduler" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["configspace-json", "nni-json", "yaml", "json"])
def test_convert(tmp_path, capsys, target):
    source = os.path.join(SPACES, "nni_search_space.json" if target == "nni-json" else "tpe.yaml")
    out = tmp_path / "out"
    assert main(["convert", source, "--to", target, "-o", str(out)]) == 0
    text = out.read_text()
    if target == "configspace-json":
        from ConfigSpace import ConfigurationSpace

        from autometa.convert.configspace import from_configspace

        cs = ConfigurationSpace.from_json(out)
        assert from_configspace(cs).parameters == load_space(source).parameters
    elif target == "nni-json":
        (tmp_path / "search_space.json").write_text(text)
        nni = load_space(str(tmp_path / "search_space.json"))
        assert nni.parameters == load_space(source).parameters
    else:
        (tmp_path / f"copy.{target}").write_text(text)
        assert load_space(str(tmp_path / f"copy.{target}")).parameters == load_space(source).parameters
        if target == "json":
            json.loads(text)


def test_convert_reports_what_target_cannot_express(capsys):
    assert main(["convert", os.path.join(SPACES, "conditional.yaml"), "--to", "nni-json"]) == 2
    assert "NNI" in capsys.readouterr().err


def test_run_unknown_searcher_flag_exits_2(tmp_path, storage, capsys):
    file = quadratic_file(tmp_path, storage)
    assert main(["run", file, "--searcher", "nope"]) == 2
    err = capsys.readouterr().err  # the value came from the command line, not the file
    assert "error: --searcher: unknown searcher 'nope'" in err and file not in err
    assert main(["run", file, "--scheduler", "nope"]) == 2
    assert "error: --scheduler: unknown scheduler 'nope'" in capsys.readouterr().err


def test_run_then_show(tmp_path, storage, ray_session, capsys):
    file = quadratic_file(tmp_path, storage, num_samples=5, tensorboard=True)
    assert main(["run", file, "--quiet"]) == 0
    assert ray_session.is_initialized()  # a Ray that main() did not start is left running
    out = capsys.readouterr().out
    path = os.path.join(storage, "quad")
    assert "Best config:" in out and f"Results: {path}" in out
    for trial in _trial_dirs(path):  # asked for: TensorBoard's files beside Tune's two
        assert glob.glob(os.path.join(path, trial, "events.out.tfevents.*")), trial
        assert os.path.getsize(os.path.join(path, trial, "progress.csv")) > 0
    best = yaml.safe_load(open(os.path.join(path, "best_config.yaml")))
    assert set(best) == {"x", "y", "iterations", "sleep"}
    # A second run does not overwrite the first one.
    assert main(["run", file, "--quiet", "--num-samples", "2", "--searcher", "random"]) == 0
    assert len([d for d in os.listdir(storage) if d.startswith("quad")]) == 2
    capsys.readouterr()
    assert main(["show", path, "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "config/x" in out and "best_config.yaml" in out
    report = os.path.join(path, "autometa_report")
    assert os.path.exists(os.path.join(report, "metric_over_trials.png"))
    assert os.path.exists(os.path.join(report, "metric_vs_x.png"))


HELD_OUT_TRAINABLE = """\
from ray import tune

from autometa import hypergrad_metrics


def fit(config):
    x = config["x"]
    # the descent's metric wants x = 0.9; the held-out loss (other data) x = 0.5
    tune.report({"loss": (x - 0.9) ** 2, "holdout_loss": (x - 0.5) ** 2,
                 **hypergrad_metrics({"x": 2 * (x - 0.9)})})
"""


def test_holdout_metric_chooses_the_trial_a_user_gets(tmp_path, storage, ray_session, capsys):
    """With the hypergradient searcher's holdout_metric, `run` and `show` rank by it: the best
    config is the trial best on the held-out loss, not the one the descent drove furthest."""
    (tmp_path / "held_model.py").write_text(HELD_OUT_TRAINABLE)
    file = tmp_path / "held.yaml"
    file.write_text(textwrap.dedent(f"""\
        experiment:
          name: held
          trainable: held_model:fit
          metric: loss
          mode: min
          searcher: {{name: hypergradient, chains: 1, holdout_metric: holdout_loss,
                     patience: 10, points_to_evaluate: [{{x: 0.1}}]}}
          num_samples: 6
          max_concurrent_trials: 1
          storage_path: {storage}
        parameters:
          x: {{type: uniform, low: 0, high: 1, differentiable: true}}
        """))
    assert main(["run", str(file), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "chosen by holdout_loss" in out
    path = os.path.join(storage, "held")
    best = yaml.safe_load(open(os.path.join(path, "best_config.yaml")))
    assert main(["show", path]) == 0
    table = capsys.readouterr().out
    assert "holdout_loss" in table.splitlines()[0]
    from autometa.launch.show import summarize

    summary = summarize(path)
    xs = summary.table["config/x"].tolist()
    assert summary.ranked_by == "holdout_loss"
    assert best["x"] == min(xs, key=lambda x: (x - 0.5) ** 2)   # best held out ...
    assert best["x"] != min(xs, key=lambda x: (x - 0.9) ** 2)   # ... not best on the metric


@pytest.mark.parametrize("scheduler", ["hyperband", "bohb"])
def test_synchronous_hyperband_stops_trials_from_a_file(tmp_path, storage, ray_session, scheduler):
    # Tune's synchronous Hyperband stops nothing when fewer trials than its brackets hold may be
    # in flight; the launcher lets a band in (3 + 5 + 9 for max_t 9) unless the file says less.
    text = textwrap.dedent(f"""\
        experiment:
          name: {scheduler}
          trainable: quadratic
          metric: loss
          searcher: {"bohb" if scheduler == "bohb" else "random"}
          scheduler: {{name: {scheduler}, max_t: 9, reduction_factor: 3}}
          num_samples: 17
          storage_path: {storage}
          seed: 0
        parameters:
          x: {{type: uniform, low: 0, high: 1}}
          iterations: 9
          checkpoint: true
        """)
    file = tmp_path / "hb.yaml"
    file.write_text(text)
    assert main(["run", str(file), "--quiet"]) == 0
    last = [json.loads(open(f).read().splitlines()[-1])["training_iteration"]
            for f in glob.glob(os.path.join(storage, scheduler, "*", "result.json"))]
    assert len(last) == 17
    # brackets of 3, 5 and 9 trials start at 9, 3 and 1 iterations and keep a third each rung
    assert sum(t < 9 for t in last) >= 8 and max(last) == 9


def test_synchronous_hyperband_with_too_few_trials_in_flight_is_an_error(tmp_path, capsys):
    bad = tmp_path / "hb.yaml"
    bad.write_text("experiment:\n  metric: loss\n  scheduler: {name: hyperband, max_t: 9}\n"
                   "  max_concurrent_trials: 2\nparameters:\n  x: {type: uniform, low: 0, high: 1}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4: experiment.max_concurrent_trials:" in err
    assert "17 for its brackets of 3 + 5 + 9 trials" in err and "do not fill" in err


def test_show_on_a_folder_without_results_exits_2(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 2
    assert "not a Tune experiment folder" in capsys.readouterr().err
    assert main(["show", str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'}: no such folder" in capsys.readouterr().err


def test_a_bad_warnings_setting_exits_2_before_anything_runs(tmp_path, storage, monkeypatch,
                                                             capsys):
    from autometa.trial.keys import WARNINGS_ENV

    file = quadratic_file(tmp_path, storage, name="badenv")
    monkeypatch.setenv(WARNINGS_ENV, "always")
    assert main(["run", file]) == 2
    err = capsys.readouterr().err
    assert f"error: {WARNINGS_ENV}='always': expected one of doubling, first" in err, err
    assert not os.path.exists(os.path.join(storage, "badenv"))  # no run started


def test_show_on_plain_tune_results_takes_tunes_metric_and_asks_for_an_unknown_mode(
        tmp_path, capsys):
    # the state Tune saves for a Tuner with TuneConfig(metric="acc", mode="max") and Tune's
    # own searcher: the controller keeps the metric; the mode is nowhere in the folder
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": [], "runner_data": {"_metric": "acc"}, "stats": {}}))
    assert main(["show", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'acc' is minimized or maximized: pass --mode min or --mode max" in err, err


def test_a_cluster_address_is_checked_before_rays_long_retries(tmp_path, storage):
    import socket

    from autometa.launch.run import ClusterUnreachable, check_cluster_address

    with socket.socket() as listening:  # something that accepts connections
        listening.bind(("0.0.0.0", 0))  # (Ray reads 127.0.0.1 as this node's address)
        listening.listen()
        port = listening.getsockname()[1]
        assert check_cluster_address(f"127.0.0.1:{port}").endswith(f":{port}")
        assert check_cluster_address(f"ray://127.0.0.1:{port}") == f"127.0.0.1:{port}"
    # the port is free again: connection refused
    with pytest.raises(ClusterUnreachable, match=f"nothing answers at .*:{port} "
                                                 r"\(Connection refused\)"):
        check_cluster_address(f"127.0.0.1:{port}")
    with pytest.raises(ClusterUnreachable, match="--address nonsense: Invalid address format"):
        check_cluster_address("nonsense")
    # the command line: exit 2 and one line, no traceback, no wait (Ray retried for minutes)
    file = quadratic_file(tmp_path, storage, name="nocluster")
    proc = subprocess.run([sys.executable, "-m", "autometa.launch.cli", "run", file,
                           "--address", f"127.0.0.1:{port}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"error: --address 127.0.0.1:{port}: nothing answers at" in proc.stderr


def test_resume_after_interrupt_runs_no_finished_trial_again(tmp_path, storage, ray_session,
                                                             capsys):
    file = quadratic_file(tmp_path, storage, name="slow", searcher="tpe", num_samples=8,
                          sleep=0.6, iterations=3)
    cmd, env, proc = _start_run(file)
    path = os.path.join(storage, "slow")
    _wait_until(lambda: len(_finished(path)) >= 2)
    finished_before = _finished(path)
    assert len(finished_before) >= 2, "no trial finished before the interrupt"
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert len(_finished(path)) < 8, f"the run finished before the interrupt:\n{output}"
    assert "interrupted: continue with: autometa run" in output, output
    assert "Tuner.restore" not in output, output  # Tune's Python hint, not for the CLI
    before = {trial: _rows(path, trial) for trial in _finished(path)}
    capsys.readouterr()
    # (the resumes, in this process: its Ray is started already)
    assert main([*cmd[3:], "--resume"]) == 0
    resumed = capsys.readouterr().out
    assert "Best config:" in resumed
    assert "nothing was left to run" not in resumed
    after = _finished(path)
    assert len(after) == 8, f"{len(after)} finished trials after resume"
    for trial, rows in before.items():  # finished trials were not rerun
        assert _rows(path, trial) == rows
    assert main([*cmd[3:], "--resume"]) == 0  # the finished run
    again = capsys.readouterr().out
    assert "nothing was left to run" in again, again
    assert "autometa: resuming from" not in again  # Tune's copy was whole
    # Tune's copy of the state cut off (as a kill during its background copy leaves it): the
    # resume says it used autometa's snapshot, and still finds nothing left to run
    state = max(glob.glob(os.path.join(path, "experiment_state-*.json")))
    with open(state, "r+") as handle:
        handle.truncate(os.path.getsize(state) // 3)
    assert main([*cmd[3:], "--resume"]) == 0
    cut = capsys.readouterr().out
    assert "autometa: resuming from the experiment state as saved at" in cut, cut
    assert "nothing was left to run" in cut, cut
    assert _finished(path) == after


def _start_run(file):
    """``autometa run FILE --quiet`` in a subprocess of its own session (to interrupt it)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "autometa.launch.cli", "run", file, "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    return cmd, env, proc


def _wait_until(condition, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline and not condition():
        time.sleep(0.5)


def _trial_dirs(path):
    if not os.path.isdir(path):
        return []
    return [d for d in os.listdir(path) if os.path.isfile(os.path.join(path, d, "result.json"))]


def _rows(path, trial):
    with open(os.path.join(path, trial, "result.json")) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _finished(path):
    out = []
    for trial in _trial_dirs(path):
        rows = _rows(path, trial)
        if rows and rows[-1].get("done") or (rows and rows[-1].get("iteration") == 3):
            out.append(trial)
    return out


def test_diverging_trials_are_stopped_and_the_search_goes_on(tmp_path, storage, ray_session,
                                                              capsys, caplog):
    text = f"""\
        experiment:
          name: nan
          trainable: quadratic
          metric: loss
          searcher: random
          num_samples: 6
          max_concurrent_trials: 2
          storage_path: {storage}
          seed: 1
        parameters:
          x: {{type: uniform, low: 0, high: 1}}
          nan_at: {{type: choice, values: [null, 2]}}
          iterations: 4
        """
    path = tmp_path / "nan.yaml"
    path.write_text(textwrap.dedent(text))
    with caplog.at_level("WARNING", logger="autometa"):
        assert main(["run", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Best config:" in out
    diverged = [r for r in caplog.records if "diverged" in r.message]
    folder = os.path.join(storage, "nan")
    trials = [d for d in os.listdir(folder) if os.path.isfile(os.path.join(folder, d, "result.json"))]
    assert len(trials) == 6
    stopped_early = [t for t in trials if len(_rows(folder, t)) == 2]  # NaN at iteration 2
    assert stopped_early and len(diverged) == len(stopped_early)
    # the summary counts them: finished (the stopper ended them), diverged, not "stopped early"
    assert f"Trials: 6 of 6 planned finished ({len(diverged)} diverged)." in out


def test_population_scheduler_from_a_file(tmp_path, storage, ray_session, capsys):
    text = f"""\
        experiment:
          name: pbt
          trainable: quadratic
          metric: loss
          searcher: random
          scheduler: {{name: hypergradient_pbt, perturbation_interval: 2, step_size: 0.5}}
          num_samples: 4
          max_concurrent_trials: 4
          storage_path: {storage}
          seed: 0
        parameters:
          x: {{type: uniform, low: 0, high: 3, differentiable: true}}
          iterations: 6
          report_hypergrad: true
          checkpoint: true
        """
    path = tmp_path / "pbt.yaml"
    path.write_text(textwrap.dedent(text))
    assert main(["run", str(path), "--quiet"]) == 0
    assert "Best config:" in capsys.readouterr().out
    # the scheduler's state is saved with the experiment, for --resume
    assert glob.glob(os.path.join(storage, "*", "callback-states-*.pkl"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent(text).replace("searcher: random", "searcher: tpe"))
    assert main(["validate", str(bad)]) == 2
    assert "takes no searcher" in capsys.readouterr().err


RACE = """\
experiment:
  name: race
  trainable: quadratic
  metric: loss
  searcher: {{name: race, candidates: 8, min_instances: 3, max_instances: 5}}
  num_samples: 100
  max_concurrent_trials: 2
  storage_path: {storage}
  seed: 0
parameters:
  x: {{type: uniform, low: 0, high: 2}}
  noise: 0.05
  instance_effect: 1.0
  iterations: 1
  sleep: {sleep}
"""


def test_race_from_a_file_interrupted_and_resumed(tmp_path, storage, ray_session, capsys):
    file = tmp_path / "race.yaml"
    file.write_text(RACE.format(storage=storage, sleep=0.5))
    cmd, env, proc = _start_run(str(file))
    path = os.path.join(storage, "race")
    _wait_until(lambda: len(_trial_dirs(path)) >= 3)  # Tune syncs trial folders every few s
    proc.send_signal(signal.SIGINT)
    first = proc.communicate(timeout=120)[0]
    started = len(_trial_dirs(path))
    assert started >= 3 and "interrupted: continue with" in first, first
    capsys.readouterr()
    assert main([*cmd[3:], "--resume"]) == 0  # (in this process: its Ray is started already)
    resumed = capsys.readouterr().out
    assert "Race winner: mean loss" in resumed, resumed
    assert "candidates survived; the race ended because " in resumed, resumed
    assert "it was stopped before its end" not in resumed, resumed
    pairs = [(r[-1]["config"]["x"], r[-1]["config"]["instance"])
             for r in (_rows(path, t) for t in _trial_dirs(path)) if r]
    assert len(pairs) == len(set(pairs)) > started  # went on, and ran no pair twice
    best = yaml.safe_load(open(os.path.join(path, "best_config.yaml")))
    assert "instance" not in best and 0 <= best["x"] <= 2
    # `show` draws the race: each candidate's running mean, ending where it was dropped
    from autometa.launch.plots import figures_of
    from autometa.launch.show import summarize

    summary = summarize(path)
    race = next(fig for fig in figures_of(summary) if fig.name == "race")
    assert len(race.traces) == len(summary.candidates)
    for trace, (_, row) in zip(race.traces, summary.candidates.iterrows(), strict=True):
        assert trace.x[-1] == (row["instances"] if row["survivor"] else row["eliminated_after"])
        assert trace.y[0] == pytest.approx(
            summary.table.loc[(summary.table["config/x"] == row["config/x"])
                              & (summary.table["config/instance"] == 0), "loss"].item())


def test_race_instance_key_must_not_be_searched(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(RACE.format(storage=tmp_path, sleep=0).replace(
        "  iterations: 1\n", "  iterations: 1\n  instance: {type: randint, low: 0, high: 3}\n"))
    assert main(["validate", str(bad)]) == 2
    assert "the instance key 'instance' is a searchable parameter" in capsys.readouterr().err


def test_hypergradient_with_bohb_base_needs_the_bohb_scheduler(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: {searcher: {name: hypergradient, base: bohb}, scheduler: asha}\n"
                   "parameters:\n  x: {type: uniform, low: 0, high: 1, differentiable: true}\n")
    assert main(["validate", str(bad)]) == 2
    assert "base: bohb needs the bohb scheduler" in capsys.readouterr().err


@pytest.mark.parametrize("points, says", [
    ("[{x: 0.5}, {x: 7.0}]", "bad.yaml:4: experiment.searcher.points_to_evaluate[1]: x: 7.0 is "
                             "outside [0.0, 1.0]"),
    ("[{y: 0.5}]", "bad.yaml:4: experiment.searcher.points_to_evaluate[0]: unknown parameter"),
])
def test_points_to_evaluate_are_checked_before_the_search(tmp_path, capsys, points, says):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment:\n  searcher:\n    name: tpe\n"
                   f"    points_to_evaluate: {points}\n"
                   "parameters:\n  x: {type: uniform, low: 0, high: 1}\n")
    assert main(["validate", str(bad)]) == 2
    assert says in capsys.readouterr().err


def test_searcher_options_the_constructor_refuses_are_clear_before_the_search(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: {searcher: {name: hypergradient, probes: 0}}\n"
                   "parameters:\n  x: {type: uniform, low: 0, high: 1, differentiable: true}\n")
    assert main(["validate", str(bad)]) == 2
    assert "experiment.searcher.probes: hypergradient: probes must be an integer >= 1" in \
        capsys.readouterr().err


@pytest.mark.parametrize("option, says", [
    ("scheduler: {name: asha, grace_period: -1}",
     "experiment.scheduler.grace_period: asha: grace_period must be a number > 0, got -1"),
    ("scheduler: {name: asha, reduction_factor: 1}",
     "experiment.scheduler.reduction_factor: asha: reduction_factor must be a number > 1"),
    ("scheduler: {name: asha, max_t: 4, grace_period: 5}",
     "experiment.scheduler.grace_period: asha: grace_period (5) must be <= max_t (4)"),
    ("scheduler: {name: asha, grace_period: two}", "grace_period must be a number > 0, got 'two'"),
    ("searcher: {name: tpe, n_initial_points: many}", "n_initial_points must be an integer"),
    ("seed: 99999999999", "experiment.seed: seed must be an integer in [0, 2**32 - 1]"),
    ("searcher: {name: hypergradient, chains: 0}", "chains must be an integer >= 1"),
    ("searcher: {name: hypergradient, radius: -1}", "radius must be a number > 0"),
    ("searcher: {name: race, alpha: 2}", "alpha must be a number in (0, 1)"),
    ("searcher: {name: race, min_instances: 6, max_instances: 5}",
     "max_instances (5) must be >= min_instances (6)"),
])
def test_option_values_ray_would_assert_on_are_file_errors(tmp_path, capsys, option, says):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"experiment: {{{option}}}\n"
                   "parameters:\n  x: {type: uniform, low: 0, high: 1, differentiable: true}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}:1: ") and says in err, err


@pytest.mark.parametrize("case, module, says", [
    ("missing", None, "cannot import 'model_missing'"),
    ("raises", "raise ZeroDivisionError('at import')\n",
     "importing 'model_raises' for trainable 'model_raises:fit' raised ZeroDivisionError"),
    ("signature", "def fit(config, extra):\n    pass\n",
     "has the signature (config, extra): a Tune function trainable takes one argument"),
    ("not_callable", "fit = 3\n", "has no callable 'fit'"),
])
def test_a_trainable_that_cannot_run_is_named_by_validate(tmp_path, capsys, case, module, says):
    """validate imports a module:function trainable as run will (the file's folder on the
    path): import errors, exceptions at import and wrong signatures are file errors."""
    if module is not None:  # (one module name per case: a folder stays on sys.path)
        (tmp_path / f"model_{case}.py").write_text(module)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"experiment: {{trainable: 'model_{case}:fit', metric: loss}}\n"
                   "parameters:\n  x: {type: uniform, low: 0, high: 1}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: experiment.trainable: " in err and says in err, err


def test_results_location_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for experiment, says in (
            (f"{{storage_path: '{tmp_path / 'afile' / 'sub'}'}}", "is a file, not a folder"),
            ("{name: '../../outside'}", "must be one folder name")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"experiment: {experiment}\nparameters:\n  x: 1\n")
        assert main(["validate", str(bad)]) == 2
        assert says in capsys.readouterr().err


def test_curate_digits_finds_flipped_labels(tmp_path, capsys):
    out = tmp_path / "cur"
    assert main(["curate", "--dataset", "digits", "--flip", "0.2", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    auroc = float(text.split("AUROC of the loo score for the flipped labels: ")[1].split()[0])
    assert auroc > 0.99
    rows = list(csv.DictReader(open(out / "curation.csv")))
    assert len(rows) == 1797 and (out / "score_hist.png").exists()
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)        # most suspect first
    flagged = [r for r in rows if r["suspect"] == "1"]
    assert all(r["predicted"] != r["label"] for r in flagged)  # predicted as another class
    assert sum(r["flipped"] == "1" for r in flagged) >= 0.95 * 359  # nearly every flip found
    assert main(["curate", "--dataset", "digits", "--flip", "0.2", "--method", "derivative",
                 "-o", str(tmp_path / "der")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "der" / "curation.csv")))
    assert sum(int(r["suspect"]) for r in rows) == 180  # the largest 10 % by default
    assert "AUROC of the derivative score" in capsys.readouterr().out


@pytest.mark.parametrize("arrays,match", [
    ({"features": np.ones((4, 3)), "labels": np.array([0, 1, 0])}, "vector of 4 labels"),
    ({"features": np.full((4, 3), np.nan), "labels": np.arange(4)}, "NaN"),
    ({"features": np.ones((0, 3)), "labels": np.arange(0)}, "non-empty"),
    ({"features": np.ones((4, 3)), "labels": np.array([0.5, 1, 0, 1])}, "integer class labels"),
    ({"x": np.ones((4, 3)), "labels": np.arange(4)}, "no array 'features'"),
])
def test_curate_bad_npz_is_a_clear_error(tmp_path, capsys, arrays, match):
    file = tmp_path / "data.npz"
    np.savez(file, **arrays)
    assert main(["curate", "--npz", str(file), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert match in err and str(file) in err and "Traceback" not in err


@pytest.mark.parametrize("content,match", [
    (b"junk\n", "not a NumPy .npz archive"),
    (b"", "not a NumPy .npz archive"),
    (None, "a single array (.npy)"),
])
def test_curate_a_file_that_is_no_npz_archive_is_a_clear_error(tmp_path, capsys, content, match):
    file = tmp_path / "data.npz"
    if content is None:
        with open(file, "wb") as handle:
            np.save(handle, np.ones((4, 3)))
    else:
        file.write_bytes(content)
    assert main(["curate", "--npz", str(file), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert match in err and str(file) in err and "Traceback" not in err


def test_curate_npz_round_trip(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    features = rng.normal(size=(3, 4))[labels] * 3 + rng.normal(size=(60, 4))
    labels[5] = (labels[5] + 1) % 3
    np.savez(tmp_path / "d.npz", features=features, labels=labels)
    assert main(["curate", "--npz", str(tmp_path / "d.npz"), "--share", "0.05",
                 "-o", str(tmp_path / "o")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "o" / "curation.csv")))
    flagged = {r["index"] for r in rows if r["suspect"] == "1"}
    assert "5" in flagged and len(flagged) == 3


def test_resources_flag_overrides_the_file_and_bad_values_are_clear(tmp_path, capsys):
    from autometa.launch.plan import Overrides, plan_experiment

    file = quadratic_file(tmp_path, tmp_path)
    exp = plan_experiment(load_space(file), Overrides(resources={"cpu": 2, "gpu": 0.5, "ssd": 1}))
    assert exp.resources_per_trial == {"cpu": 2, "gpu": 0.5, "ssd": 1}
    assert main(["run", file, "--resources", "cpu=1,gpu=1.5"]) == 2
    assert "--resources.gpu: a fractional gpu request must be at most 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["run", file, "--resources", "gpu=half"])
    assert stop.value.code == 2
    assert "expected NAME=NUMBER items such as cpu=2,gpu=0.5, got 'gpu=half'" in \
        capsys.readouterr().err


@pytest.mark.parametrize("fail_fast", [False, True])
def test_a_failing_trial_is_recorded_and_fail_fast_stops_the_search(tmp_path, storage, ray_session,
                                                                   capsys, fail_fast):
    text = f"""\
        experiment:
          name: raises
          trainable: quadratic
          metric: loss
          searcher: grid
          num_samples: 1
          max_concurrent_trials: 1
          fail_fast: {str(fail_fast).lower()}
          storage_path: {storage}
        parameters:
          x: {{type: grid, values: [0.1, 0.2, 0.3, 0.4]}}
          fail_at: {{type: grid, values: [2, null]}}
          iterations: 3
        """
    path = tmp_path / "raises.yaml"
    path.write_text(textwrap.dedent(text))
    code = main(["run", str(path), "--quiet"])
    out, err = capsys.readouterr()
    folder = os.path.join(storage, "raises")
    errors = glob.glob(os.path.join(folder, "*", "error.txt"))
    assert errors and "planned failure at iteration 2" in open(errors[0]).read()
    finished = [d for d in os.listdir(folder)
                if os.path.isfile(os.path.join(folder, d, "result.json"))
                and len(_rows(folder, d)) == 3]
    if fail_fast:
        assert code == 1 and "fail_fast" in err and "--resume" in err
        assert len(errors) == 1 and len(finished) < 4  # nothing ran after the failure
    else:
        # the search went on, and the run says it lost trials
        assert code == 1 and "4 trial(s) failed" in out and "Best config:" in out
        assert "Trials: 4 of 8 planned finished; 4 failed." in out
        # the user's own error text, once, with the trials it ended
        assert out.count("RuntimeError: planned failure at iteration 2  (trials ") == 1
        assert len(errors) == 4 and len(finished) == 4  # the search went on


def test_the_resume_hint_repeats_the_overrides():
    from autometa.launch.cli import _parser, resume_command

    args = _parser().parse_args(["run", "my space.yaml", "--storage-path", "/tmp/r", "--name",
                                 "aug", "--resources", "cpu=2,gpu=0.5", "--quiet"])
    assert resume_command(args) == ("autometa run 'my space.yaml' --storage-path /tmp/r "
                                    "--name aug --resources cpu=2,gpu=0.5 --resume")
    plain = _parser().parse_args(["run", "s.yaml", "--resume"])
    assert resume_command(plain) == "autometa run s.yaml --resume"


def test_a_run_stopped_before_tunes_first_save_starts_again_saying_so(tmp_path, storage,
                                                                      ray_session, capsys):
    """What a kill in the first seconds leaves (``tuner.pkl``, trial folders, no experiment
    state): ``show`` says so, and ``--resume`` runs the whole search again instead of Tune's
    one trial."""
    path = tmp_path / "early.yaml"
    path.write_text(textwrap.dedent(f"""\
        experiment:
          name: early
          trainable: quadratic
          metric: loss
          searcher: random
          num_samples: 3
          storage_path: {storage}
        parameters:
          x: {{type: uniform, low: 0, high: 1}}
          iterations: 2
        """))
    assert main(["run", str(path), "--quiet"]) == 0
    folder = os.path.join(storage, "early")
    for name in os.listdir(folder):  # as if killed before Tune's first save
        if name == ".autometa" or name.split("-")[0] in ("experiment_state", "search_gen_state",
                                                         "searcher", "basic", "callback"):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            if os.path.isfile(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))
    capsys.readouterr()
    assert main(["show", folder]) == 2
    assert "stopped before Tune first saved its state" in capsys.readouterr().err
    assert main(["run", str(path), "--quiet", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "starting the search again" in out and "Trials: 3 of 3 planned finished." in out
    assert os.listdir(glob.glob(os.path.join(folder, ".autometa", "abandoned-*"))[0])
    assert main(["show", folder]) == 0
    assert "Trials: 3 of 3 planned finished." in capsys.readouterr().out


def test_unfit_resources_names_what_no_node_has():
    from autometa.launch.run import unfit_resources

    nodes = [{"CPU": 8.0, "GPU": 0.0}, {"CPU": 4.0, "GPU": 2.0, "fpga": 1.0}]
    assert unfit_resources({"cpu": 4, "gpu": 2}, nodes) == []
    assert unfit_resources({"cpu": 1, "gpu": 0}, [{"CPU": 1.0}]) == []  # 0 asks for nothing
    assert unfit_resources({"cpu": 1, "gpu": 4}, nodes) == [
        "4 gpu requested, but no node has more than 2"]
    assert unfit_resources({"cpu": 1, "tpu": 1}, nodes) == [
        "1 tpu requested, but no node has more than 0"]
    # each fits some node, but no node has both
    assert unfit_resources({"cpu": 6, "gpu": 1}, nodes) == [
        "no single node has all of cpu: 6, gpu: 1"]


@pytest.mark.parametrize("where", ["file", "command line"])
def test_resources_no_node_has_are_refused_not_left_pending(tmp_path, storage, ray_session,
                                                            capsys, where):
    path = tmp_path / "gpus.yaml"
    path.write_text(textwrap.dedent(f"""\
        experiment:
          name: gpus
          trainable: quadratic
          metric: loss
          searcher: random
          num_samples: 2
          storage_path: {storage}
          resources_per_trial: {{cpu: 1{", gpu: 3" if where == "file" else ""}}}
        parameters:
          x: {{type: uniform, low: 0, high: 1}}
        """))
    extra = ["--resources", "cpu=1,my_accelerator=1"] if where == "command line" else []
    assert main(["run", str(path), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    if where == "file":
        assert "gpus.yaml:8: experiment.resources_per_trial.gpu: 3 gpu requested, but no node " \
               "has more than 0 (trials would wait for them forever)" in err
    else:
        assert "--resources: 1 my_accelerator requested, but no node has more than 0" in err
    assert "Traceback" not in err


def test_the_default_console_is_a_line_per_trial_and_the_summary(tmp_path, storage, ray_session,
                                                                 capsys):
    path = tmp_path / "console.yaml"
    path.write_text(textwrap.dedent(f"""\
        experiment:
          name: console
          trainable: quadratic
          metric: loss
          searcher: grid
          num_samples: 1
          max_concurrent_trials: 2
          storage_path: {storage}
        parameters:
          x: {{type: grid, values: [0.1, 0.3]}}
          fail_at: {{type: grid, values: [2, null]}}
          iterations: 3
        """))
    assert main(["run", str(path)]) == 1  # two of the four trials fail
    captured = capsys.readouterr()
    out = captured.out + captured.err
    lines = [line for line in out.splitlines() if line.startswith("autometa: [")]
    assert len(lines) == 4, out
    assert sum(" finished: loss " in line for line in lines) == 2
    assert sum(line.endswith("failed: RuntimeError: planned failure at iteration 2")
               for line in lines) == 2
    assert sorted(int(line.split("[")[1].split("/")[0]) for line in lines) == [1, 2, 3, 4]
    # no box per trial, no traceback, no token notice: the error's last line, once per trial
    assert "╭" not in out and "Traceback" not in out and "Token authentication" not in out
    assert "RuntimeError: planned failure at iteration 2  (trials " in out
    assert "Trials: 2 of 4 planned finished; 2 failed." in out


def test_convert_names_the_line_of_what_the_target_leaves_out_or_cannot_express(tmp_path,
                                                                               capsys):
    file = tmp_path / "nni.yaml"
    file.write_text("parameters:\n"
                    "  lr: {type: loguniform, low: 1.0e-4, high: 1.0, differentiable: true}\n"
                    "  hidden: {type: randint, low: 16, high: 256, log: true}\n")
    assert main(["convert", str(file), "--to", "nni-json"]) == 2
    err = capsys.readouterr().err
    assert f"warning: {file}:2: parameters.lr: NNI has no 'differentiable' marker" in err
    assert f"error: {file}:3: parameters.hidden: NNI has no log-scale randint" in err
    assert "UserWarning" not in err and "return _group" not in err  # no raw Python warning


@pytest.mark.parametrize("reports, code, says", [
    ('{"acc": 0.5}', 2, "experiment.metric: the trainable's reports have no 'loss' (a report "
                        "had: acc): report it"),
    ('{"loss": "low"}', 1, "no trial reported a finite 'loss' (a trial's last report had "
                           "loss='low', a str: report a number)"),
])
def test_a_trainable_reporting_the_wrong_key_or_a_string_is_told_so(tmp_path, storage,
                                                                   ray_session, capsys,
                                                                   reports, code, says):
    module = f"reports_{code}"  # (a module name of its own: sys.path keeps earlier folders)
    (tmp_path / f"{module}.py").write_text(
        "from ray import tune\n\n\ndef train(config):\n"
        f"    for _ in range(2):\n        tune.report({reports})\n")
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(f"""\
        experiment:
          name: reports{code}
          trainable: {module}:train
          metric: loss
          searcher: random
          num_samples: 2
          storage_path: {storage}
        parameters:
          x: {{type: uniform, low: 0, high: 1}}
        """))
    assert main(["run", str(path), "--quiet"]) == code
    captured = capsys.readouterr()
    assert says in captured.out + captured.err
    assert "Traceback" not in captured.out + captured.err


def test_log_records_reach_the_stderr_of_now_not_the_one_ray_was_imported_with(capsys):
    import io
    import logging

    import ray  # noqa: F401  (its import installs the handler)

    from autometa.launch import console

    ray_logger = logging.getLogger("ray")
    handlers = [h for h in ray_logger.handlers if type(h).__name__ == "PlainRayHandler"]
    assert handlers, "Ray no longer installs its PlainRayHandler: revisit console.log_to_stderr"
    closed = io.StringIO()
    closed.close()
    handlers[0].stream = closed  # what an embedding program's replaced stderr leaves behind
    console.log_to_stderr()
    logging.getLogger("ray.tune.tune").warning("a warning after stderr was replaced")
    assert "a warning after stderr was replaced" in capsys.readouterr().err


def test_warnings_print_as_one_line_and_third_party_ones_only_at_verbosity_2(caplog):
    import warnings

    import numpy as np

    from autometa.hypergrad import UnconvergedWarning
    from autometa.launch.console import warnings_as_log_lines

    def warn_both():
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            np.nanquantile(np.array([np.nan]), 0.5)  # NumPy's own RuntimeWarning
            warnings.warn("residual 0.3 above 1e-3", UnconvergedWarning, stacklevel=1)

    for verbosity, third_party in ((1, False), (2, True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="py.warnings"), \
                warnings_as_log_lines(verbosity):
            warn_both()
        lines = [r.getMessage() for r in caplog.records if r.name == "py.warnings"]
        assert "UnconvergedWarning: residual 0.3 above 1e-3" in lines
        assert any(line.startswith("RuntimeWarning: All-NaN") for line in lines) == third_party
        assert all("\n" not in line for line in lines)  # no source line under it
    before = warnings.showwarning
    with warnings_as_log_lines(1):
        assert warnings.showwarning is not before
    assert warnings.showwarning is before  # put back after the command

"""A trial's training thread finishes before its worker process exits (no abort when stopped)."""

from __future__ import annotations

import functools
import glob
import inspect
import os
import subprocess
import sys
import textwrap
import time

from ray import tune

from autometa.trial import finish_before_exit

# A daemon thread (as Tune runs a function trainable) still cleaning up after SystemExit (as
# Tune stops it) when the main thread exits: the process must wait for it (deterministic).
_WAIT_SCRIPT = textwrap.dedent("""
    import pathlib, sys, threading, time
    from autometa.trial import finish_before_exit

    ready, stop = threading.Event(), threading.Event()
    marker = pathlib.Path(sys.argv[2])

    def train(config):
        ready.set()
        try:
            stop.wait()
            sys.exit(0)  # Tune's report() on a stopped trial
        finally:
            time.sleep(1.0)  # freeing a model's tensors, say
            marker.write_text("finished")

    def run(fn):
        try:
            fn({})
        except SystemExit:
            pass

    fn = finish_before_exit(train) if sys.argv[1] == "wrapped" else train
    threading.Thread(target=run, args=(fn,), daemon=True).start()
    ready.wait()
    stop.set()  # and the main thread exits at once
""")

# The same with many tensors freed instead of a sleep: Python cuts the bare thread off inside
# a PyTorch destructor and the process aborts (on some machines, some of the time).
_TORCH_SCRIPT = textwrap.dedent("""
    import sys, threading, torch
    from autometa.trial import finish_before_exit

    ready, stop = threading.Event(), threading.Event()

    def train(config):
        tensors = [torch.ones(2, requires_grad=True) * 2 for _ in range(100_000)]
        ready.set()
        stop.wait()
        sys.exit(0)

    def run(fn):
        try:
            fn({})
        except SystemExit:
            pass

    threading.Thread(target=run, args=(finish_before_exit(train),), daemon=True).start()
    ready.wait()
    stop.set()
""")


def test_the_process_waits_for_the_training_thread_at_exit(tmp_path):
    done = {}
    for variant in ("bare", "wrapped"):
        marker = tmp_path / variant
        proc = subprocess.run([sys.executable, "-c", _WAIT_SCRIPT, variant, str(marker)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        done[variant] = marker.exists()
    assert not done["bare"], "the bare thread was waited for: this test checks nothing"
    assert done["wrapped"], "the process exited before the wrapped training thread finished"


def test_a_thread_freeing_tensors_at_exit_does_not_abort_the_process():
    procs = [subprocess.Popen([sys.executable, "-c", _TORCH_SCRIPT], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]  # at once
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-2000:]
        assert "Fatal Python error" not in stderr


def test_wrapping_keeps_what_tune_reads():
    def my_trainable(config, extra=1):
        return config, extra

    wrapped = finish_before_exit(my_trainable)
    assert wrapped.__name__ == "my_trainable"
    assert list(inspect.signature(wrapped).parameters) == ["config", "extra"]
    assert wrapped({"a": 1}) == ({"a": 1}, 1)  # called on the main thread: nothing remembered

    class MyTrainable(tune.Trainable):
        pass

    partial = functools.partial(my_trainable, extra=2)
    assert finish_before_exit(MyTrainable) is MyTrainable
    assert finish_before_exit(partial) is partial


def test_trials_stopped_by_tune_do_not_abort_their_workers(ray_session, storage):
    import ray

    def tensor_heavy_trainable(config):
        import torch

        tensors = [torch.ones(2, requires_grad=True) * 2 for _ in range(150_000)]  # noqa: F841
        for i in range(100):
            tune.report({"loss": float(i)})

    started = time.time()
    results = tune.Tuner(
        finish_before_exit(tensor_heavy_trainable),
        param_space={"x": tune.grid_search([0, 1, 2, 3])},
        tune_config=tune.TuneConfig(reuse_actors=False),  # each stopped actor exits
        run_config=tune.RunConfig(stop={"training_iteration": 1}, storage_path=storage,
                                  name="exit", verbose=0)).fit()
    pids = {int(r.metrics["pid"]) for r in results}  # the four actors' worker processes
    assert len(pids) == 4
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.5)  # a worker aborts, if it does, as it exits
    assert not any(_running(pid) for pid in pids), pids
    # every worker log this test's run wrote to (found by time: a worker's log is not always
    # named after the pid it reports, e.g. a worker Ray started before the run)
    logs = ray._private.worker._global_node.get_logs_dir_path()
    files = [f for f in glob.glob(os.path.join(logs, "worker-*.err"))
             if os.path.getmtime(f) >= started - 1]
    assert files, logs
    aborted = [f for f in files if "Fatal Python error" in _read(f) or "SIGABRT" in _read(f)]
    assert not aborted, _read(aborted[0])[-3000:]


def _read(path: str) -> str:
    with open(path, errors="replace") as f:
        return f.read()


def _running(pid: int) -> bool:
    """Whether process ``pid`` is still alive (a zombie has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

"""Ray processes of a dead local Ray node are found and stopped; live ones are left alone
(real processes, named as Ray names its workers)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from autometa.launch.leftovers import leftover_ray_processes, stop_leftover_ray_processes


def _worker(raylet_pid: int, title: str = "ray::IDLE") -> subprocess.Popen:
    """A process whose command line starts with ``title`` and whose raylet is ``raylet_pid``,
    in a session of its own, as the raylet starts Ray's workers."""
    env = {**os.environ, "RAY_RAYLET_PID": str(raylet_pid)}
    return subprocess.Popen(["bash", "-c", f'exec -a "{title}" {sys.executable} -c '
                             '"import time; time.sleep(120)"'], env=env, start_new_session=True)


def _dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def _wait_started(*procs: subprocess.Popen) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if all(psutil.Process(p.pid).cmdline()[:1] and
                   psutil.Process(p.pid).cmdline()[0].startswith("ray::") for p in procs):
                return
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.05)
    raise AssertionError("the stand-in workers did not start")


def test_only_workers_whose_raylet_is_gone_are_stopped():
    orphan = _worker(_dead_pid())
    # its raylet alive (this test process, older than the worker): not a leftover
    kept = _worker(os.getpid(), "ray::ImplicitFunc.train")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                             env={**os.environ, "RAY_RAYLET_PID": str(_dead_pid())})
    try:
        _wait_started(orphan, kept)
        found = {p.pid for p in leftover_ray_processes()}
        assert orphan.pid in found
        assert kept.pid not in found and other.pid not in found  # not a Ray process by name
        stopped = stop_leftover_ray_processes()
        assert orphan.pid in stopped and kept.pid not in stopped
        orphan.wait(timeout=10)  # (reaped already by the stop: it was our child)
        assert not psutil.pid_exists(orphan.pid)
        assert kept.poll() is None and other.poll() is None
        assert orphan.pid not in {p.pid for p in leftover_ray_processes()}
    finally:
        for proc in (orphan, kept, other):
            proc.kill()
            proc.wait()

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


def _machine_state() -> str:
    """Load, memory, disk and the largest processes: why a test may have stalled or failed."""
    import shutil
    import subprocess

    lines = [f"load average: {open('/proc/loadavg').read().strip()}"]
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    lines.append("memory: " + ", ".join(f"{k} {info[k].strip()}" for k in
                                        ("MemTotal", "MemAvailable", "Shmem", "SwapTotal", "SwapFree")
                                        if k in info))
    for kind in ("cpu", "memory", "io"):
        try:
            with open(f"/proc/pressure/{kind}") as f:
                lines.append(f"pressure {kind}: {f.readline().strip()}")
        except OSError:
            pass
    disk = shutil.disk_usage("/tmp")
    lines.append(f"/tmp: {disk.free / 2**30:.1f} GiB free of {disk.total / 2**30:.1f}")
    ps = subprocess.run(["ps", "-eo", "pid,ppid,stat,etime,pcpu,rss,args", "--sort=-rss"],
                        capture_output=True, text=True, timeout=30).stdout.splitlines()
    lines.append(f"{len(ps) - 1} processes; the largest:")
    lines += [line[:160] for line in ps[:13]]
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report carries the machine's state (printed with its traceback)."""
    report = yield
    if report.failed:
        try:
            report.sections.append(("machine state at the failure", _machine_state()))
        except Exception as error:  # noqa: BLE001 (diagnostics must never mask the failure)
            report.sections.append(("machine state at the failure", f"unavailable: {error}"))
    return report

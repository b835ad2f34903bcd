"""Ray processes that a killed local run left behind, found and stopped at the next start.

A local Ray started by ``autometa run`` lives in the driver's process group, except its
workers: the raylet starts each in a session (process group) of its own. A SIGKILL of the
group (a closed terminal, a job scheduler's kill) therefore leaves workers running until
they notice that their raylet is gone, seconds later, or much later for one stuck in a
long native call. Each Ray worker carries its raylet's pid in ``RAY_RAYLET_PID``: a worker
whose raylet no longer exists (or whose pid now belongs to a younger process) belongs to a
dead Ray node, and nothing can use it again. :func:`stop_leftover_ray_processes` stops
exactly those of the current user; ``autometa run`` (and ``run_experiment`` from Python)
calls it before it starts or uses a local Ray.
"""

from __future__ import annotations

import os

RAYLET_PID = "RAY_RAYLET_PID"


def _looks_like_ray(cmdline: list[str]) -> bool:
    first = cmdline[0] if cmdline else ""
    return first.startswith("ray::") or any(part.endswith("default_worker.py")
                                            for part in cmdline[:3])


def _raylet_alive(pid: int, child_created: float) -> bool:
    import psutil

    try:
        raylet = psutil.Process(pid)
        return raylet.create_time() <= child_created and raylet.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def leftover_ray_processes() -> list:
    """This user's Ray processes whose raylet is gone (``psutil.Process`` objects)."""
    import psutil

    uid = os.getuid()
    found = []
    for proc in psutil.process_iter(["cmdline", "uids", "create_time"]):
        try:
            if proc.pid == os.getpid() or proc.info["uids"] is None or \
                    proc.info["uids"].real != uid or not _looks_like_ray(proc.info["cmdline"] or []):
                continue
            raylet = proc.environ().get(RAYLET_PID, "")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if raylet.isdigit() and not _raylet_alive(int(raylet), proc.info["create_time"]):
            found.append(proc)
    return found


def stop_leftover_ray_processes() -> list[int]:
    """SIGKILL :func:`leftover_ray_processes`; return the pids stopped."""
    import psutil

    stopped = []
    for proc in leftover_ray_processes():
        try:
            proc.kill()
            stopped.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    # until they are gone (they could still write into the trial folders a resume reads): a
    # SIGKILLed worker may take seconds to exit on a loaded machine (unmapping torch, say)
    psutil.wait_procs(stopped, timeout=60)
    return [proc.pid for proc in stopped]

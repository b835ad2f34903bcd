"""Building and running a ``tune.Tuner`` from a space and its experiment."""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from typing import Any

import ray
from ray import tune
from ray.tune.error import TuneError
from ray.tune.search import ConcurrencyLimiter

from autometa.launch.durable import FOLDER, DurableStateCallback, NoSavedState, restore_snapshot
from autometa.launch.plan import Overrides, plan_experiment, scheduler_defaults
from autometa.launch.stopper import ExperimentStopper
from autometa.space import Experiment, Space

logger = logging.getLogger("autometa")


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to a cluster (``address``) or start local Ray; no dashboard. A local run first
    stops what a killed local run left behind (:mod:`autometa.launch.leftovers`: workers that
    may still write into the trial folders a resume reads), also where Ray is started already
    (a resume from Python)."""
    if not address:
        _stop_leftovers()
    if ray.is_initialized():
        return
    quiet_workers = ray.LoggingConfig(log_level="WARNING")  # no per-checkpoint INFO lines
    before = list(logging.getLogger().handlers)
    try:
        _init(address, num_cpus, quiet_workers)
    finally:
        # Ray's logging config adds a handler to the root logger: with the command line's
        # own, autometa's warnings would print twice; Ray's copy is dropped
        for handler in logging.getLogger().handlers:
            if handler not in before and before:
                handler.addFilter(_not_autometa)


def _not_autometa(record: logging.LogRecord) -> bool:
    # autometa's records and the Python warnings the command line turned into records
    return not (record.name.startswith("autometa") or record.name == "py.warnings")


class ClusterUnreachable(ConnectionError):
    """No Ray cluster answers at the address given (said before Ray's own retries, which wait
    minutes for a GCS that is not there)."""


def check_cluster_address(address: str, timeout: float = 10.0) -> str:
    """The ``host:port`` a cluster ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``)
    names, once something accepts a TCP connection there.

    Raises:
        ClusterUnreachable: ``auto`` finds no cluster, the address is malformed, or nothing
            listens there within ``timeout`` seconds.
    """
    import socket

    from ray._private.services import canonicalize_bootstrap_address

    client = address.startswith("ray://")
    try:  # Ray's own reading: RAY_ADDRESS, the cluster `ray start` recorded, a local GCS
        resolved = address[len("ray://"):] if client else canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as err:
        raise ClusterUnreachable(f"--address {address}: {err}") from None
    host, _, port = (resolved or "").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnreachable(f"--address {address}: expected auto, HOST:PORT or "
                                 f"ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise ClusterUnreachable(
            f"--address {address}: nothing answers at {host}:{port} ({why}); is the cluster "
            f"up there (`ray start --head` on that machine) and its port open from here?"
        ) from None
    return f"{host}:{port}"


def _init(address: str | None, num_cpus: int | None, quiet_workers: Any) -> None:
    if address:
        check_cluster_address(address)
        ray.init(address=address, logging_config=quiet_workers)
    else:
        # address="local": a Ray of its own, even where `ray start` left a cluster running
        # (Ray's default joins that one)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 dashboard_host="127.0.0.1", logging_config=quiet_workers)


def _stop_leftovers() -> None:
    from autometa.launch.leftovers import stop_leftover_ray_processes

    stopped = stop_leftover_ray_processes()
    if stopped:
        print(f"autometa: stopped {len(stopped)} Ray process(es) that a killed run left "
              f"behind (pids {', '.join(map(str, stopped))})", flush=True)


def unfit_resources(request: dict[str, float], nodes: list[dict[str, float]]) -> list[str]:
    """What of one trial's ``request`` (``cpu``, ``gpu``, custom names) no single node of
    ``nodes`` (Ray's resources per node: ``CPU``, ``GPU``, ...) has; [] when some node fits it
    whole. Each item: ``2 gpu requested, but no node has more than 0``."""
    ray_names = {k: k.upper() if k in ("cpu", "gpu") else k for k in request}
    wanted = {k: v for k, v in request.items() if v}
    if any(all(node.get(ray_names[k], 0) >= v for k, v in wanted.items()) for node in nodes):
        return []
    return [f"{v:g} {k} requested, but no node has more than "
            f"{max((node.get(ray_names[k], 0) for node in nodes), default=0):g}"
            for k, v in wanted.items()
            if not any(node.get(ray_names[k], 0) >= v for node in nodes)] or [
        "no single node has all of " + ", ".join(f"{k}: {v:g}" for k, v in wanted.items())]


def check_resources_fit(space: Space, exp: Experiment, *, from_command_line: bool = False,
                        cluster: bool = False) -> None:
    """Refuse per-trial resources that no node of the running Ray has (trials would wait
    forever); on a cluster, whose autoscaler may add nodes, say that trials wait instead.

    Raises:
        SpaceError: (``ValueError`` when they came from ``--resources``) for a local Ray.
    """
    nodes = [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
    missing = unfit_resources(dict(exp.resources_per_trial), nodes)
    if not missing:
        return
    problem = "; ".join(missing) + " (trials would wait for them forever)"
    if cluster:
        logger.warning("resources_per_trial: %s; trials wait until the cluster's autoscaler "
                       "adds such a node", "; ".join(missing))
        return
    if from_command_line:
        raise ValueError(f"--resources: {problem}")
    named = [k for k in exp.resources_per_trial if any(m.split(" ")[1:2] == [k] for m in missing)]
    key = named[0] if len(named) == 1 else None
    raise space.error(problem, "experiment", "resources_per_trial", *([key] if key else []))


def build_tuner(space: Space, exp: Experiment, *, experiment_dir: str | None = None,
                verbose: int = 1, callbacks: list | None = None) -> tune.Tuner:
    """A ready ``tune.Tuner`` for ``exp`` (checked with :func:`plan_experiment`).

    ``callbacks`` (Tune ``Callback`` objects) run besides autometa's own.
    """
    from autometa.schedulers import make_scheduler, scheduler_spec
    from autometa.schedulers.persist import state_callbacks
    from autometa.searchers import make_searcher

    population = scheduler_spec(exp.scheduler.name).population
    trainable = _trainable(exp, space)
    options, num_samples = _searcher_setup(exp)
    scheduler = make_scheduler(exp.scheduler.name, space=space, seed=exp.seed,
                               **scheduler_defaults(exp))
    param_space, search_alg, max_concurrent = {}, None, None
    if population:  # Tune draws the population itself
        from autometa.convert.tune import to_tune

        param_space, max_concurrent = to_tune(space), _max_concurrent(exp)
    else:
        searcher = make_searcher(exp.searcher.name, space, metric=exp.metric, mode=exp.mode,
                                 seed=exp.seed, **options)
        search_alg = ConcurrencyLimiter(searcher, max_concurrent=_max_concurrent(exp))
    storage, name = _location(exp, experiment_dir)
    # A population scheduler may copy a checkpoint some time after it was chosen, while its
    # trial keeps saving: deleting old checkpoints would break the copy, so keep them all.
    # Otherwise the durable-state callback deletes them, once the saved state no longer needs
    # them (Tune's num_to_keep deletes them before: a killed driver's trials fail on resume).
    keep = None if population else 2
    durable = DurableStateCallback(keep=keep)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=exp.metric, mode=exp.mode, search_alg=search_alg,
                                    scheduler=scheduler, num_samples=num_samples,
                                    max_concurrent_trials=max_concurrent,
                                    time_budget_s=exp.time_budget_s,
                                    reuse_actors=exp.reuse_actors),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, stop=ExperimentStopper(exp.stop, exp.metric),
            # Tune pickles schedulers only at the start: their state travels in a callback
            callbacks=(state_callbacks(scheduler) + [durable] + list(callbacks or [])
                       + _loggers(exp)),
            failure_config=tune.FailureConfig(max_failures=exp.max_failures,
                                             fail_fast=exp.fail_fast),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None), verbose=verbose),
    )


def _loggers(exp: Experiment) -> list:
    """Tune's result loggers, named (Tune adds its three defaults only to a run that names
    none: :func:`run_experiment` turns that off): ``result.json`` and ``progress.csv`` always,
    TensorBoard's event files when ``exp.tensorboard`` (its writer imports torch)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    loggers = [CSVLoggerCallback(), JsonLoggerCallback()]
    if exp.tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        loggers.append(TBXLoggerCallback())
    return loggers


# In an experiment's .autometa folder: its saved run configuration names its loggers
# (:func:`_loggers`); a folder without it was started by an earlier autometa, whose resume
# needs Tune's default loggers.
LOGGERS_NAMED = "loggers-named"


@contextlib.contextmanager
def _default_loggers(wanted: bool):
    """Tune adds its default loggers (CSV, JSON, TensorBoard) to a run only while ``wanted``:
    the switch is Tune's environment variable, read when the run starts, put back after."""
    key = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
    before = os.environ.get(key)
    os.environ[key] = "0" if wanted else "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _start(space: Space, exp: Experiment, path: str, verbose: int, progress: bool) -> tune.Tuner:
    """A new search in the folder ``path``: its tuner, the space's copy beside the results,
    and the mark that its run configuration names its loggers."""
    tuner = build_tuner(space, exp, experiment_dir=path, verbose=verbose,
                        callbacks=_progress(space, exp, progress))
    write_space_copy(space, exp, path)
    os.makedirs(os.path.join(path, FOLDER), exist_ok=True)
    open(os.path.join(path, FOLDER, LOGGERS_NAMED), "w").close()
    return tuner


def _searcher_setup(exp: Experiment) -> tuple[dict[str, Any], int]:
    """The searcher's options and Tune's ``num_samples`` for ``exp``."""
    from autometa.searchers import searcher_spec

    num_samples = exp.num_samples
    options = dict(exp.searcher.options)
    takes = searcher_spec(exp.searcher.name).num_samples_option
    if takes:  # e.g. the grid's repeats, a race's budget
        options.setdefault(takes, num_samples)
        num_samples = -1  # the searcher says when it is finished
    return options, num_samples


def planned_trials(space: Space, exp: Experiment) -> int | None:
    """How many trials a complete run of ``exp`` finishes (None: the searcher decides as it
    goes, as a race does); no Ray needed."""
    from autometa.schedulers import scheduler_spec
    from autometa.searchers import make_searcher

    if scheduler_spec(exp.scheduler.name).population:
        return exp.num_samples
    options, num_samples = _searcher_setup(exp)
    searcher = make_searcher(exp.searcher.name, space, metric=exp.metric, mode=exp.mode,
                             seed=exp.seed, **options)
    return searcher.planned_trials(num_samples)


def restore_tuner(space: Space, exp: Experiment, experiment_dir: str) -> tune.Tuner:
    """Reopen an interrupted experiment: finished trials stay, unfinished ones resume.

    The experiment state is first put back as last snapshotted (:func:`restore_snapshot`).
    """
    message = restore_snapshot(experiment_dir)
    if message:
        print(message, flush=True)
    return tune.Tuner.restore(experiment_dir, trainable=_trainable(exp, space), resume_unfinished=True,
                              resume_errored=True)


def run_experiment(space: Space, overrides: Overrides | None = None, *, resume: bool = False,
                   address: str | None = None, verbose: int = 1,
                   progress: bool = False) -> tuple[Any, str]:
    """Run (or resume) the search described by ``space``; return the results and their folder.

    ``verbose``: Tune's console output (0 silent, 1 status tables and a box per trial, 2 also
    every result); ``progress``: autometa's own line per trial that ends
    (:class:`~autometa.launch.progress.ConsoleProgress`; a resume keeps the first run's).
    """
    exp = plan_experiment(space, overrides)
    # Tune saves the experiment state (trials, searcher) every 10 s or more by default; a
    # killed driver then forgets what finished meanwhile. Save at most every second instead.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    init_ray(address)
    check_resources_fit(space, exp, from_command_line=bool(overrides and overrides.resources),
                        cluster=bool(address))
    if resume:
        path = find_experiment(exp)
        if path is None:
            raise FileNotFoundError(
                f"nothing to resume: no experiment named {exp.name!r} under "
                f"{os.path.expanduser(exp.storage_path)}")
        try:
            tuner = restore_tuner(space, exp, path)
        except NoSavedState as err:  # Tune would run one trial (its resume forgets num_samples)
            aside = set_aside(path)
            print(f"autometa: {err}, so no trial's progress was recorded: starting the search "
                  f"again (what it had written is in {aside})", flush=True)
            tuner = _start(space, exp, path, verbose, progress)
    else:
        path = new_experiment_dir(exp)
        tuner = _start(space, exp, path, verbose, progress)
    named = os.path.exists(os.path.join(path, FOLDER, LOGGERS_NAMED))
    try:
        with _default_loggers(not named):
            return tuner.fit(), path
    except TuneError as err:
        reported = metric_missing_from(str(err))
        if reported is None:
            raise
        keys = ", ".join(reported) or "no keys of its own"
        raise space.error(f"the trainable's reports have no {exp.metric!r} (a report had: "
                          f"{keys}): report it, tune.report({{{exp.metric!r}: value}}), or set "
                          f"metric to the key it reports", "experiment", "metric") from None


# Keys Tune adds to every report (not the trainable's own).
TUNE_KEYS = frozenset({"timestamp", "checkpoint_dir_name", "should_checkpoint", "done",
                       "training_iteration", "trial_id", "date", "time_this_iter_s",
                       "time_total_s", "pid", "hostname", "node_ip", "config",
                       "time_since_restore", "iterations_since_restore"})


def metric_missing_from(message: str) -> list[str] | None:
    """The trainable's own keys of the report that Tune's strict metric check refused (its
    error message quotes the report), or None when ``message`` is about something else."""
    import re

    if "did not include the specified metric" not in message:
        return None
    report = message.partition("Result: ")[2]
    keys = re.findall(r"'([^']+)':", report.split("\n")[0])
    return [k for k in dict.fromkeys(keys) if k not in TUNE_KEYS and not k.startswith("config/")]


def _progress(space: Space, exp: Experiment, wanted: bool) -> list:
    from autometa.launch.progress import ConsoleProgress

    return [ConsoleProgress(exp.metric, exp.mode, planned_trials(space, exp))] if wanted else []


SPACE_COPY = "autometa_space.yaml"


def set_aside(path: str) -> str:
    """Move everything in the experiment folder ``path`` to ``.autometa/abandoned-<time>``."""
    aside = os.path.join(path, FOLDER, "abandoned-" + datetime.datetime.now().strftime(
        "%Y%m%d-%H%M%S"))
    os.makedirs(aside, exist_ok=True)
    for name in os.listdir(path):
        if name != FOLDER:
            os.replace(os.path.join(path, name), os.path.join(aside, name))
    return aside


def write_space_copy(space: Space, exp: Experiment, path: str) -> None:
    """Keep the space and the experiment as run (overrides applied) beside the results."""
    from autometa.convert.document import dump_document

    os.makedirs(path, exist_ok=True)
    copy = Space(space.parameters, space.forbidden, exp, space.source)
    with open(os.path.join(path, SPACE_COPY), "w") as handle:
        handle.write(f"# The search space as run by autometa (from {space.source}).\n")
        handle.write(dump_document(copy))


def new_experiment_dir(exp: Experiment) -> str:
    """``storage/name``, or ``storage/name-YYYYmmdd-HHMMSS`` when that exists already."""
    storage = os.path.abspath(os.path.expanduser(exp.storage_path))
    path = os.path.join(storage, exp.name)
    if os.path.exists(path):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = os.path.join(storage, f"{exp.name}-{stamp}")
    return path


def find_experiment(exp: Experiment) -> str | None:
    """The most recent restorable experiment folder of ``exp`` (``name`` or ``name-<stamp>``)."""
    storage = os.path.abspath(os.path.expanduser(exp.storage_path))
    if not os.path.isdir(storage):
        return None
    candidates = [os.path.join(storage, d) for d in os.listdir(storage)
                  if d == exp.name or d.startswith(exp.name + "-")]
    candidates = [c for c in candidates if tune.Tuner.can_restore(c)]
    return max(candidates, key=os.path.getmtime) if candidates else None


def _location(exp: Experiment, experiment_dir: str | None) -> tuple[str, str]:
    if experiment_dir:
        return os.path.dirname(experiment_dir), os.path.basename(experiment_dir)
    return os.path.abspath(os.path.expanduser(exp.storage_path)), exp.name


def _trainable(exp: Experiment, space: Space) -> Any:
    """The experiment's trainable, with its resources; its worker waits for it at exit.

    A ``module:function`` trainable is imported with the search-space file's folder and the
    working directory importable (a ``my_model.py`` next to the file, or where you run).
    """
    from autometa.trainables import resolve_trainable
    from autometa.trial.exit import finish_before_exit

    near = [os.path.dirname(os.path.abspath(space.source))] if space.source else []
    trainable = resolve_trainable(exp.trainable, near)
    _ship_by_value(trainable)
    return tune.with_resources(finish_before_exit(trainable), _resources(exp))


def _ship_by_value(trainable: Any) -> None:
    """Send a user's module to the workers with the trainable (they may not have its folder on
    their path: Ray copied the driver's path when it started, and a cluster node lacks the file)."""
    import sys

    from ray import cloudpickle

    module = sys.modules.get(getattr(trainable, "__module__", "") or "")
    path = getattr(module, "__file__", None) or ""
    installed = any(part in path for part in ("site-packages", "dist-packages"))
    if module is None or module.__name__.startswith("autometa") or installed:
        return
    cloudpickle.register_pickle_by_value(module)


def _resources(exp: Experiment) -> dict[str, float]:
    return dict(exp.resources_per_trial)


def _max_concurrent(exp: Experiment) -> int:
    if exp.max_concurrent_trials:
        return exp.max_concurrent_trials
    cpus = ray.cluster_resources().get("CPU", 1) if ray.is_initialized() else 1
    per_trial = exp.resources_per_trial.get("cpu", 1) or 1
    return max(1, int(cpus // per_trial))

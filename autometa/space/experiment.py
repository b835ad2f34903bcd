"""The ``experiment`` section of a search-space file: what to run and how.

Names of searchers, schedulers and trainables are checked where they are
registered (``autometa.launch``); this module checks shapes and types only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autometa.space.errors import SpaceError, shown_value
from autometa.trial.keys import finite_number

_KEYS = ("name", "trainable", "metric", "mode", "searcher", "scheduler", "num_samples",
         "max_concurrent_trials", "resources_per_trial", "stop", "storage_path", "seed",
         "max_failures", "fail_fast", "time_budget_s", "reuse_actors", "tensorboard")
DEFAULT_STORAGE = "~/autometa_results"


@dataclass
class Component:
    """A searcher or scheduler by registered name, with its options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Experiment:
    """What ``autometa run`` does with a space.

    Attributes:
        name: Experiment name (the folder under ``storage_path``); defaults to the file's stem.
        trainable: A built-in trainable name or an import path ``module:function``.
        metric: Result key to optimize.
        mode: ``min`` or ``max``.
        searcher: Searcher name and options (default ``random``).
        scheduler: Scheduler name and options (default ``fifo``; ``bohb`` with the bohb searcher).
        num_samples: Number of trials (for ``grid``: repeats of the whole grid).
        max_concurrent_trials: At most this many trials at once (None: as resources allow).
        resources_per_trial: ``cpu``, ``gpu`` (fractions allowed) and custom resources.
        stop: Stop a trial when a result key reaches a value (e.g. ``training_iteration: 10``).
        storage_path: Where results go.
        seed: Seed of the searcher.
        max_failures: Retries of a failed trial (from its last checkpoint; -1: no limit).
        fail_fast: Stop the whole search at the first trial that fails for good (after its
            retries); the others are saved as they are, to continue with ``--resume``.
        time_budget_s: Stop the whole search after this many seconds.
        reuse_actors: Run a new trial in the worker of a finished one with the same resources
            (default True: starting a worker costs about a second, which dominates short
            trials such as one racing instance; False gives every trial a fresh process).
        tensorboard: Also write Tune's TensorBoard event files for each trial (default False:
            TensorBoard's writer imports torch in the driver, about 3 s a run on two cores,
            for a black-box search that needs no torch; ``result.json`` and ``progress.csv``
            are written either way, and ``autometa show`` reads those).
    """

    name: str | None = None
    trainable: str | None = None
    metric: str | None = None
    mode: str = "min"
    searcher: Component = field(default_factory=lambda: Component("random"))
    scheduler: Component | None = None
    num_samples: int = 10
    max_concurrent_trials: int | None = None
    resources_per_trial: dict[str, float] = field(default_factory=lambda: {"cpu": 1})
    stop: dict[str, float] = field(default_factory=dict)
    storage_path: str = DEFAULT_STORAGE
    seed: int | None = None
    max_failures: int = 0
    fail_fast: bool = False
    time_budget_s: float | None = None
    reuse_actors: bool = True
    tensorboard: bool = False


def parse_experiment(doc: Any, default_name: str | None = None) -> Experiment:
    """Check and convert the ``experiment`` mapping.

    Raises:
        SpaceError: with the key path of the offending entry.
    """
    at = ("experiment",)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise SpaceError("expected a mapping", key_path=at)
    for key in doc:
        if key not in _KEYS:
            raise SpaceError(f"unknown key {key!r}; expected one of {list(_KEYS)}", key_path=at + (key,))
    exp = Experiment(name=default_name)
    if "name" in doc:
        exp.name = _string(doc, "name", at)
    for key in ("trainable", "metric", "storage_path"):
        if key in doc:
            setattr(exp, key, _string(doc, key, at))
    if "mode" in doc:
        if doc["mode"] not in ("min", "max"):
            raise SpaceError(f"expected 'min' or 'max', got {doc['mode']!r}", key_path=at + ("mode",))
        exp.mode = doc["mode"]
    if "searcher" in doc:
        exp.searcher = _component(doc["searcher"], at + ("searcher",))
    if "scheduler" in doc:
        exp.scheduler = _component(doc["scheduler"], at + ("scheduler",))
    if "num_samples" in doc:
        exp.num_samples = _int(doc, "num_samples", at, minimum=1)
    if doc.get("max_concurrent_trials") is not None:
        exp.max_concurrent_trials = _int(doc, "max_concurrent_trials", at, minimum=1)
    if "seed" in doc and doc["seed"] is not None:
        seed = doc["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            # the searchers' own check (NumPy and hyperopt take 32-bit seeds)
            raise SpaceError(f"seed must be an integer in [0, 2**32 - 1], got {shown_value(seed)}",
                             key_path=at + ("seed",))
        exp.seed = seed
    if "max_failures" in doc:
        exp.max_failures = _int(doc, "max_failures", at, minimum=-1)
    if doc.get("time_budget_s") is not None:
        exp.time_budget_s = _positive(doc["time_budget_s"], at + ("time_budget_s",))
    for key in ("reuse_actors", "fail_fast", "tensorboard"):
        if key in doc:
            if not isinstance(doc[key], bool):
                raise SpaceError(f"expected true or false, got {doc[key]!r}", key_path=at + (key,))
            setattr(exp, key, doc[key])
    if "resources_per_trial" in doc:
        exp.resources_per_trial = check_resources(doc["resources_per_trial"],
                                                  at + ("resources_per_trial",))
    if "stop" in doc:
        exp.stop = _stop(doc["stop"], at + ("stop",))
    return exp


def _component(doc: Any, at: tuple) -> Component:
    if isinstance(doc, str) and doc:
        return Component(doc)
    if isinstance(doc, dict):
        if not isinstance(doc.get("name"), str):
            raise SpaceError("expected a 'name' (string) and options", key_path=at + ("name",))
        return Component(doc["name"], {k: v for k, v in doc.items() if k != "name"})
    raise SpaceError("expected a name or a mapping {name: ..., option: value}", key_path=at)


def check_resources(doc: Any, at: tuple) -> dict[str, float]:
    """Checked per-trial resources (``cpu``, ``gpu`` up to 1 when fractional, custom names).

    Raises:
        SpaceError: naming ``at`` (a key path) and what is wrong.
    """
    if not isinstance(doc, dict) or not doc:
        raise SpaceError("expected a mapping such as {cpu: 1, gpu: 0.5}", key_path=at)
    out = {}
    for key, value in doc.items():
        if not isinstance(key, str):
            raise SpaceError("resource names must be strings", key_path=at + (key,))
        if isinstance(value, bool) or finite_number(value) is None or value < 0:
            raise SpaceError(f"expected a finite number >= 0, got {shown_value(value)}",
                             key_path=at + (key,))
        if key == "gpu" and value > 1 and value != int(value):
            raise SpaceError("a fractional gpu request must be at most 1 (e.g. 0.5)", key_path=at + (key,))
        out[key] = value
    if out.get("cpu", 1) == 0 and out.get("gpu", 0) == 0 and len(out) <= 2:
        raise SpaceError("a trial must request some resource (cpu or gpu)", key_path=at)
    return out


def _stop(doc: Any, at: tuple) -> dict[str, float]:
    if not isinstance(doc, dict):
        raise SpaceError("expected a mapping {result_key: value}, e.g. {training_iteration: 10}",
                         key_path=at)
    for key, value in doc.items():
        if isinstance(value, bool) or finite_number(value) is None:
            raise SpaceError(f"expected a finite number, got {shown_value(value)}",
                             key_path=at + (key,))
    return dict(doc)


def _string(doc: dict, key: str, at: tuple) -> str:
    value = doc[key]
    if not isinstance(value, str) or not value:
        raise SpaceError(f"expected a non-empty string, got {value!r}", key_path=at + (key,))
    return value


def _int(doc: dict, key: str, at: tuple, minimum: int) -> int:
    value = doc[key]
    # (Tune keeps counts in 64-bit integers; 2**63 trials is no plan either)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < 2**63:
        raise SpaceError(f"expected an integer >= {minimum} (below 2**63), got {shown_value(value)}",
                         key_path=at + (key,))
    return value


def _positive(value: Any, at: tuple) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SpaceError(f"expected a number > 0, got {value!r}", key_path=at)
    return float(value)

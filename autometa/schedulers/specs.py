"""What each registered scheduler accepts and can do, known without importing it (no Ray).

A registry line in :mod:`autometa.schedulers` names one of these classes. For Ray's own
schedulers the options restate the checks of their constructors (``assert grace_period >
0``, ...), with the types Ray leaves to a comparison that fails later; the conformance tests
build Ray's class from values on both sides of every bound
(``tests/test_declared_options.py``), so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from autometa.options import Declared, Option, differentiable_against_space
from autometa.searchers.specs import BOHBSpec, SearcherSpec

MOST_RUNGS = 100
"""Most rungs (ASHA) or brackets (Hyperband) a scheduler may have: Ray lists them all when
it is built, so a ``reduction_factor`` a hair above 1 would hang there."""

_TIME_ATTR = Option("time_attr", "str", "training_iteration")
_STOP_LAST = Option("stop_last_trials", "bool", True)


class SchedulerSpec(Declared):
    """The capabilities a scheduler can have (every flag False: it works with any searcher)."""

    run_defaults: ClassVar[dict[str, Any]] = {}
    """Options autometa gives unless the file sets them (they differ from Ray's defaults)."""
    population: ClassVar[bool] = False
    """It changes trial configs itself: Ray allows no searcher with it, Tune draws the
    initial population from the Tune form of the space."""
    needs_space: ClassVar[bool] = False
    """Its constructor takes the search space (``space=``) and the experiment's ``seed``."""
    only_with: ClassVar[type[SearcherSpec] | None] = None
    """It works only with searchers of this declaration (HyperBandForBOHB calls BOHB's pause
    hooks): the searcher, or a searcher that composes it as its base."""
    synchronous_hyperband: ClassVar[bool] = False
    """Tune's synchronous Hyperband: its brackets fill only with a band's trials in flight."""
    max_t_from_stop: ClassVar[bool] = False
    """Its ``max_t`` defaults to the experiment's ``stop: {training_iteration: N}``."""
    stops_by_pausing: ClassVar[bool] = False
    """A trial it paused at a milestone and never resumed stopped there (a run's summary
    counts it as finished)."""


class FIFOSpec(SchedulerSpec):
    implementation = "ray.tune.schedulers:FIFOScheduler"


class ASHASpec(SchedulerSpec):
    implementation = "autometa.schedulers.resumable:ResumableASHAScheduler"
    options = (_TIME_ATTR,
               Option("max_t", "number", 100, low=0, low_open=True),
               Option("grace_period", "number", 1, low=0, low_open=True),
               Option("reduction_factor", "number", 4, low=1, low_open=True),
               Option("brackets", "int", 1, low=1, high=MOST_RUNGS),
               _STOP_LAST)
    max_t_from_stop = True

    @classmethod
    def together(cls, values: dict[str, Any]) -> tuple[str, str] | None:
        max_t, grace, eta = values["max_t"], values["grace_period"], values["reduction_factor"]
        if grace > max_t:
            return "grace_period", f"grace_period ({grace}) must be <= max_t ({max_t})"
        # Ray's rungs: grace_period * eta^k up to max_t, floor(log(max_t / grace) / log eta) + 1
        rungs = math.floor(math.log(max_t / grace) / math.log(eta)) + 1
        if rungs > MOST_RUNGS:
            return "reduction_factor", (
                f"reduction_factor {eta} makes {rungs} rungs between grace_period {grace} and "
                f"max_t {max_t}; at most {MOST_RUNGS} (use a reduction_factor such as 2 to 4)")
        return None


class HyperbandSpec(SchedulerSpec):
    implementation = "autometa.schedulers.resumable:ResumableHyperBandScheduler"
    # Ray asserts max_t > 0; its brackets need max_t >= 1 (schedulers.brackets)
    options = (_TIME_ATTR,
               Option("max_t", "number", 81, low=1),
               Option("reduction_factor", "number", 3, low=1, low_open=True),
               _STOP_LAST)
    synchronous_hyperband = True
    max_t_from_stop = True
    stops_by_pausing = True

    @classmethod
    def together(cls, values: dict[str, Any]) -> tuple[str, str] | None:
        max_t, eta = values["max_t"], values["reduction_factor"]
        brackets = round(math.log(max_t) / math.log(eta)) + 1  # (schedulers.brackets)
        if brackets > MOST_RUNGS:
            return "reduction_factor", (
                f"reduction_factor {eta} makes {brackets} brackets up to max_t {max_t}; at most "
                f"{MOST_RUNGS} (use a reduction_factor such as 3)")
        return None


class BOHBSchedulerSpec(HyperbandSpec):
    implementation = "autometa.schedulers.resumable:ResumableHyperBandForBOHB"
    only_with = BOHBSpec


class MedianSpec(SchedulerSpec):
    implementation = "autometa.schedulers.resumable:ResumableMedianStoppingRule"
    options = (Option("time_attr", "str", "time_total_s"),
               Option("grace_period", "number", 60.0, low=0),
               Option("min_samples_required", "int", 3, low=1),
               Option("min_time_slice", "number", 0, low=0),
               Option("hard_stop", "bool", True))
    run_defaults = {"time_attr": "training_iteration"}


class PBTSpec(SchedulerSpec):
    implementation = "autometa.schedulers.population:SpacePBT"
    options = (Option("hyperparam_mutations", "dict", None, optional=True),
               _TIME_ATTR,
               Option("perturbation_interval", "number", 60.0, low=0, low_open=True),
               Option("burn_in_period", "number", 0.0, low=0),
               Option("quantile_fraction", "number", 0.25, low=0, high=0.5),
               Option("resample_probability", "number", 0.25, low=0, high=1),
               Option("perturbation_factors", "list", (1.2, 0.8), length=2),
               Option("custom_explore_fn", "callable", None, optional=True),
               Option("log_config", "bool", True),
               Option("require_attrs", "bool", True),
               Option("synch", "bool", False))
    run_defaults = {"perturbation_interval": 2}
    population = True
    needs_space = True

    @classmethod
    def together(cls, values: dict[str, Any]) -> tuple[str, str] | None:
        # Ray's PBT takes, per parameter, a list of values or a mapping of nested ones
        for key, value in (values["hyperparam_mutations"] or {}).items():
            if not (isinstance(value, (list, tuple)) and value) and not isinstance(value, dict):
                return "hyperparam_mutations", (
                    f"hyperparam_mutations: {key}: expected a list of values to pick from or a "
                    f"mapping of nested parameters, got {value!r}")
        return None


class HypergradientPBTSpec(PBTSpec):
    implementation = "autometa.schedulers.population:HypergradientPBT"
    options = (Option("step_size", "number", 0.5, low=0, low_open=True),
               Option("differentiable", "list", None, optional=True)) + PBTSpec.options

    @classmethod
    def against_space(cls, values: dict[str, Any], space: Any) -> tuple[str, str] | None:
        return differentiable_against_space(values, space)


__all__ = ["ASHASpec", "BOHBSchedulerSpec", "FIFOSpec", "HyperbandSpec", "HypergradientPBTSpec",
           "MedianSpec", "PBTSpec", "SchedulerSpec"]

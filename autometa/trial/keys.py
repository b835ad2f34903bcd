"""The result-key contract between trials and searchers/schedulers (pure: no Ray, no torch).

Every name below is spelled here and nowhere else: trials write their results through
:func:`hypergrad_metrics` (or :func:`hyperstep_metrics`), searchers and schedulers read them
through :func:`reported_hypergrad` and :func:`reported_hparam`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

HPARAM_PREFIX = "hparams/"
"""``hparams/<name>``: the value of hyperparameter ``<name>`` the trial used (dotted space key)."""
HYPERGRAD_PREFIX = "hypergrad/"
"""``hypergrad/<name>``: d metric / d value, in the value's own units."""
CONVERGED = "hypergrad_converged"
"""1.0 when every check of the hypergradient passed (its stated tolerances were met)."""
RESIDUAL = "hypergrad_residual"
"""Relative residual of the linear solve (implicit differentiation)."""
INNER_GAP = "hypergrad_inner_gap"
"""First-order change of the validation loss if training went on to the inner optimum."""
INNER_GRAD_NORM = "hypergrad_inner_grad_norm"
"""Norm of the training loss's gradient at the weights the hypergradient was taken at."""
DAMPING = "hypergrad_damping"
"""Damping added to the Hessian (a damped hypergradient is biased)."""
SKIPPED = "hyperstep_skipped"
"""1.0 when a non-finite loss or hypergradient skipped the in-trial hyperstep."""
TRUST = "hyperstep_trust"
"""The share of its full length the last in-trial hyperstep took (:func:`gradient_trust`)."""
HYPERSTEPS = "hypersteps"
"""In-trial hypersteps taken so far (the online mode)."""
POLICY_ENTROPY = "augment_entropy"
"""Entropy (nats) of a learned augmentation policy's choice of operation."""
POLICY_MOVED = "augment_moved"
"""How far the policy has moved from its start (total variation of the choice plus the
largest change of a magnitude ceiling)."""
POLICY_CHANGE = "augment_change"
"""The same distance for the last hyperstep alone."""
POLICY_STILL = "augment_still"
"""1.0 when the policy has not moved after the learner's ``still_after`` hypersteps."""
POLICY_SNR = "augment_hypergrad_snr"
"""Signal-to-noise ratio of the policy's stochastic hypergradient (> 1: its direction is
resolved above the noise; it has no solver tolerance, so no ``hypergrad_converged``)."""

WARNINGS_ENV = "AUTOMETA_UNCONVERGED_WARNINGS"
"""Not a result key: the environment variable by which a driver tells its trials how often an
engine prints an unconverged hypergradient's warning: ``doubling`` (the default: the 1st, 2nd,
4th, 8th... unconverged call of each engine) or ``first`` (the first in each worker process
only; ``autometa run`` sets it for its local workers at the default verbosity, where the run's
summary counts the rest). Every report says whether it converged either way."""
WARNINGS_MODES = ("doubling", "first")


def warnings_mode(environ: Mapping[str, str]) -> str:
    """How often an engine warns of an unconverged hypergradient, as ``environ`` says
    (:data:`WARNINGS_ENV`; ValueError for a value not in :data:`WARNINGS_MODES`)."""
    mode = environ.get(WARNINGS_ENV, "").strip() or WARNINGS_MODES[0]
    if mode not in WARNINGS_MODES:
        raise ValueError(f"{WARNINGS_ENV}={mode!r}: expected one of "
                         f"{', '.join(WARNINGS_MODES)}")
    return mode


def finite_number(value: Any) -> float | None:
    """``value`` as a float if it is a finite number (Python, NumPy or 0-d tensor), else None.

    Booleans and strings are not numbers here (a result of ``True`` or ``"0.5"`` is not a
    metric).
    """
    number = _number(value)
    return number if number is not None and math.isfinite(number) else None


def nonfinite_number(value: Any) -> bool:
    """Whether ``value`` is a number (as :func:`finite_number` reads them) that is NaN or infinite."""
    number = _number(value)
    return number is not None and not math.isfinite(number)


def _number(value: Any) -> float | None:
    # float() of anything numeric (NumPy scalars, 0-d tensors), never of a bool or a string
    if isinstance(value, (bool, str, bytes)) or value is None:
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond a float's range is no finite float
        return math.inf if value > 0 else -math.inf
    except (TypeError, ValueError):
        return None


def gradient_trust(converged: float | None, residual: float | None) -> float:
    r"""How far a step may trust a reported hypergradient, in (0, 1].

    :math:`\rho = 1` when it met its tolerances (or reported no check), else
    :math:`\rho = \max(0.1,\ 1 - \min(\text{residual}, 0.9))` for its relative residual
    :math:`\|Hv - \nabla_w L_{val}\| / \|\nabla_w L_{val}\|`, and 0.5 without one.
    """
    if converged is None or converged != 0.0:
        return 1.0
    if residual is None or not math.isfinite(residual):
        return 0.5
    return max(0.1, 1.0 - min(residual, 0.9))


def hypergrad_key(name: str) -> str:
    """The result key of the hypergradient of ``name``."""
    return HYPERGRAD_PREFIX + name


def hparam_key(name: str) -> str:
    """The result key of the value of ``name``."""
    return HPARAM_PREFIX + name


def reported_hypergrad(result: Mapping[str, Any], name: str) -> float | None:
    """The finite hypergradient of ``name`` in ``result``, or None."""
    return finite_number(result.get(hypergrad_key(name)))


def reported_hparam(result: Mapping[str, Any], name: str) -> float | None:
    """The finite value of ``name`` the trial reported using, or None."""
    return finite_number(result.get(hparam_key(name)))


def reported_names(result: Mapping[str, Any]) -> list[str]:
    """Names of the hyperparameters ``result`` carries a hypergradient for."""
    return [k[len(HYPERGRAD_PREFIX):] for k in result if isinstance(k, str)
            and k.startswith(HYPERGRAD_PREFIX)]


def _flatten(name: str, value: Any) -> dict[str, float]:
    # a tensor-valued hyperparameter is reported element by element: <name>.<i>
    if hasattr(value, "detach"):
        value = value.detach().cpu().reshape(-1).tolist()
        if len(value) == 1:
            return {name: float(value[0])}
        return {f"{name}.{i}": float(v) for i, v in enumerate(value)}
    return {name: float(value)}


def hparam_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """``hparams/<name>`` for each value the trial uses (numbers or tensors, flattened)."""
    out: dict[str, float] = {}
    for name, value in values.items():
        out.update({hparam_key(k): v for k, v in _flatten(name, value).items()})
    return out


def hypergrad_metrics(hypergrads: Mapping[str, Any], values: Mapping[str, Any] | None = None,
                      info: Any = None) -> dict[str, float]:
    """The result keys of hypergradients (value units), the values used, and the checks.

    Args:
        hypergrads: d metric / d value by hyperparameter name (numbers or tensors).
        values: The values the trial used, by name.
        info: A :class:`~autometa.hypergrad.implicit.HypergradientInfo` (or anything with its
            attributes ``converged``, ``relative_residual``, ``inner_gap``,
            ``inner_grad_norm`` and ``damping``); without it the hypergradients are taken to
            be exact (``hypergrad_converged`` 1.0), as a closed form is.

    Example:
        >>> hypergrad_metrics({"lr": 0.5}, {"lr": 0.01})
        {'hparams/lr': 0.01, 'hypergrad/lr': 0.5, 'hypergrad_converged': 1.0}
    """
    out = hparam_metrics(values or {})
    for name, value in hypergrads.items():
        out.update({hypergrad_key(k): v for k, v in _flatten(name, value).items()})
    if info is None:
        out[CONVERGED] = 1.0
        return out
    out[CONVERGED] = float(bool(info.converged))
    for key, attribute in ((RESIDUAL, "relative_residual"), (INNER_GAP, "inner_gap"),
                           (INNER_GRAD_NORM, "inner_grad_norm"), (DAMPING, "damping")):
        value = getattr(info, attribute, None)
        if value is not None:
            out[key] = float(value)
    return out


def online_metrics(step: Any, updater: Any) -> dict[str, float]:
    """Result keys of the last :class:`~autometa.hypergrad.online.OnlineStep` of an
    :class:`~autometa.hypergrad.online.OnlineUpdater`: skipped, its trust, steps so far."""
    return {SKIPPED: float(not step.moved), TRUST: float(step.trust),
            HYPERSTEPS: float(updater.steps)}


def hyperstep_metrics(result: Any) -> dict[str, float]:
    """Result keys of a :class:`~autometa.hypergrad.loop.HyperStepResult`."""
    out: dict[str, float] = {"train_loss": result.train_loss, "val_loss": result.val_loss,
                             SKIPPED: float(result.skipped)}
    metrics = hypergrad_metrics(result.hypergrads, result.values, result.info)
    if result.info is None:  # a skipped step has no hypergradient, so nothing converged
        metrics[CONVERGED] = 0.0 if result.skipped else metrics[CONVERGED]
    out.update(metrics)
    return out


def policy_metrics(result: Any, prefix: str = "augment") -> dict[str, float]:
    """Result keys of a :class:`~autometa.augment.learner.PolicyStepResult`: per operation
    ``hparams/<prefix>.p.<op>`` and ``hparams/<prefix>.ceiling.<op>`` (the policy after the
    step), the hypergradients of the logits ``hypergrad/<prefix>.logit.<op>`` and
    ``hypergrad/<prefix>.ceiling_logit.<op>`` with their values, and the diagnostics above."""
    h = result.hypergradient
    names, ops = result.names, result.names[1:]
    out: dict[str, float] = {}
    for name, p in zip(names, result.probabilities, strict=True):
        out[hparam_key(f"{prefix}.p.{name}")] = float(p)
    for name, c in zip(ops, result.ceilings, strict=True):
        out[hparam_key(f"{prefix}.ceiling.{name}")] = float(c)
    for name, g in zip(names, h.logits.tolist(), strict=True):
        out[hypergrad_key(f"{prefix}.logit.{name}")] = float(g)
    for name, g in zip(ops, h.raw_ceiling.tolist(), strict=True):
        out[hypergrad_key(f"{prefix}.ceiling_logit.{name}")] = float(g)
    out.update({POLICY_ENTROPY: float(result.entropy), POLICY_MOVED: float(result.moved),
                POLICY_CHANGE: float(result.change), POLICY_STILL: float(result.still),
                POLICY_SNR: float(h.snr()), SKIPPED: float(result.skipped)})
    return out

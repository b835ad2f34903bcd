r"""Implicit differentiation: the hypergradient at an (approximate) inner optimum.

.. math::
    \frac{d L_{val}}{d\theta} = \nabla_\theta L_{val}
        - \nabla^2_{\theta w} L_{train}\, v, \qquad (H + \lambda I)\, v = \nabla_w L_{val}

with :math:`\lambda` the ``damping``. Products :math:`v \mapsto Hv` come from double
backward through one graph of :math:`\nabla_w L_{train}`, so each costs about one
backward pass and no dense Hessian is formed (except by the ``"exact"`` method).

A damped result is exact for another inner problem: :math:`L_{train}(w) + \tfrac{\lambda}{2}
\|w - w^*\|^2` (a proximal term around the weights it is taken at) has the Hessian
:math:`H + \lambda I`, the same mixed term and the same optimum. ``damping="auto"`` solves
undamped first and, only when that solve misses ``tol``, adds the smallest damping with which
the solve can meet it (:func:`auto_damping`, from the Hessian's extreme eigenvalues along the
validation gradient); the damping used is in the result.

Two things make the result wrong, and both are measured (:class:`HypergradientInfo`):

* the linear solve: relative residual :math:`\|(H + \lambda I)v - g\| / \|g\|` against ``tol``
  (the iterative solvers also stop at ``tol``, so the stated tolerance is the one checked);
* the weights not being an inner optimum. A Newton step :math:`\delta = -H^{-1}\nabla_w
  L_{train}` would move them to it, changing the validation loss by :math:`g^\top\delta =
  -v^\top \nabla_w L_{train}` to first order: the *inner gap*, free once :math:`v` is known.
  It must be small against what the hypergradient itself moves
  (:math:`|v^\top \nabla_w L_{train}| \le` ``inner_tol`` :math:`\cdot \|dL_{val}/d\theta\|`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from autometa.hypergrad._flat import Tensors, flatten, leaves
from autometa.hypergrad.solvers import largest_eigenvalue, make_solver, spectrum_bounds

Loss = Callable[[Tensors, Tensors], torch.Tensor]

DEFAULT_TOL = 1e-4
"""Default relative residual of the linear solve (stop criterion and check)."""
DEFAULT_INNER_TOL = 0.1
"""Default largest inner gap, relative to the hypergradient's norm."""
ITERATIVE = ("cg", "minres", "fixed_point")
AUTO_DAMPING_CAP = 2e-3
"""``damping="auto"`` adds at most this share of the Hessian's largest curvature (along the
validation gradient): beyond, damping changes more than the poorly curved directions and the
hypergradient is more the damping's than the Hessian's, so the result stays unconverged
instead (with ``maxiter=300`` and ``tol=1e-4`` the damping it needs is about 1.1e-3 of it; on
an SGD-trained CNN 6e-3 met the tolerance with a hypergradient no closer to a retrained finite
difference than the undamped one: ``benchmarks/README.md``)."""
"""Methods that stop on the residual (they take ``tol``)."""


class UnconvergedWarning(RuntimeWarning):
    """The inner problem was not at an optimum, or the linear solve did not converge."""


@dataclass(frozen=True)
class HypergradientInfo:
    """How much to trust a hypergradient.

    Attributes:
        converged: Every check passed: finite values, ``relative_residual <= tol`` and the
            inner gap within ``inner_tol`` (always False when a value is NaN or infinite).
        relative_residual: :math:`\\|(H + \\lambda I)v - g\\| / \\|g\\|` of the linear solve
            (0 when :math:`g = 0`; NaN when not measured).
        inner_gap: :math:`|v^\\top \\nabla_w L_{train}|`: how much the validation loss would
            still change, to first order, if training went on to the optimum.
        inner_grad_norm: :math:`\\|\\nabla_w L_{train}(w, \\theta)\\|` at the given weights.
        hypergrad_norm: :math:`\\|dL_{val}/d\\theta\\|` over all hyperparameters.
        method: The solver used (``"unrolled"`` for :func:`~autometa.hypergrad.unrolled`).
        damping: :math:`\\lambda` used.
        tol: Tolerance of the relative residual.
        inner_tol: Tolerance of the inner gap relative to ``hypergrad_norm``.
        finite: Losses, gradients and the result are all finite.
        message: Empty when converged; otherwise what is wrong and what to change.
    """

    converged: bool
    relative_residual: float
    inner_gap: float = math.nan
    inner_grad_norm: float = math.nan
    hypergrad_norm: float = math.nan
    method: str = ""
    damping: float = 0.0
    tol: float = DEFAULT_TOL
    inner_tol: float = DEFAULT_INNER_TOL
    finite: bool = True
    message: str = ""


@dataclass(frozen=True)
class ImplicitResult:
    """What :func:`implicit_hypergradient` returns.

    Attributes:
        grads: :math:`dL_{val}/d\\theta_i`, one per hyperparameter tensor, detached.
        info: The checks.
        solution: :math:`v`, to warm-start the next solve (``init=``).
        spectrum: The undamped Hessian's extreme eigenvalues along the validation gradient
            that this call estimated or was given (None: none was needed), for ``spectrum=``
            of a later call.
    """

    grads: list[torch.Tensor]
    info: HypergradientInfo
    solution: torch.Tensor | None
    spectrum: tuple[float, float] | None = None


def resolve_method(method: str) -> str:
    """``"auto"`` is MINRES: it minimizes the residual that is checked and, unlike CG, needs no
    positive definite Hessian (weights short of a minimum give an indefinite one)."""
    return "minres" if method == "auto" else method


def auto_damping(low: float, high: float, maxiter: int, tol: float) -> float:
    r"""The smallest damping :math:`d` with which a Krylov solve of :math:`(H + dI)v = g`
    reaches the relative residual ``tol`` in half of ``maxiter`` products (half: ``low`` and
    ``high`` are estimates of the extreme eigenvalues of :math:`H`, from a short Lanczos run).

    .. math::
        \tfrac12\sqrt{\kappa_d}\,\ln(2/\mathrm{tol}) \le \tfrac{\mathrm{maxiter}}{2},
        \quad \kappa_d = \frac{high + d}{low + d}
        \;\Longrightarrow\; d \ge \frac{high - K\,low}{K - 1},
        \quad K = \Big(\frac{\mathrm{maxiter}}{\ln(2/\mathrm{tol})}\Big)^2

    It makes :math:`H + dI` positive definite too (:math:`low + d = (high - low)/(K - 1)`).
    0 when no damping is needed; NaN when the bounds are not finite.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return math.nan
    high = max(high, abs(low))  # no positive curvature along g: scale by the largest magnitude
    k = (maxiter / math.log(2.0 / tol)) ** 2
    if k <= 1:
        return max(high, 0.0)
    return max((high - k * low) / (k - 1.0), 0.0)


def implicit_hypergradient(train_loss: torch.Tensor, val_loss: torch.Tensor,
                           weights: list[torch.Tensor], hparams: list[torch.Tensor], *,
                           method: str = "auto", damping: float | str = 0.0,
                           tol: float = DEFAULT_TOL,
                           inner_tol: float = DEFAULT_INNER_TOL, init: torch.Tensor | None = None,
                           check: bool = True, spectrum: tuple[float, float] | None = None,
                           **options: float) -> ImplicitResult:
    r"""The implicit hypergradient from the two loss values and the tensors they depend on.

    The building block of :func:`hypergradient` and of
    :class:`~autometa.hypergrad.model.ImplicitEngine`: ``train_loss`` and ``val_loss`` are scalars
    computed (with their autograd graphs) from ``weights`` and ``hparams``, which must require
    gradients (a model's own ``parameters()`` do). Nothing is written to any ``.grad``.

    Args:
        train_loss, val_loss: The two losses at the current weights.
        weights: Tensors :math:`w` the losses depend on (all require grad).
        hparams: Tensors :math:`\theta` (all require grad).
        method: ``"auto"`` (MINRES), ``"minres"``, ``"cg"``, ``"exact"``, ``"neumann"`` or
            ``"fixed_point"`` (:mod:`autometa.hypergrad.solvers`).
        damping: :math:`\lambda \ge 0` added to the Hessian's diagonal (the hypergradient of
            the proximal inner problem, see the module docstring), or ``"auto"``: none unless
            the undamped solve misses ``tol``, then the smallest that meets it (at most two
            more solves; with ``method="neumann"``, whose series has no residual to aim at,
            none). The damping used is ``info.damping``.
        tol: Largest relative residual accepted (an iterative solve stops at half of it).
        inner_tol: Largest inner gap accepted, relative to :math:`\|dL_{val}/d\theta\|`.
        init: Starting point of the solve (the previous ``solution``: warm start).
        check: Measure the residual (one extra Hessian-vector product) and warn with
            :class:`UnconvergedWarning` when a check fails. Without it ``converged`` is False
            (nothing was measured) and nothing is said.
        spectrum: ``(lowest, highest)`` eigenvalue of the undamped Hessian along the validation
            gradient from an earlier call (its ``result.spectrum``), used instead of the
            20-product estimate that the automatic damping and the advice of a failed solve
            need. Only those depend on it: a damping taken from it is still checked by the
            residual, so ``converged`` keeps its meaning.
        **options: Options of the solver (``maxiter``, ``alpha``, ``terms``). ``alpha="auto"``
            (Neumann, fixed point) uses :math:`1/\lambda_{max}` from 30 power iterations.
    """
    method = resolve_method(method)
    auto = damping == "auto" and method in (*ITERATIVE, "exact")  # (Neumann: none)
    if damping == "auto":
        damping = 0.0
    if not auto and (isinstance(damping, (str, bool)) or not float(damping) >= 0):
        raise ValueError(f"damping must be a number >= 0 or 'auto', got {damping!r}")
    damping = float(damping)
    if method in ITERATIVE:
        # stop a little below tol: a recurrence's residual drifts from the true one, checked below
        options = {"tol": 0.5 * tol, **options}
    auto_alpha = options.get("alpha") == "auto"
    solve = make_solver(method, **{**options, "alpha": 1.0} if auto_alpha else options)

    # grad_w L_train, kept differentiable in w (for H v) and in theta (for the mixed term)
    inner = flatten(_grads(train_loss, weights, create_graph=True))
    g = flatten(_grads(val_loss, weights, retain_graph=True)).detach()
    direct = _grads(val_loss, hparams)
    inner_norm = float(torch.linalg.vector_norm(inner.detach()))
    values_finite = (math.isfinite(float(train_loss.detach())) and math.isfinite(float(val_loss.detach()))
                     and math.isfinite(inner_norm) and bool(torch.isfinite(g).all())
                     and all(bool(torch.isfinite(d).all()) for d in direct))
    if not values_finite:
        info = _nonfinite_info(train_loss, val_loss, inner_norm, g, method, damping, tol, inner_tol)
        warnings.warn(info.message, UnconvergedWarning, stacklevel=3)
        return ImplicitResult([torch.full_like(t, math.nan) for t in hparams], info, None)

    shift = [damping]  # the damping of the system solved (raised by damping="auto")

    def matvec(v: torch.Tensor) -> torch.Tensor:
        # H v = d/dw <grad_w L_train, v>, plus damping
        hv = flatten(_grads(inner, weights, grad_outputs=v, retain_graph=True)).detach()
        return hv + shift[0] * v if shift[0] else hv

    undamped: list[tuple[float, float]] = [] if spectrum is None else [tuple(map(float, spectrum))]

    def spectrum() -> tuple[float, float]:
        # extreme eigenvalues of H + shift I along g: a short Lanczos run (20 products) on H,
        # once per call (a shift moves every eigenvalue by itself)
        if not undamped:
            saved, shift[0] = shift[0], 0.0
            undamped.append(spectrum_bounds(matvec, g))
            shift[0] = saved
        low, high = undamped[0]
        return low + shift[0], high + shift[0]

    measured: list[tuple[torch.Tensor, float, float]] = []  # the last (v, shift, residual)

    def relative_residual(v: torch.Tensor) -> float:
        # |(H + shift I) v - g| / |g|, one product (none again for the same v and shift)
        if measured and measured[0][0] is v and measured[0][1] == shift[0]:
            return measured[0][2]
        g_norm = float(torch.linalg.vector_norm(g))
        value = float(torch.linalg.vector_norm(matvec(v) - g)) / g_norm if g_norm > 0 else 0.0
        measured[:] = [(v, shift[0], value)]
        return value

    if auto_alpha:
        top = largest_eigenvalue(matvec, g)
        solve = make_solver(method, **{**options, "alpha": 1.0 / top if top > 0 else 1.0})
    if init is not None and (init.shape != g.shape or not bool(torch.isfinite(init).all())):
        init = None
    v = solve(matvec, g, init=init).detach()
    if auto and check and bool(torch.isfinite(v).all()) and relative_residual(v) > tol:
        v = _damped_solve(solve, matvec, relative_residual, spectrum, shift, g, v, tol,
                          int(options.get("maxiter", 300)))
    damping = shift[0]
    # mixed term: d/dtheta <grad_w L_train, v>
    mixed = _grads(inner, hparams, grad_outputs=v, retain_graph=True)
    grads = [(d - m).detach() for d, m in zip(direct, mixed, strict=True)]
    hypergrad_norm = float(torch.linalg.vector_norm(flatten(grads))) if grads else 0.0
    inner_gap = abs(float(v @ inner.detach()))
    residual = relative_residual(v) if check else math.nan
    finite = math.isfinite(hypergrad_norm) and math.isfinite(inner_gap) and \
        (math.isfinite(residual) or not check)
    solved = not check or residual <= tol
    # the gap may be tiny in absolute terms when the hypergradient itself vanishes
    floor = 1e-7 * max(abs(float(val_loss.detach())), 1e-12)
    at_optimum = inner_gap <= max(inner_tol * hypergrad_norm, floor)
    converged = check and finite and solved and at_optimum   # unmeasured is not converged
    if not check:
        message = "not checked (check=False): the residual was not measured"
    else:
        message = "" if converged else _advice(finite, solved, at_optimum, residual, inner_gap,
                                               hypergrad_norm, method, damping, tol, inner_tol,
                                               options, spectrum)
    info = HypergradientInfo(converged, residual, inner_gap, inner_norm, hypergrad_norm, method,
                             damping, tol, inner_tol, finite, message)
    if check and not converged:
        warnings.warn(message, UnconvergedWarning, stacklevel=3)
    return ImplicitResult(grads, info, v, undamped[0] if undamped else None)


def _damped_solve(solve, matvec, relative_residual, spectrum, shift: list[float],
                  g: torch.Tensor, v: torch.Tensor, tol: float, maxiter: int) -> torch.Tensor:
    """``damping="auto"`` after a missed undamped solve: :func:`auto_damping` from the
    Hessian's extreme eigenvalues along ``g`` (20 products), then ten times that if the
    estimate fell short, neither above :data:`AUTO_DAMPING_CAP` of the largest curvature;
    each solve warm-started from the last. Sets ``shift[0]``."""
    low, high = spectrum()
    first = auto_damping(low, high, maxiter, tol)
    cap = AUTO_DAMPING_CAP * max(high, abs(low))
    if not math.isfinite(first) or first <= 0:
        return v
    for damping in (first, 10.0 * first):
        if damping > cap:  # the result would be mostly the damping's: leave it unconverged
            break
        shift[0] = damping
        v = solve(matvec, g, init=v).detach()
        if bool(torch.isfinite(v).all()) and relative_residual(v) <= tol:
            break
    return v


def hypergradient(train_loss: Loss, val_loss: Loss, params: Tensors, hparams: Tensors,
                  method: str = "auto", *, damping: float | str = 0.0, tol: float = DEFAULT_TOL,
                  inner_tol: float = DEFAULT_INNER_TOL, init: torch.Tensor | None = None,
                  check: bool = True, return_info: bool = False,
                  **options: float) -> Tensors | tuple[Tensors, HypergradientInfo]:
    r"""Total derivative of ``val_loss`` with respect to ``hparams`` at the inner optimum.

    The functional form: both losses are functions of ``(params, hparams)``. For a model's
    own loss closures, use :class:`~autometa.hypergrad.model.ImplicitEngine`.

    Args:
        train_loss: ``train_loss(params, hparams) -> scalar``; ``params`` should (approximately)
            minimize it for the given ``hparams``.
        val_loss: ``val_loss(params, hparams) -> scalar``; a direct dependence on ``hparams``
            is included in the result.
        params: Weights :math:`w` (dict of tensors). Not modified.
        hparams: Hyperparameters :math:`\theta` (dict of tensors). Not modified.
        method, damping, tol, inner_tol, init, check, **options: See
            :func:`implicit_hypergradient`.
        return_info: Also return a :class:`HypergradientInfo`.

    Returns:
        A dict with the keys and shapes of ``hparams`` (and the info if asked).

    Example:
        >>> import torch
        >>> x, y = torch.tensor([[1.0], [2.0]], dtype=torch.float64), torch.tensor([1.0, 2.0],
        ...     dtype=torch.float64)
        >>> train = lambda p, h: 0.5 * ((x @ p["w"] - y) ** 2).sum() + 0.5 * h["lam"] * p["w"] @ p["w"]
        >>> val = lambda p, h: 0.5 * ((p["w"] - 2.0) ** 2).sum()
        >>> lam = torch.tensor(1.0, dtype=torch.float64)
        >>> w = torch.tensor([5.0 / 6.0], dtype=torch.float64)   # (x'x + lam)^-1 x'y
        >>> round(float(hypergradient(train, val, {"w": w}, {"lam": lam})["lam"]), 6)
        0.162037
    """
    w, theta = leaves(params), leaves(hparams)
    result = implicit_hypergradient(train_loss(w, theta), val_loss(w, theta), list(w.values()),
                                    list(theta.values()), method=method, damping=damping, tol=tol,
                                    inner_tol=inner_tol, init=init, check=check, **options)
    grads = dict(zip(theta, result.grads, strict=True))
    return (grads, result.info) if return_info else grads


def _grads(output: torch.Tensor, inputs: list[torch.Tensor], **kwargs) -> list[torch.Tensor]:
    """``torch.autograd.grad`` with zeros for inputs the output does not depend on."""
    if not output.requires_grad:
        return [torch.zeros_like(t) for t in inputs]
    grads = torch.autograd.grad(output, inputs, allow_unused=True, **kwargs)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads, strict=True)]


def _nonfinite_info(train_loss: torch.Tensor, val_loss: torch.Tensor, inner_norm: float,
                    g: torch.Tensor, method: str, damping: float, tol: float,
                    inner_tol: float) -> HypergradientInfo:
    what = [name for name, ok in (
        ("the training loss", math.isfinite(float(train_loss.detach()))),
        ("the validation loss", math.isfinite(float(val_loss.detach()))),
        ("the training loss's gradient", math.isfinite(inner_norm)),
        ("the validation loss's gradient", bool(torch.isfinite(g).all()))) if not ok]
    what = what or ["the validation loss's direct dependence on the hyperparameters"]
    verb = "is" if len(what) == 1 else "are"
    message = ("hypergradient is not finite: " + ", ".join(what) + f" {verb} NaN or infinite "
               "(diverged training, or a hyperparameter at a value the loss cannot take); no "
               "linear solve was attempted")
    return HypergradientInfo(False, math.nan, math.nan, inner_norm, math.nan, method, damping,
                             tol, inner_tol, False, message)


def _advice(finite: bool, solved: bool, at_optimum: bool, residual: float, inner_gap: float,
            hypergrad_norm: float, method: str, damping: float, tol: float, inner_tol: float,
            options: dict, spectrum) -> str:
    parts = []
    if not finite:
        parts.append(f"the {method} solve produced a non-finite solution: use method='minres' "
                     "or add damping")
    if finite and not solved:
        parts.append(_solve_advice(residual, method, damping, tol, options, spectrum))
    if finite and not at_optimum:
        parts.append(f"the weights are not at an optimum of the training loss: training on would "
                     f"still change the validation loss by about {inner_gap:.3g} (first order), "
                     f"more than inner_tol {inner_tol:g} x the hypergradient's norm "
                     f"{hypergrad_norm:.3g}; train further (more steps, a smaller learning rate "
                     "or a few L-BFGS steps) before taking the hypergradient")
    return "hypergradient may be inaccurate: " + "; ".join(parts)


def _solve_advice(residual: float, method: str, damping: float, tol: float, options: dict,
                  spectrum) -> str:
    # a short Lanczos run (20 products, shared with damping="auto"), spent only when the
    # solve failed, sizes the advice
    low, high = spectrum()
    text = (f"the {method} solve did not converge (relative residual {residual:.3g} > tol "
            f"{tol:g})")
    if high <= 0 or not math.isfinite(high):
        return text + ": the Hessian has no positive curvature along the validation gradient"
    if low < -1e-6 * high:
        need = damping + 2.0 * abs(low)   # low is an eigenvalue of H + damping I
        hint = "" if method == "minres" else "use method='minres' or 'auto' (cg needs a positive " \
            "definite Hessian), "
        return (text + f": the Hessian is indefinite (an eigenvalue about {low:.3g}), so the "
                f"weights are not at a minimum; train further, {hint}or raise damping to about "
                f"{need:.2g} (which biases the hypergradient)")
    maxiter = int(options.get("maxiter", options.get("terms", 300)))
    kappa = high / max(low, 1e-12 * high)
    # Krylov methods need about sqrt(kappa)/2 * ln(2/tol) products for a residual of tol
    needed = int(math.ceil(0.5 * math.sqrt(kappa) * math.log(2.0 / tol)))
    # the damping d with sqrt((high + d) / (low + d)) / 2 * ln(2/tol) = maxiter
    r = (2.0 * maxiter / math.log(2.0 / tol)) ** 2
    d = damping + (max((high - r * low) / (r - 1.0), 0.0) if r > 1 else high)
    iterative = method in ITERATIVE
    first = f"raise maxiter to about {needed}" if iterative else "use method='auto' (MINRES)"
    return (text + f": the Hessian's condition number is about {kappa:.3g} (eigenvalues about "
            f"{low:.3g} to {high:.3g}); {first}, or raise damping to about {d:.2g} (which biases "
            "the hypergradient)")


__all__ = ["DEFAULT_INNER_TOL", "DEFAULT_TOL", "HypergradientInfo", "ImplicitResult",
           "UnconvergedWarning", "auto_damping", "hypergradient", "implicit_hypergradient",
           "resolve_method"]

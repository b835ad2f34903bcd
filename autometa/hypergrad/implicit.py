r"""Implicit differentiation: the hypergradient at an (approximate) inner optimum.

.. math::
    \frac{d L_{val}}{d\theta} = \nabla_\theta L_{val}
        - \nabla^2_{\theta w} L_{train}\, v, \qquad (H + \lambda I)\, v = \nabla_w L_{val}

with :math:`\lambda` the ``damping``. Products :math:`v \mapsto Hv` come from double
backward through one graph of :math:`\nabla_w L_{train}`, so each costs about one
backward pass and no dense Hessian is formed (except by the ``"exact"`` method).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from autometa.hypergrad._flat import Tensors, flatten, leaves, unflatten
from autometa.hypergrad.solvers import largest_eigenvalue, make_solver

Loss = Callable[[Tensors, Tensors], torch.Tensor]


class UnconvergedWarning(RuntimeWarning):
    """The inner problem was not at an optimum, or the linear solve did not converge."""


@dataclass(frozen=True)
class HypergradientInfo:
    """How much to trust a hypergradient.

    Attributes:
        inner_grad_norm: :math:`\\|\\nabla_w L_{train}(w, \\theta)\\|` at the given weights; the
            implicit function theorem assumes 0 (an inner optimum).
        relative_residual: :math:`\\|(H + \\lambda I)v - g\\| / \\|g\\|` of the linear solve.
        converged: Both are below their tolerances (``inner_tol``, ``solve_tol``).
        method: The solver used.
    """

    inner_grad_norm: float
    relative_residual: float
    converged: bool
    method: str


def hypergradient(train_loss: Loss, val_loss: Loss, params: Tensors, hparams: Tensors,
                  method: str = "cg", *, damping: float = 0.0, inner_tol: float = 1e-3,
                  solve_tol: float = 1e-2, check: bool = True, return_info: bool = False,
                  **options: float) -> Tensors | tuple[Tensors, HypergradientInfo]:
    r"""Total derivative of ``val_loss`` with respect to ``hparams`` at the inner optimum.

    Args:
        train_loss: ``train_loss(params, hparams) -> scalar``; ``params`` should (approximately)
            minimize it for the given ``hparams``.
        val_loss: ``val_loss(params, hparams) -> scalar``; a direct dependence on ``hparams``
            is included in the result.
        params: Weights :math:`w` (dict of tensors). Not modified.
        hparams: Hyperparameters :math:`\theta` (dict of tensors). Not modified.
        method: ``"exact"``, ``"cg"``, ``"neumann"`` or ``"fixed_point"``
            (see :mod:`autometa.hypergrad.solvers`).
        damping: :math:`\lambda \ge 0` added to the Hessian's diagonal.
        inner_tol: Largest :math:`\|\nabla_w L_{train}\|` accepted as an optimum.
        solve_tol: Largest relative residual of the linear solve accepted.
        check: Measure both (one extra Hessian-vector product) and warn with
            :class:`UnconvergedWarning` when either tolerance is exceeded.
        return_info: Also return a :class:`HypergradientInfo`.
        **options: Options of the solver (``maxiter``, ``tol``, ``alpha``, ``terms``).
            ``alpha="auto"`` (Neumann, fixed point) uses :math:`1/\lambda_{max}` estimated by 30
            power iterations (30 extra Hessian-vector products).

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
    auto_alpha = options.get("alpha") == "auto"
    solve = make_solver(method, **{**options, "alpha": 1.0} if auto_alpha else options)
    w, theta = leaves(params), leaves(hparams)
    w_list, theta_list = list(w.values()), list(theta.values())

    # grad_w L_train, kept differentiable in w (for H v) and in theta (for the mixed term)
    inner = flatten(_grads(train_loss(w, theta), w_list, create_graph=True))
    val = val_loss(w, theta)
    g = flatten(_grads(val, w_list, retain_graph=True)).detach()
    direct = _grads(val, theta_list)

    def matvec(v: torch.Tensor) -> torch.Tensor:
        # H v = d/dw <grad_w L_train, v>, plus damping
        hv = flatten(_grads(inner, w_list, grad_outputs=v, retain_graph=True)).detach()
        return hv + damping * v if damping else hv

    if auto_alpha:
        top = largest_eigenvalue(matvec, g)
        solve = make_solver(method, **{**options, "alpha": 1.0 / top if top > 0 else 1.0})
    v = solve(matvec, g).detach()
    # mixed term: d/dtheta <grad_w L_train, v>
    mixed = _grads(inner, theta_list, grad_outputs=v, retain_graph=check)
    result = {name: (d - m).detach() for name, d, m in zip(theta, direct, mixed, strict=True)}

    info = None
    if check:
        info = _diagnose(inner, matvec, v, g, method, inner_tol, solve_tol)
        if not info.converged:
            warnings.warn(_describe(info, inner_tol, solve_tol), UnconvergedWarning, stacklevel=2)
    if return_info:
        if info is None:
            info = HypergradientInfo(math.nan, math.nan, True, method)
        return result, info
    return result


def _grads(output: torch.Tensor, inputs: list[torch.Tensor], **kwargs) -> list[torch.Tensor]:
    """``torch.autograd.grad`` with zeros for inputs the output does not depend on."""
    if not output.requires_grad:
        return [torch.zeros_like(t) for t in inputs]
    grads = torch.autograd.grad(output, inputs, allow_unused=True, **kwargs)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads, strict=True)]


def _diagnose(inner: torch.Tensor, matvec, v: torch.Tensor, g: torch.Tensor, method: str,
              inner_tol: float, solve_tol: float) -> HypergradientInfo:
    inner_norm = float(torch.linalg.vector_norm(inner.detach()))
    g_norm = float(torch.linalg.vector_norm(g))
    residual = float(torch.linalg.vector_norm(matvec(v) - g)) / g_norm if g_norm > 0 else 0.0
    finite = math.isfinite(inner_norm) and math.isfinite(residual)
    converged = finite and inner_norm <= inner_tol and residual <= solve_tol
    return HypergradientInfo(inner_norm, residual, converged, method)


def _describe(info: HypergradientInfo, inner_tol: float, solve_tol: float) -> str:
    parts = []
    if not info.inner_grad_norm <= inner_tol:
        parts.append(f"the weights are not an inner optimum (|grad_w L_train| = "
                     f"{info.inner_grad_norm:.3g} > inner_tol {inner_tol:g}): train longer")
    if not info.relative_residual <= solve_tol:
        parts.append(f"the {info.method} solve did not converge (relative residual "
                     f"{info.relative_residual:.3g} > solve_tol {solve_tol:g}): raise maxiter/"
                     "terms, adjust alpha, or add damping")
    return "hypergradient may be inaccurate: " + "; ".join(parts)


__all__ = ["HypergradientInfo", "UnconvergedWarning", "hypergradient", "unflatten"]

r"""Linear solvers for :math:`A x = b` given only products :math:`v \mapsto A v`.

Every solver has one signature, ``solve(matvec, b, *, init=None) -> x`` on 1-D tensors;
:func:`make_solver` configures one by name (``make_solver("cg", maxiter=50)``). ``A`` is the
(optionally damped) Hessian, symmetric; ``cg`` also needs it positive definite.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]
Solver = Callable[..., torch.Tensor]


def solve_exact(matvec: MatVec, b: torch.Tensor, *, init: torch.Tensor | None = None) -> torch.Tensor:
    """Form the dense matrix from ``n`` products with the unit vectors and solve it (small n).

    :math:`A = [A e_1, \\dots, A e_n]`, then :math:`x = A^{-1} b` by LU (``torch.linalg.solve``).
    """
    n = b.numel()
    eye = torch.eye(n, dtype=b.dtype, device=b.device)
    dense = torch.stack([matvec(eye[i]) for i in range(n)], dim=1)
    dense = 0.5 * (dense + dense.T)  # symmetric by definition; remove round-off asymmetry
    return torch.linalg.solve(dense, b)


def solve_cg(matvec: MatVec, b: torch.Tensor, *, init: torch.Tensor | None = None,
             maxiter: int = 100, tol: float = 1e-10) -> torch.Tensor:
    r"""Conjugate gradient (Hestenes-Stiefel) for symmetric positive definite ``A``.

    Stops when :math:`\|b - A x\| \le \mathrm{tol}\,\|b\|` or after ``maxiter`` products.
    """
    x = torch.zeros_like(b) if init is None else init.clone()
    r = b - matvec(x) if init is not None else b.clone()
    p = r.clone()
    rs = r @ r
    threshold = (tol * torch.linalg.vector_norm(b)) ** 2
    for _ in range(maxiter):
        if rs <= threshold:
            break
        ap = matvec(p)
        curvature = p @ ap
        if curvature <= 0:  # A is not positive definite along p: stop with what we have
            break
        alpha = rs / curvature            # step length along p
        x = x + alpha * p
        r = r - alpha * ap                # r_{k+1} = r_k - alpha A p_k
        rs_next = r @ r
        p = r + (rs_next / rs) * p        # p_{k+1} = r_{k+1} + beta p_k
        rs = rs_next
    return x


def solve_neumann(matvec: MatVec, b: torch.Tensor, *, init: torch.Tensor | None = None,
                  alpha: float = 0.01, terms: int = 20) -> torch.Tensor:
    r"""Truncated Neumann series :math:`A^{-1} \approx \alpha \sum_{k=0}^{K} (I - \alpha A)^k`.

    ``terms`` is :math:`K`: the number of matrix-vector products, so the series has
    :math:`K + 1` terms (:math:`K = 0` returns :math:`\alpha b`). It converges when
    :math:`0 < \alpha < 2 / \lambda_{max}(A)`. ``init`` is ignored (the series starts at b).
    """
    p = b.clone()            # p_k = (I - alpha A)^k b
    total = b.clone()
    for _ in range(terms):
        p = p - alpha * matvec(p)
        total = total + p
    return alpha * total


def solve_fixed_point(matvec: MatVec, b: torch.Tensor, *, init: torch.Tensor | None = None,
                      alpha: float = 0.01, maxiter: int = 500, tol: float = 1e-10) -> torch.Tensor:
    r"""Richardson iteration :math:`x_{k+1} = x_k + \alpha (b - A x_k)` to its fixed point.

    The fixed point is :math:`A^{-1} b`; from :math:`x_0 = 0` the iterates are the Neumann
    partial sums, but this solver stops on the residual
    :math:`\|b - A x\| \le \mathrm{tol}\,\|b\|` (or after ``maxiter`` products).
    """
    x = torch.zeros_like(b) if init is None else init.clone()
    threshold = tol * torch.linalg.vector_norm(b)
    for _ in range(maxiter):
        residual = b - matvec(x)
        if torch.linalg.vector_norm(residual) <= threshold:
            break
        x = x + alpha * residual
    return x


def largest_eigenvalue(matvec: MatVec, like: torch.Tensor, iterations: int = 30,
                       seed: int = 0) -> float:
    r"""Power-iteration estimate of :math:`\lambda_{max}(A)` (for Neumann/fixed-point ``alpha``).

    Args:
        matvec: Products with the symmetric matrix.
        like: A vector of the right size, dtype and device.
        iterations: Matrix-vector products spent.
        seed: Seed of the starting vector.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(like.shape, generator=gen, dtype=like.dtype).to(like.device)
    v = v / torch.linalg.vector_norm(v)
    estimate = 0.0
    for _ in range(iterations):
        w = matvec(v)
        estimate = float(v @ w)                      # Rayleigh quotient
        norm = torch.linalg.vector_norm(w)
        if norm == 0:
            break
        v = w / norm
    return estimate


SOLVERS: dict[str, Solver] = {
    "exact": solve_exact,
    "cg": solve_cg,
    "neumann": solve_neumann,
    "fixed_point": solve_fixed_point,
}
"""Solvers by method name."""


def make_solver(method: str, **options: float) -> Solver:
    """The solver ``method`` with ``options`` bound (``make_solver("cg", maxiter=20)``).

    Raises:
        ValueError: unknown method or option.
    """
    if method not in SOLVERS:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(SOLVERS)}")
    solver = SOLVERS[method]
    import inspect

    allowed = [p for p in inspect.signature(solver).parameters if p not in ("matvec", "b", "init")]
    for key in options:
        if key not in allowed:
            raise ValueError(f"unknown option {key!r} for method {method!r}; accepted: {allowed}")
    return functools.partial(solver, **options)

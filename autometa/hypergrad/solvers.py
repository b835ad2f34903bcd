r"""Linear solvers for :math:`A x = b` given only products :math:`v \mapsto A v`.

Every solver has one signature, ``solve(matvec, b, *, init=None) -> x`` on 1-D tensors;
:func:`make_solver` configures one by name (``make_solver("cg", maxiter=50)``). ``A`` is the
(optionally damped) Hessian, symmetric; ``cg`` also needs it positive definite, ``minres``
does not (a Hessian away from a minimum is indefinite).
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
             maxiter: int = 300, tol: float = 1e-10) -> torch.Tensor:
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


def solve_minres(matvec: MatVec, b: torch.Tensor, *, init: torch.Tensor | None = None,
                 maxiter: int = 300, tol: float = 1e-10) -> torch.Tensor:
    r"""MINRES (Paige and Saunders, 1975) for symmetric ``A``, definite or not.

    Over the Krylov space :math:`x_0 + \mathcal{K}_k(A, r_0)` built by the Lanczos process
    (:math:`A V_k = V_{k+1} \bar T_k`, :math:`\bar T_k` tridiagonal), it picks the point of
    least residual :math:`\|b - A x_k\|`: the very quantity the hypergradient's check measures,
    and it decreases at every product. Givens rotations turn :math:`\bar T_k` into a triangular
    :math:`R_k`; :math:`\bar\phi_k = \|b - A x_k\|` comes out of the same rotations. Stops
    when :math:`\bar\phi_k \le \mathrm{tol}\,\|b\|`, after ``maxiter`` products, or when the
    Krylov space is exhausted.
    """
    x = torch.zeros_like(b) if init is None else init.clone()
    r = b - matvec(x) if init is not None else b.clone()
    beta = float(torch.linalg.vector_norm(r))
    threshold = tol * float(torch.linalg.vector_norm(b))
    if beta <= threshold or beta == 0.0:
        return x
    v_prev, v = torch.zeros_like(b), r / beta          # Lanczos vectors v_{k-1}, v_k
    w_prev2, w_prev = torch.zeros_like(b), torch.zeros_like(b)  # directions w_{k-2}, w_{k-1}
    phibar = beta                                      # ||residual||
    cs, sn = -1.0, 0.0                                 # previous Givens rotation
    dbar, epsilon = 0.0, 0.0
    beta_prev = 0.0
    for _ in range(maxiter):
        # Lanczos: beta_{k+1} v_{k+1} = A v_k - alpha_k v_k - beta_k v_{k-1}
        y = matvec(v) - beta_prev * v_prev if beta_prev else matvec(v)
        alpha = float(v @ y)
        y = y - alpha * v
        beta_next = float(torch.linalg.vector_norm(y))
        # apply the previous rotation to column k of T, then make the rotation that zeroes
        # the subdiagonal beta_{k+1}
        delta = cs * dbar + sn * alpha
        gbar = sn * dbar - cs * alpha
        epsilon_next = sn * beta_next
        dbar = -cs * beta_next
        gamma = max((gbar * gbar + beta_next * beta_next) ** 0.5, torch.finfo(b.dtype).eps)
        cs, sn = gbar / gamma, beta_next / gamma
        phi, phibar = cs * phibar, sn * phibar
        # w_k = (v_k - epsilon_k w_{k-2} - delta_k w_{k-1}) / gamma_k;  x_k = x_{k-1} + phi_k w_k
        w = (v - epsilon * w_prev2 - delta * w_prev) / gamma
        x = x + phi * w
        w_prev2, w_prev, epsilon = w_prev, w, epsilon_next
        if phibar <= threshold or beta_next <= torch.finfo(b.dtype).eps * abs(alpha):
            break
        v_prev, v, beta_prev = v, y / beta_next, beta_next
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


def spectrum_bounds(matvec: MatVec, b: torch.Tensor, iterations: int = 20) -> tuple[float, float]:
    r"""Estimates of the smallest and largest eigenvalue of ``A`` from ``iterations`` Lanczos steps.

    The Lanczos process from :math:`b` builds an orthonormal :math:`V_k` with
    :math:`V_k^\top A V_k = T_k` tridiagonal (diagonal :math:`\alpha`, off-diagonal
    :math:`\beta`); the extreme eigenvalues of :math:`T_k` (Ritz values) approach those of
    ``A`` from inside, the largest quickly, the smallest more slowly: the bounds are estimates
    for advice, not guarantees. Costs ``iterations`` products.
    """
    norm = torch.linalg.vector_norm(b)
    if not norm > 0:
        return 0.0, 0.0
    v_prev, v, beta = torch.zeros_like(b), b / norm, 0.0
    alphas, betas = [], []
    for _ in range(min(iterations, b.numel())):
        y = matvec(v) - beta * v_prev
        alpha = float(v @ y)
        y = y - alpha * v
        alphas.append(alpha)
        beta = float(torch.linalg.vector_norm(y))
        if not beta > 1e-12 * max(abs(alpha), 1e-300):
            break
        betas.append(beta)
        v_prev, v = v, y / beta
    betas = betas[:len(alphas) - 1]
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas, dtype=torch.float64)
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    ritz = torch.linalg.eigvalsh(t)
    return float(ritz[0]), float(ritz[-1])


SOLVERS: dict[str, Solver] = {
    "exact": solve_exact,
    "cg": solve_cg,
    "minres": solve_minres,
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

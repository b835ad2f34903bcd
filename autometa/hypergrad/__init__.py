r"""Hypergradients of a validation loss with respect to hyperparameters (PyTorch only).

This package never imports Ray.

Notation
--------
* :math:`\theta` – hyperparameters (a dict of tensors), :math:`w` – model weights (a dict of
  tensors); flattened, :math:`w \in \mathbb{R}^n`, :math:`\theta \in \mathbb{R}^m`.
* :math:`L_{train}(w, \theta)`, :math:`L_{val}(w, \theta)` – the two losses.
* :math:`w^*(\theta) = \arg\min_w L_{train}(w, \theta)`; at it :math:`\nabla_w L_{train} = 0`.
* :math:`H = \nabla^2_w L_{train}(w^*, \theta)` (n x n, never formed except by ``"exact"``).
* :math:`g = \nabla_w L_{val}(w^*, \theta)`.

Implicit function theorem: :math:`dw^*/d\theta = -H^{-1} \nabla^2_{w\theta} L_{train}`, so

.. math::
    \frac{d L_{val}}{d\theta} = \nabla_\theta L_{val} - \nabla^2_{\theta w} L_{train}\, v,
    \qquad H v = g.

The linear system is solved by one of the solvers in :mod:`autometa.hypergrad.solvers`, each
of signature ``solve(matvec, b, *, init=None) -> x`` over Hessian-vector products.

Public API: for your own ``nn.Module`` and loss closures, :class:`Hyperparameters` (from a
trial's config and the search space), :class:`ImplicitEngine` (:mod:`autometa.hypergrad.model`)
and :class:`UnrolledEngine` (the optimizer's learning rate and momentum,
:mod:`autometa.hypergrad.forward`);
the functional :func:`hypergradient` (implicit) and :func:`unrolled` (differentiating through
the optimizer's steps); :func:`implicit_hypergradient`, the building block of both; the
solvers; and the hyperparameter families in :mod:`autometa.hypergrad.families`.
"""

from autometa.hypergrad.forward import UnrolledEngine, combine
from autometa.hypergrad.implicit import (
    HypergradientInfo,
    ImplicitResult,
    UnconvergedWarning,
    hypergradient,
    implicit_hypergradient,
)
from autometa.hypergrad.model import Hypergradients, Hyperparameters, ImplicitEngine
from autometa.hypergrad.solvers import (
    SOLVERS,
    largest_eigenvalue,
    make_solver,
    solve_cg,
    solve_exact,
    solve_fixed_point,
    solve_minres,
    solve_neumann,
    spectrum_bounds,
)
from autometa.hypergrad.unrolled import unrolled

__all__ = ["SOLVERS", "HypergradientInfo", "Hypergradients", "Hyperparameters", "ImplicitEngine",
           "ImplicitResult", "UnconvergedWarning",
           "hypergradient", "implicit_hypergradient", "largest_eigenvalue", "make_solver",
           "solve_cg", "solve_exact", "solve_fixed_point", "solve_minres", "solve_neumann",
           "spectrum_bounds", "unrolled", "UnrolledEngine", "combine"]

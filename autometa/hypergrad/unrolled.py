r"""Unrolled differentiation: backpropagate through the inner optimizer's steps.

Run :math:`K` steps :math:`w_{k+1} = \Phi(w_k, \theta)` of a differentiable optimizer from
:math:`w_0`, then differentiate :math:`L_{val}(w_K, \theta)` with respect to
:math:`\theta` through every step (or only the last ``truncate`` ones: earlier steps are run
without a graph, as in truncated backpropagation). Unlike implicit differentiation, this
reaches hyperparameters of the optimizer itself (learning rate, momentum, Adam's betas).

Optimizers (``g_k = \nabla_w L_{train}(w_k, \theta)``):

* ``sgd``:      :math:`w_{k+1} = w_k - \eta g_k`
* ``momentum``: :math:`b_{k+1} = \mu b_k + g_k,\; w_{k+1} = w_k - \eta b_{k+1}` (PyTorch's SGD)
* ``adam``:     :math:`m = \beta_1 m + (1-\beta_1) g,\; s = \beta_2 s + (1-\beta_2) g^2,\;
  w \leftarrow w - \eta\, \hat m / (\sqrt{\hat s + \epsilon_{root}} + \epsilon)` with bias
  correction; :math:`\epsilon_{root}` keeps the derivative of the square root finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from autometa.hypergrad._flat import Tensors, leaves
from autometa.hypergrad.implicit import HypergradientInfo

Loss = Callable[[Tensors, Tensors], torch.Tensor]
Scalar = float | str
OPTIMIZERS = ("sgd", "momentum", "adam")


def unrolled(train_loss: Loss, val_loss: Loss, params: Tensors, hparams: Tensors, *,
             steps: int, optimizer: str = "sgd", lr: Scalar = 0.1, momentum: Scalar = 0.9,
             beta1: Scalar = 0.9, beta2: Scalar = 0.999, eps: float = 1e-8,
             eps_root: float = 1e-16, truncate: int | None = None, return_info: bool = False
             ) -> tuple[Tensors, Tensors] | tuple[Tensors, Tensors, HypergradientInfo]:
    """Hypergradient of ``val_loss`` after ``steps`` optimizer steps on ``train_loss``.

    Args:
        train_loss, val_loss: ``loss(params, hparams) -> scalar``.
        params: Initial weights :math:`w_0` (not modified).
        hparams: Hyperparameters :math:`\\theta` (not modified).
        steps: Number of inner steps :math:`K`.
        optimizer: ``"sgd"``, ``"momentum"`` or ``"adam"``.
        lr, momentum, beta1, beta2: Optimizer settings: a number, or the name of a key of
            ``hparams`` to differentiate with respect to it (e.g. ``lr="lr"``).
        eps, eps_root: Adam's constants.
        truncate: Differentiate through only the last ``truncate`` steps (None: all).
        return_info: Also return a :class:`~autometa.hypergrad.implicit.HypergradientInfo`:
            the result is the exact derivative of the unrolled computation, so it is
            ``converged`` unless a loss, a weight or the result is NaN or infinite (a diverged
            unroll; ``message`` says which). A truncated unroll is a biased estimate of the
            full one; ``message`` says so.

    Returns:
        ``(hypergradient, final_params)``: a dict keyed like ``hparams``, and :math:`w_K`
        (detached); with ``return_info``, the info as a third element.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {list(OPTIMIZERS)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if truncate is not None and not 1 <= truncate <= steps:
        raise ValueError(f"truncate must be in [1, steps], got {truncate}")
    theta = leaves(hparams)
    settings = {name: _setting(value, theta, name) for name, value in
                (("lr", lr), ("momentum", momentum), ("beta1", beta1), ("beta2", beta2))}
    w = {k: v.detach().clone() for k, v in params.items()}
    state: dict[str, Tensors] = {}
    first_tracked = 0 if truncate is None else steps - truncate
    for k in range(steps):
        tracked = k >= first_tracked
        if k == first_tracked:  # start the graph here
            w = {n: t.detach().requires_grad_() for n, t in w.items()}
            state = {s: {n: t.detach() for n, t in d.items()} for s, d in state.items()}
        w, state = _step(train_loss, w, theta, state, k + 1, optimizer, settings, eps, eps_root,
                         tracked)
    loss = val_loss(w, theta)
    inputs = list(theta.values())
    grads = torch.autograd.grad(loss, inputs, allow_unused=True) if loss.requires_grad else \
        [None] * len(inputs)
    result = {name: torch.zeros_like(t) if g is None else g.detach()
              for (name, t), g in zip(theta.items(), grads, strict=True)}
    final = {n: t.detach() for n, t in w.items()}
    if not return_info:
        return result, final
    return result, final, _info(float(loss.detach()), final, result, steps, truncate)


def _info(val: float, final: Tensors, result: Tensors, steps: int,
          truncate: int | None) -> HypergradientInfo:
    bad = [name for name, ok in (
        ("the validation loss", math.isfinite(val)),
        ("the final weights", all(bool(torch.isfinite(t).all()) for t in final.values())),
        ("the hypergradient", all(bool(torch.isfinite(t).all()) for t in result.values())))
        if not ok]
    norm = math.sqrt(sum(float((t.double() ** 2).sum()) for t in result.values()))
    message = ""
    if bad:
        message = ("unrolled hypergradient is not finite: " + ", ".join(bad) + " is NaN or "
                   "infinite (the unrolled steps diverged: lower the learning rate or the steps)")
    elif truncate is not None and truncate < steps:
        message = (f"truncated to the last {truncate} of {steps} steps: a biased estimate of the "
                   "full unroll's hypergradient")
    return HypergradientInfo(not bad, 0.0 if not bad else math.nan, method="unrolled",
                             hypergrad_norm=norm if not bad else math.nan, finite=not bad,
                             message=message)


def _setting(value: Scalar, theta: Tensors, name: str) -> torch.Tensor | float:
    if isinstance(value, str):
        if value not in theta:
            raise ValueError(f"{name}={value!r} names no key of hparams ({sorted(theta)})")
        return theta[value]
    return value


def _step(train_loss: Loss, w: Tensors, theta: Tensors, state: dict[str, Tensors], t: int,
          optimizer: str, s: dict, eps: float, eps_root: float,
          tracked: bool) -> tuple[Tensors, dict[str, Tensors]]:
    if not tracked:
        w = {n: p.detach().requires_grad_() for n, p in w.items()}
    names = list(w)
    loss = train_loss(w, theta)
    grads = torch.autograd.grad(loss, [w[n] for n in names], create_graph=tracked,
                                allow_unused=True)
    grads = [torch.zeros_like(w[n]) if g is None else g for n, g in zip(names, grads, strict=True)]
    new_w, new_state = {}, {key: {} for key in ("buf", "m", "s")}
    for n, g in zip(names, grads, strict=True):
        if not tracked:
            g = g.detach()
        if optimizer == "sgd":
            update = g
        elif optimizer == "momentum":
            buf = g if "buf" not in state else s["momentum"] * state["buf"][n] + g
            new_state["buf"][n] = buf
            update = buf
        else:
            m = (1 - s["beta1"]) * g + (s["beta1"] * state["m"][n] if "m" in state else 0.0)
            v = (1 - s["beta2"]) * g * g + (s["beta2"] * state["s"][n] if "s" in state else 0.0)
            new_state["m"][n], new_state["s"][n] = m, v
            m_hat = m / (1 - s["beta1"] ** t)
            v_hat = v / (1 - s["beta2"] ** t)
            update = m_hat / (torch.sqrt(v_hat + eps_root) + eps)
        new_w[n] = w[n] - s["lr"] * update
        if not tracked:
            new_w[n] = new_w[n].detach()
    new_state = {key: d for key, d in new_state.items() if d}
    if not tracked:
        new_state = {key: {n: t.detach() for n, t in d.items()} for key, d in new_state.items()}
    return new_w, new_state

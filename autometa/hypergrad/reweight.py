r"""Learning to Reweight Examples (Ren et al. 2018): per-sample weights from one look-ahead step.

For a training batch with per-sample losses :math:`\ell_i(\theta)` and a small clean validation
batch with loss :math:`L_v`, take one virtual SGD step with perturbation weights
:math:`\epsilon`: :math:`\theta'(\epsilon) = \theta - \eta \nabla_\theta \sum_i \epsilon_i
\ell_i(\theta)`. The hypergradient at :math:`\epsilon = 0` is

.. math:: \frac{\partial L_v(\theta'(\epsilon))}{\partial \epsilon_i}\Big|_{\epsilon=0}
          = -\eta\, \nabla L_v(\theta)^\top \nabla \ell_i(\theta),

and the weights are :math:`w_i = \max(-\partial L_v/\partial \epsilon_i, 0)`, normalized to sum
to one (all zero when every sample disagrees with the validation gradient). A sample whose
gradient points against the clean validation gradient (e.g. a wrong label) gets weight 0.
The training step then minimizes :math:`\sum_i w_i \ell_i`. This is the greedy, one-step
hypergradient of the sample-weight family (:mod:`autometa.hypergrad.families.sample_weights`),
computed online in the training loop. Works with any ``nn.Module`` (parameters and buffers
passed functionally) on CPU or CUDA; no Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

PerSampleLoss = Callable[[torch.Tensor, Any], torch.Tensor]  # (outputs, targets) -> (N,)


def reweighting_weights(model: nn.Module, loss_fn: PerSampleLoss,
                        train_batch: tuple[torch.Tensor, Any],
                        val_batch: tuple[torch.Tensor, Any], lr: float) -> torch.Tensor:
    """Weights :math:`w` (N,) for ``train_batch`` (see the module docstring).

    Args:
        model: The network (its BatchNorm statistics are not changed).
        loss_fn: Per-sample loss, ``loss_fn(outputs, targets)`` of shape (N,)
            (e.g. ``cross_entropy(..., reduction="none")``).
        train_batch: ``(inputs, targets)`` to weight.
        val_batch: ``(inputs, targets)`` of clean validation data.
        lr: Learning rate of the look-ahead step (scales the weights before normalizing).
    """
    return _weights(model, dict(model.named_parameters()), dict(model.named_buffers()), loss_fn,
                    train_batch, val_batch, lr)


def _weights(model: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
             loss_fn: PerSampleLoss, train_batch: tuple[torch.Tensor, Any],
             val_batch: tuple[torch.Tensor, Any], lr: float) -> torch.Tensor:
    params = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    buffers = {n: b.detach().clone() for n, b in buffers.items()}
    x, y = train_batch
    eps = torch.zeros(len(x), dtype=params[next(iter(params))].dtype, device=x.device,
                      requires_grad=True)
    losses = loss_fn(functional_call(model, {**params, **buffers}, (x,)), y)
    grads = torch.autograd.grad((eps * losses).sum(), list(params.values()), create_graph=True)
    ahead = {n: p - lr * g for (n, p), g in zip(params.items(), grads, strict=True)}
    xv, yv = val_batch
    val = loss_fn(functional_call(model, {**ahead, **buffers}, (xv,)), yv).mean()
    (d_eps,) = torch.autograd.grad(val, eps)
    weights = torch.clamp(-d_eps, min=0)
    total = weights.sum()
    return (weights / total if total > 0 else weights).detach()


def reweighted_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: PerSampleLoss,
                    train_batch: tuple[torch.Tensor, Any], val_batch: tuple[torch.Tensor, Any],
                    lr: float | None = None) -> tuple[float, torch.Tensor]:
    """One optimizer step on :math:`\\sum_i w_i \\ell_i`; returns that loss and the weights.

    ``lr`` defaults to the optimizer's first learning rate.
    """
    lr = float(optimizer.param_groups[0]["lr"]) if lr is None else lr
    weights = reweighting_weights(model, loss_fn, train_batch, val_batch, lr)
    x, y = train_batch
    optimizer.zero_grad()
    loss = (weights * loss_fn(model(x), y)).sum()
    loss.backward()
    optimizer.step()
    return float(loss.detach()), weights


class ReweightedTrainLoss:
    r"""Learning to Reweight inside :class:`autometa.hypergrad.loop.HyperTrainer`.

    A ``train_loss(view, batch, values)`` for the in-trial loop: each training batch's samples
    are weighted by :func:`reweighting_weights` against ``val_batch`` (a small clean set) at the
    current weights, then :math:`\sum_i w_i \ell_i` is the loss. The weights are constants of
    the loss (detached), also where the hyperstep differentiates it, so the hypergradient is
    that of the weighted loss at the current weights. ``last_weights`` holds the latest ones
    (e.g. to report the share of samples weighted 0).

    Args:
        per_sample: ``per_sample(outputs, targets, values) -> (N,)``; ``values`` are the
            hyperparameter values by name (for losses that use them, e.g. label smoothing).
        val_batch: ``(inputs, targets)`` of clean validation data.
        lr: Learning rate of the look-ahead step (the inner optimizer's, usually).
    """

    def __init__(self, per_sample: Callable[[torch.Tensor, Any, dict], torch.Tensor],
                 val_batch: tuple[torch.Tensor, Any], lr: float) -> None:
        self.per_sample, self.val_batch, self.lr = per_sample, val_batch, lr
        self.last_weights: torch.Tensor | None = None

    def __call__(self, view: Any, batch: tuple[torch.Tensor, Any], values: dict) -> torch.Tensor:
        fixed = {k: v.detach() for k, v in values.items()}
        buffers = view.buffers if view.buffers is not None else dict(view.model.named_buffers())
        with torch.enable_grad():
            weights = _weights(view.model, view.params, buffers,
                               lambda out, target: self.per_sample(out, target, fixed),
                               batch, self.val_batch, self.lr)
        self.last_weights = weights
        x, y = batch
        return (weights * self.per_sample(view(x), y, values)).sum()

r"""The one-step look-ahead hypergradient of an augmentation policy, for any model.

One training step on augmented images moves the weights to
:math:`w' = w - \eta \nabla_w L_{train}(w; \phi)`, where the policy's parameters :math:`\phi`
(:class:`~autometa.augment.choice.ChoicePolicy`: operation logits :math:`\theta`, magnitude
ceilings :math:`\rho`) decide how the images were augmented. To first order in :math:`\eta`

.. math:: L_{val}(w') \approx L_{val}(w) - \eta\, J(\phi), \qquad
          J(\phi) = \mathbb{E}_{k \sim \pi_\theta,\, u}\,\tfrac1N \textstyle\sum_i
          D_i, \quad D_i = \nabla_w \ell(a_k(x_i; u_i c_k))^\top v, \quad v = \nabla_w L_{val}(w),

so the hypergradient is :math:`\partial L_{val}(w') / \partial \phi = -\eta\, \nabla_\phi J`
(DARTS' and DADA's look-ahead; Ren et al.'s reweighting is the same derivative for sample
weights). :math:`D_i` is a directional derivative, taken by central differences (DARTS eq. 8):
:math:`D_i \approx [\ell_i(w + \epsilon v) - \ell_i(w - \epsilon v)] / 2\epsilon` with
:math:`\epsilon = \epsilon_0 / \|v\|`: four forward passes and one backward to the images, no
Hessian and no double backward, for any ``nn.Module``.

Two estimators, one per kind of parameter:

* ceilings (reparameterized magnitude :math:`m_i = u_i c_{k_i}`): pathwise,
  :math:`\partial D_i / \partial \rho_k = [k_i = k]\, \partial D_i/\partial m_i\, u_i\,
  c_k (1 - c_k)`, the operations being differentiable in their magnitude;
* operation logits (a discrete draw): score function with a control variate,
  :math:`\nabla_\theta J \approx \tfrac1N \sum_i A_i (e_{k_i} - \pi)`,
  :math:`A_i = (D_i - D_i^{clean}) - \overline{(D - D^{clean})}_{-i}`: the same image without
  augmentation (:math:`D_i^{clean}`, the identity's value, independent of the draw) and the
  mean of the other images (leave-one-out) as the baseline; both keep the estimate unbiased.

Each image gives one sample of the gradient, so the estimate carries its standard error (per
parameter: the samples' standard deviation over :math:`\sqrt{N \cdot draws}`) and its
signal-to-noise ratio. The network is evaluated in eval mode (dropout off, BatchNorm on its
running statistics, which are not changed), so both sides of the difference see the same
function. Pure torch; no Ray.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from autometa.augment.choice import ChoicePolicy, apply_choice, choice_magnitudes

PerSampleLoss = Callable[[torch.Tensor, Any], torch.Tensor]  # (outputs, targets) -> (N,)


@dataclass(frozen=True)
class PolicyHypergradient:
    """d (validation loss after one training step) / d policy parameter, with its noise.

    Attributes:
        logits: (K + 1,) for the operation logits (identity first).
        raw_ceiling: (K,) for the ceilings' logits.
        logits_se, raw_ceiling_se: Standard errors of the two estimates (same shapes).
        val_loss: At the current weights.
        alignment: :math:`J`: the mean first-order decrease of the validation loss per unit
            step on the augmented images (:math:`D`); ``clean_alignment`` the same without
            augmentation. Augmentation helps the next step when ``alignment`` is larger.
        finite: False when a loss or the validation gradient was NaN, infinite or zero (the
            estimate is then zero and must not be used).
    """

    logits: torch.Tensor
    raw_ceiling: torch.Tensor
    logits_se: torch.Tensor
    raw_ceiling_se: torch.Tensor
    val_loss: float
    alignment: float
    clean_alignment: float
    finite: bool = True

    def snr(self) -> float:
        """Root mean square of the estimate over that of its standard errors (> 1: the
        direction is resolved above the noise)."""
        g = torch.cat([self.logits, self.raw_ceiling])
        se = torch.cat([self.logits_se, self.raw_ceiling_se])
        noise = float(se.pow(2).mean().sqrt())
        return float(g.pow(2).mean().sqrt()) / noise if noise > 0 else math.inf


def central_difference(plus: torch.Tensor, minus: torch.Tensor, step: float) -> torch.Tensor:
    """:math:`(f(w + \\epsilon v) - f(w - \\epsilon v)) / 2\\epsilon`."""
    return (plus - minus) / (2 * step)


def score_advantages(aligned: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """:math:`A_i = (D_i - D^{clean}_i) - \\frac{1}{N-1} \\sum_{j \\ne i} (D_j - D^{clean}_j)`
    (N = 1: no leave-one-out term)."""
    gain = aligned - clean
    n = len(gain)
    if n < 2:
        return gain
    return gain - (gain.sum() - gain) / (n - 1)


def policy_hypergradient(model: nn.Module, loss_fn: PerSampleLoss, policy: ChoicePolicy,
                         train_batch: tuple[torch.Tensor, Any], val_batch: tuple[torch.Tensor, Any],
                         lr: float, draws: int = 1, epsilon: float = 0.01,
                         control_variate: bool = True) -> PolicyHypergradient:
    """The look-ahead hypergradient of ``policy`` (see the module doc).

    Args:
        model: The network being trained (not changed: its mode is restored, buffers copied).
        loss_fn: Per-image loss ``loss_fn(outputs, targets)`` of shape (N,), e.g.
            ``functional.cross_entropy(..., reduction="none")``.
        policy: The policy whose parameters get the hypergradient.
        train_batch: ``(images, targets)`` before augmentation, images (N, C, H, W) in [0, 1].
        val_batch: ``(inputs, targets)`` of held-out data.
        lr: The training step's learning rate :math:`\\eta` (scales the hypergradient).
        draws: Augmentation draws per image (more: lower variance, one more pair of forward
            passes and a backward each).
        epsilon: Central-difference step :math:`\\epsilon_0` (relative to :math:`\\|v\\|`).
        control_variate: Subtract the baselines from the score-function samples (False: plain
            REINFORCE, :math:`A_i = D_i`; unbiased too, noisier: for ablations).
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    was_training = model.training
    model.eval()
    try:
        return _estimate(model, loss_fn, policy, train_batch, val_batch, lr, draws, epsilon,
                         control_variate)
    finally:
        model.train(was_training)


def _estimate(model: nn.Module, loss_fn: PerSampleLoss, policy: ChoicePolicy,
              train_batch: tuple[torch.Tensor, Any], val_batch: tuple[torch.Tensor, Any],
              lr: float, draws: int, epsilon: float, control_variate: bool
              ) -> PolicyHypergradient:
    params = {n: p.detach().requires_grad_(True) for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    xv, yv = val_batch
    val = loss_fn(functional_call(model, {**params, **buffers}, (xv,)), yv).mean()
    v = torch.autograd.grad(val, list(params.values()), allow_unused=True)
    v = [torch.zeros_like(p) if g is None else g for p, g in zip(params.values(), v, strict=True)]
    norm = float(torch.sqrt(sum(g.pow(2).sum() for g in v)))
    k = len(policy.operations)
    zero = _zero(policy)
    val = val.detach()
    if not math.isfinite(norm) or norm == 0 or not math.isfinite(float(val)):
        return PolicyHypergradient(*zero, float(val), 0.0, 0.0, finite=False)
    step = epsilon / norm
    plus = {n: (p + step * g).detach() for (n, p), g in zip(params.items(), v, strict=True)}
    minus = {n: (p - step * g).detach() for (n, p), g in zip(params.items(), v, strict=True)}

    def directional(images: torch.Tensor, targets: Any) -> torch.Tensor:
        return central_difference(loss_fn(functional_call(model, {**plus, **buffers}, (images,)),
                                          targets),
                                  loss_fn(functional_call(model, {**minus, **buffers}, (images,)),
                                          targets), step)

    x, y = train_batch
    with torch.no_grad():
        clean = directional(x, y).double()
    probabilities = policy.probabilities().detach().double()
    ceilings = policy.ceilings().detach().double()
    samples, aligned_total = [], 0.0
    for _ in range(draws):
        draw = policy.sample(len(x), x.device)
        magnitudes = choice_magnitudes(draw, ceilings, x.dtype).detach().requires_grad_(True)
        aligned = directional(apply_choice(x, policy.operations, None, draw, magnitudes), y)
        (d_magnitude,) = torch.autograd.grad(aligned.sum(), magnitudes)
        aligned = aligned.detach().double()
        aligned_total += float(aligned.mean())
        # score function, per image: A_i (e_{k_i} - pi)
        onehot = torch.nn.functional.one_hot(draw.op.cpu(), k + 1).double()
        advantage = score_advantages(aligned.cpu(), clean.cpu()) if control_variate \
            else aligned.cpu()
        logit_samples = advantage[:, None] * (onehot - probabilities.cpu())
        # pathwise, per image: [k_i = k] dD_i/dm_i u_i c_k (1 - c_k)
        chain = (d_magnitude.double() * draw.uniform.double()).cpu()
        c = ceilings.cpu()
        ceiling_samples = onehot[:, 1:] * (chain[:, None] * c * (1 - c))
        samples.append(torch.cat([logit_samples, ceiling_samples], dim=1))
    per_image = torch.cat(samples)  # (N * draws, 2K + 1): samples of grad J
    if not bool(torch.isfinite(per_image).all()):
        return PolicyHypergradient(*zero, float(val), 0.0, float(clean.mean()), finite=False)
    mean = per_image.mean(0)
    se = per_image.std(0, unbiased=True) / math.sqrt(len(per_image)) if len(per_image) > 1 \
        else torch.zeros_like(mean)
    # dL_val(w')/dphi = -eta grad J
    g, se = (-lr * mean).float(), (lr * se).float()
    return PolicyHypergradient(g[:k + 1], g[k + 1:], se[:k + 1], se[k + 1:], float(val),
                               aligned_total / draws, float(clean.mean()))


def _zero(policy: ChoicePolicy) -> tuple[torch.Tensor, ...]:
    k = len(policy.operations)
    return (torch.zeros(k + 1), torch.zeros(k), torch.zeros(k + 1), torch.zeros(k))

r"""The online mode: hyperparameters learned during one training run, from hypergradients.

Every ``T`` optimizer steps a trial takes hypergradients (:class:`ImplicitEngine` for the
terms of its loss: weight decays, label smoothing, class weights; :class:`UnrolledEngine` for
the optimizer's learning rate and momentum; :func:`combine` joins them for a report) and
:meth:`OnlineUpdater.step` moves the hyperparameters against them, in the unconstrained
coordinates of each (log, logit), with Adam:

.. math::

    g_u = \frac{\partial L_{val}}{\partial x}\,\frac{dx}{du}, \qquad
    u \leftarrow u - \eta\,\rho\,\frac{\hat m}{\sqrt{\hat v} + \epsilon}

then each value is clipped to its bounds. :math:`\rho` is the trust in the hypergradient
(:func:`autometa.trial.keys.gradient_trust`, the searcher's rule): 1 when its checks passed,
:math:`\max(0.1, 1 - \min(r, 0.9))` for a relative residual :math:`r` otherwise; a non-finite
hypergradient moves nothing (and is counted in :attr:`OnlineUpdater.skipped`).

Use (your own model and loop)::

    loss_hp = Hyperparameters.from_config(config, space, ["decay", "smoothing"])
    opt_hp = Hyperparameters.from_config(config, space, ["lr", "momentum"])
    implicit = ImplicitEngine(model, loss_hp, maxiter=20)
    unrolled = UnrolledEngine(model, optimizer, opt_hp)
    updater = OnlineUpdater(loss_hp, opt_hp, lr=0.05)
    for step, (x, y) in enumerate(batches, 1):
        unrolled.step(train_loss(loss_hp, x, y))          # instead of backward(); step()
        if step % T == 0:
            updater.step(implicit.hypergradients(full_train_loss, val_loss),
                         unrolled.hypergradients(val_loss))

Or everything through the steps (no optimum assumed; the loss as a function of ``hp``)::

    hp = Hyperparameters.from_config(config, space)   # decay, smoothing, lr, momentum
    unrolled = UnrolledEngine(model, optimizer, hp, loss_hparams=["decay", "smoothing"])
    updater = OnlineUpdater(hp, lr=0.05)
    for step, (x, y) in enumerate(batches, 1):
        unrolled.step(lambda h: train_loss(h, x, y))
        if step % T == 0:
            result = unrolled.hypergradients(val_loss)
            updater.step(result)   # report result.at(updater.values())

Never imports Ray.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from autometa.hypergrad.model import Hypergradients, Hyperparameters
from autometa.trial.keys import gradient_trust


def adam_direction(g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: int,
                   beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Adam's step direction and its new moments, for the ``t``-th step (from 1).

    :math:`m_t = \beta_1 m + (1-\beta_1) g`, :math:`v_t = \beta_2 v + (1-\beta_2) g^2`,
    :math:`d = \hat m / (\sqrt{\hat v} + \epsilon)` with :math:`\hat m = m_t/(1-\beta_1^t)`,
    :math:`\hat v = v_t/(1-\beta_2^t)`.
    """
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    d = (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + eps)
    return d, m, v


@dataclass
class OnlineStep:
    r"""What one :meth:`OnlineUpdater.step` did.

    Attributes:
        trust: The smallest :math:`\rho` a part of the step was scaled by (0: nothing moved).
        before, after: The values before and after, by name (floats for scalars).
        message: Why it was shortened or skipped (empty when the checks passed).
    """

    trust: float
    before: dict[str, Any]
    after: dict[str, Any]
    message: str = ""
    moved: bool = True


class OnlineUpdater:
    r"""Adam on the unconstrained tensors of one or more :class:`Hyperparameters`, fed with
    :class:`Hypergradients` (see the module docstring).

    Args:
        *hparams: The hyperparameters it moves (e.g. those of the loss and the optimizer's).
        lr: Adam's step size :math:`\eta`, in unconstrained units (0.05: a log-scale value
            moves by about 5 % a step at most).
        betas, eps: Adam's.
    """

    def __init__(self, *hparams: Hyperparameters, lr: float = 0.05,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if not hparams:
            raise ValueError("give the Hyperparameters to update")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a number > 0, got {lr!r}")
        self.owners: dict[str, Hyperparameters] = {}
        for hp in hparams:
            for name in hp.names:
                if name in self.owners:
                    raise ValueError(f"{name!r} is in two of the Hyperparameters given")
                self.owners[name] = hp
        self.lr, self.betas, self.eps = float(lr), betas, eps
        self.moments: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}  # m, v, updates
        self.steps = 0
        self.skipped = 0

    def values(self) -> dict[str, torch.Tensor]:
        """Every hyperparameter's current value, by name."""
        return {n: v for hp in dict.fromkeys(self.owners.values()) for n, v in hp.values().items()}

    def step(self, *results: Hypergradients) -> OnlineStep:
        """Move every hyperparameter the ``results`` have a hypergradient for (others stay),
        each scaled by the trust in its own result (an implicit solve that missed its
        tolerance shortens the decays' step, not the learning rate's from an unroll).

        Nothing moves when a result is not finite (the step is counted as skipped).
        """
        before = _floats(self.values())
        unknown = sorted({n for r in results for n in r.grads} - set(self.owners))
        if unknown:
            raise ValueError(f"hypergradients for {unknown}, which this updater does not hold "
                             f"(it holds {sorted(self.owners)})")
        bad = [r for r in results if not r.info.finite or not all(
            bool(torch.isfinite(torch.as_tensor(g)).all()) for g in r.grads.values())]
        if bad or not any(r.grads for r in results):
            self.skipped += 1
            why = "; ".join(r.info.message for r in bad if r.info.message) or (
                "a hypergradient is not finite" if bad else "no hypergradient")
            return OnlineStep(0.0, before, before, f"not moved: {why}", moved=False)
        self.steps += 1
        trusts, messages = [], []
        for result in results:
            trust = gradient_trust(1.0 if result.info.converged else 0.0,
                                   result.info.relative_residual)
            trusts.append(trust)
            if trust < 1.0:
                messages.append(f"{', '.join(result.grads)}: step shortened to {trust:.2f} of "
                                f"its length ({result.info.message})")
            self._move(result.grads, trust)
        return OnlineStep(min(trusts), before, _floats(self.values()), "; ".join(messages))

    def _move(self, grads: Mapping[str, torch.Tensor], trust: float) -> None:
        b1, b2 = self.betas
        for name, g in grads.items():
            hp = self.owners[name]
            g_u = hp.raw_grads({name: g})[name]
            m, v, t = self.moments.get(name, (torch.zeros_like(g_u), torch.zeros_like(g_u), 0))
            d, m, v = adam_direction(g_u, m, v, t + 1, b1, b2, self.eps)
            self.moments[name] = (m, v, t + 1)
            hp.shift(name, -self.lr * trust * d)

    def state_dict(self) -> dict[str, Any]:
        """Adam's moments and counters, and every hyperparameter's tensor (to resume exactly)."""
        return {"moments": {n: (m.clone(), v.clone(), t) for n, (m, v, t) in self.moments.items()},
                "steps": self.steps, "skipped": self.skipped,
                "hparams": {n: hp.state_dict()[n] for n, hp in self.owners.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.moments = {n: (m.clone(), v.clone(), int(t))
                        for n, (m, v, t) in state["moments"].items()}
        self.steps, self.skipped = int(state["steps"]), int(state["skipped"])
        for name, raw in state["hparams"].items():
            if name in self.owners:
                self.owners[name].load_state_dict({name: raw})


def _floats(values: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    return {n: float(v) if v.numel() == 1 else v.detach().clone() for n, v in values.items()}


__all__ = ["OnlineStep", "OnlineUpdater", "adam_direction"]

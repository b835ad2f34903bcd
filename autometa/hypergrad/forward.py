r"""The learning rate and momentum of your own optimizer, differentiable through its last steps.

Implicit differentiation cannot see the optimizer's settings (the optimum does not depend on
them). Differentiating the validation loss through the steps the optimizer actually took does:
:class:`UnrolledEngine` carries, along your training loop, the tangent
:math:`z = \partial w / \partial s` of the weights with respect to each optimizer setting
:math:`s` (forward mode, as in Franceschi et al.'s forward hypergradient), one Hessian-vector
product per setting and step, and gives :math:`dL_{val}/ds = \nabla_w L_{val} \cdot z`.
By default the unroll covers the steps since the last :meth:`UnrolledEngine.hypergradients`
call (a truncated unroll: the tangent restarts at zero after each call). Truncation biases the
hypergradient toward zero (the short-horizon bias: on an SGD-trained CNN the last 80 of 320
steps gave a thirteenth of the whole run's, benchmarks/README.md); ``carry`` keeps a share
:math:`c` of the tangents across calls instead: :math:`c = 1` differentiates through every
step since the start (Franceschi et al.'s real-time forward hypergradient, which treats a
setting that moved as if its shift applied to all steps), :math:`0 < c < 1` forgets
geometrically (the derivative with respect to a shift of the setting weighted by :math:`c^a`
on the steps :math:`a` calls ago).

Tangent recursions (:math:`g_k = \nabla_w L_{train}(w_k)`, :math:`\dot g_k = H_k z_k`, the
optimizer's own ``weight_decay`` :math:`\omega` adds :math:`\omega w` to :math:`g`):

* SGD with momentum :math:`\mu` (PyTorch's, no dampening): :math:`b_{k+1} = \mu b_k + g_k`,
  :math:`w_{k+1} = w_k - \eta b_{k+1}`, so
  :math:`\dot b_{k+1} = \mu \dot b_k + [s = \mu]\, b_k + \dot g_k` and
  :math:`z_{k+1} = z_k - \eta \dot b_{k+1} - [s = \eta]\, b_{k+1}`.
* Adam: :math:`m, v` the moment estimates, :math:`\hat m = m / (1 - \beta_1^t)`,
  :math:`\hat v = v / (1 - \beta_2^t)`, :math:`d = \hat m / (\sqrt{\hat v} + \epsilon)`,
  :math:`w_{k+1} = w_k - \eta d`: :math:`\dot m = \beta_1 \dot m + (1 - \beta_1) \dot g`,
  :math:`\dot v = \beta_2 \dot v + 2 (1 - \beta_2)\, g \odot \dot g`,
  :math:`\dot d = \dot{\hat m} / (\sqrt{\hat v} + \epsilon) - \hat m \odot \dot{\hat v}
  / (2 \sqrt{\hat v} (\sqrt{\hat v} + \epsilon)^2)` and
  :math:`z_{k+1} = z_k - \eta \dot d - [s = \eta]\, d` (the learning rate only).

Hyperparameters the training loss reads (``loss_hparams``: weight decay, label smoothing, the
strength of augmentation, ...) are differentiated through the same steps: their tangent's
gradient term gains the mixed derivative, :math:`\dot g_k = H_k z_k + \partial g_k / \partial
s`, computed as one backward pass, :math:`\nabla_w(\langle g_k, z_k\rangle + \partial
L_{train} / \partial s)`, and the recursions above carry it unchanged (no explicit setting
term). With ``carry=1`` that is the whole run's derivative, where the implicit engine's
assumption (weights at an optimum of the training loss) does not hold, e.g. an SGD budget that
ends short of a minimum.

Buffers are constants to the tangent: a BatchNorm network's running statistics, which its
validation loss reads in evaluation mode, also depend on the settings through the steps, and
that part of the derivative is left out (a finite difference of re-running the steps includes
it).

Never imports Ray.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from autometa.hypergrad.implicit import HypergradientInfo
from autometa.hypergrad.model import Hypergradients, Hyperparameters

SETTINGS = {torch.optim.SGD: ("lr", "momentum"), torch.optim.Adam: ("lr",)}
"""Optimizers supported and the settings each can differentiate."""

LOSS = "loss:"
"""Prefix of a loss hyperparameter's tangent in :attr:`UnrolledEngine.tangents`."""


class UnrolledEngine:
    """Hypergradients of optimizer settings through the steps of your own training loop.

    Call :meth:`step` with the training loss instead of ``loss.backward(); optimizer.step()``:
    it sets the optimizer's settings from ``hparams`` (so ``hp["lr"]`` is the learning rate
    used), computes the gradients (with a graph, for the Hessian-vector products), steps the
    optimizer, and carries the tangents.

    Args:
        model: The network (its parameters that require grad).
        optimizer: ``torch.optim.SGD`` (momentum, weight decay; no dampening or Nesterov) or
            ``torch.optim.Adam`` (weight decay; no AMSGrad), over those parameters, one group.
        hparams: The hyperparameters; ``settings`` names which of them are optimizer settings.
        settings: Optimizer setting -> hyperparameter name, e.g. ``{"lr": "lr"}`` (default:
            every supported setting whose name is a hyperparameter).
        carry: The share of the tangents kept after each :meth:`hypergradients` call, in
            [0, 1]: 0 restarts the unroll (the last steps only), 1 keeps the whole run.
        loss_hparams: Names of scalar hyperparameters the training loss reads, differentiated
            through the steps too; :meth:`step` then takes the loss as a function
            ``loss(hp) -> scalar`` (``hp[name]`` carries the graph). One more backward pass
            per step and name.

    Raises:
        ValueError: an unsupported optimizer or setting, several parameter groups, a
            ``carry`` outside [0, 1], or a loss hyperparameter that is unknown, not a scalar
            or also an optimizer setting.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 hparams: Hyperparameters, settings: Mapping[str, str] | None = None,
                 carry: float = 0.0, loss_hparams: Sequence[str] = ()) -> None:
        if isinstance(carry, bool) or not isinstance(carry, (int, float)) or not (
                0.0 <= carry <= 1.0):
            raise ValueError(f"carry must be a number in [0, 1], got {carry!r}")
        if isinstance(loss_hparams, str):
            raise ValueError(f"loss_hparams must be a list of names, got {loss_hparams!r}")
        loss_hparams = list(loss_hparams)
        unknown = [n for n in loss_hparams if n not in hparams]
        if unknown:
            raise ValueError(f"loss_hparams: no hyperparameter {unknown}; these are: "
                             f"{hparams.names}")
        vectors = [n for n in loss_hparams if hparams[n].numel() != 1]
        if vectors:
            raise ValueError(f"loss_hparams: {vectors} are not scalars (one tangent per "
                             "element would cost a backward pass each): split them")
        supported = SETTINGS.get(type(optimizer))
        if supported is None:
            raise ValueError(f"{type(optimizer).__name__}: only {sorted(c.__name__ for c in SETTINGS)} "
                             "can be differentiated through")
        if len(optimizer.param_groups) != 1:
            raise ValueError("the optimizer must have one parameter group")
        group = optimizer.param_groups[0]
        if group.get("nesterov") or group.get("dampening") or group.get("amsgrad"):
            raise ValueError("Nesterov momentum, dampening and AMSGrad are not supported")
        if settings is None:
            settings = {s: s for s in supported if s in hparams and s not in loss_hparams}
        both = sorted(set(settings.values()) & set(loss_hparams))
        if both:
            raise ValueError(f"{both}: both an optimizer setting and a loss hyperparameter")
        unknown = [s for s in settings if s not in supported]
        if unknown:
            raise ValueError(f"{type(optimizer).__name__} has no differentiable setting {unknown}; "
                             f"these are: {list(supported)}")
        missing = [n for n in settings.values() if n not in hparams]
        if missing:
            raise ValueError(f"no hyperparameter {missing}; these are: {hparams.names}")
        if not settings and not loss_hparams:
            raise ValueError(f"no hyperparameter names a setting of {type(optimizer).__name__} "
                             f"({list(supported)}): pass settings={{'lr': '<name>'}} or "
                             "loss_hparams=[...]")
        self.model, self.optimizer, self.hparams = model, optimizer, hparams
        self.settings = dict(settings)
        self.loss_hparams = loss_hparams
        self.carry = float(carry)
        self.params = [p for p in model.parameters() if p.requires_grad]
        owned = {id(p) for p in group["params"]}
        if any(id(p) not in owned for p in self.params):
            raise ValueError("the optimizer must hold every parameter of the model that "
                             "requires grad")
        self.steps = 0
        self.reset()

    def reset(self) -> None:
        """Restart the unroll here (tangents to zero)."""
        zeros = lambda: [torch.zeros_like(p) for p in self.params]  # noqa: E731
        self.tangents = {s: {"w": zeros(), "b": zeros(), "m": zeros(), "v": zeros()}
                         for s in self._keys()}
        self.unrolled = 0  # steps the tangents cover
        self.since_call = 0  # steps since the last hypergradients call

    def _keys(self) -> list[str]:
        # the tangents' keys: each optimizer setting, then "loss:<name>" per loss hyperparameter
        return list(self.settings) + [LOSS + n for n in self.loss_hparams]

    def _name(self, key: str) -> str:
        return key[len(LOSS):] if key.startswith(LOSS) else self.settings[key]

    def step(self, loss: torch.Tensor | Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
             ) -> torch.Tensor:
        """One optimizer step on ``loss``, carrying the tangents: a scalar of the current
        weights, or ``loss(hp) -> scalar`` (required with ``loss_hparams``)."""
        group = self.optimizer.param_groups[0]
        for setting, name in self.settings.items():
            group[setting] = float(self.hparams[name])
        values: Mapping[str, torch.Tensor] = {}
        if callable(loss):
            _, values = self.hparams.tracked()
            loss = loss(values)
        elif self.loss_hparams:
            raise TypeError(f"with loss_hparams {self.loss_hparams}, pass the loss as a function "
                            "of the hyperparameters, step(lambda hp: ...)")
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(f"the training loss must be a scalar tensor, got {type(loss).__name__}")
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads,
                                                                          strict=True)]
        decay = float(group.get("weight_decay", 0.0) or 0.0)
        hvps = {}
        for key, t in self.tangents.items():
            # gdot = H z (+ d g / d s for a loss hyperparameter): one backward pass of
            # <g, z> (+ dL/ds) with respect to the weights
            target = sum((g * z).sum() for g, z in zip(grads, t["w"], strict=True)) \
                if self.unrolled else None
            if key.startswith(LOSS):
                (direct,) = torch.autograd.grad(loss, values[self._name(key)], create_graph=True,
                                                allow_unused=True)
                if direct is not None:
                    target = direct.sum() if target is None else target + direct.sum()
            if target is None or not target.requires_grad:
                hvps[key] = [decay * z for z in t["w"]]
                continue
            products = torch.autograd.grad(target, self.params, retain_graph=True,
                                           allow_unused=True)
            hvps[key] = [(torch.zeros_like(p) if h is None else h.detach()) + decay * z
                         for p, h, z in zip(self.params, products, t["w"], strict=True)]
        previous = [{**self._state(p), "_w": p.detach().clone()} for p in self.params]  # b_k, w_k
        with torch.no_grad():
            for p, g in zip(self.params, grads, strict=True):
                p.grad = g.detach().clone()
        self.optimizer.step()
        with torch.no_grad():
            for setting, t in self.tangents.items():
                self._carry(setting, t, hvps[setting], grads, previous, group, decay)
        self.unrolled += 1
        self.since_call += 1
        self.steps += 1
        return loss.detach()

    def hypergradients(self, val_loss: Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
                       ) -> Hypergradients:
        """:math:`dL_{val}/ds` for every setting over the unroll's steps (those since the last
        call, and with ``carry`` the earlier ones, weighted); then the unroll restarts or keeps
        ``carry`` of its tangents. ``val_loss(hp)`` is called in evaluation mode."""
        was_training = self.model.training
        self.model.eval()
        try:
            _, tracked = self.hparams.tracked()
            value = val_loss(tracked)
            read = [n for n in self.loss_hparams if tracked[n].requires_grad]
            *grads, = torch.autograd.grad(value, [*self.params, *(tracked[n] for n in read)],
                                          allow_unused=True)
            # a loss hyperparameter the validation loss reads itself: its direct term
            direct = dict(zip(read, grads[len(self.params):], strict=True))
            grads = grads[:len(self.params)]
        finally:
            self.model.train(was_training)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads,
                                                                          strict=True)]
        out = {}
        for key, t in self.tangents.items():
            name = self._name(key)
            out[name] = sum((g * zi).sum() for g, zi in zip(grads, t["w"], strict=True)).detach()
            if direct.get(name) is not None:
                out[name] = out[name] + direct[name].detach().reshape(out[name].shape)
        finite = math.isfinite(float(value.detach())) and all(
            math.isfinite(float(v)) for v in out.values())
        norm = math.sqrt(sum(float(v) ** 2 for v in out.values())) if finite else math.nan
        message = "" if finite else ("unrolled hypergradient is not finite: the validation loss "
                                     "or the tangents are NaN or infinite (the steps diverged)")
        if finite and self.unrolled == 0:
            message = "no step since the last call: the hypergradient is 0"
        info = HypergradientInfo(finite, 0.0 if finite else math.nan, method="unrolled",
                                 hypergrad_norm=norm, finite=finite, message=message)
        values = {name: self.hparams[name] for name in out}
        self._restart()
        return Hypergradients(out, values, float(value.detach()), info)

    def _restart(self) -> None:
        # keep c z (and c of every tangent the recursions carry): linear, so the result is the
        # derivative for a shift of the setting weighted by c per call of age
        if self.carry == 0.0 or self.unrolled == 0:
            self.reset()
            return
        if self.carry < 1.0:
            for t in self.tangents.values():
                for part in t.values():
                    for x in part:
                        x.mul_(self.carry)
        self.since_call = 0

    # ------------------------------------------------------------------ maths
    def _state(self, p: torch.Tensor) -> dict[str, Any]:
        state = self.optimizer.state.get(p, {})
        return {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v)
                for k, v in state.items()}

    def _carry(self, setting: str, t: dict, hvps: Sequence[torch.Tensor],
               grads: Sequence[torch.Tensor], previous: Sequence[dict], group: dict,
               decay: float) -> None:
        lr = group["lr"]
        for i, p in enumerate(self.params):
            state, before, gdot = self.optimizer.state[p], previous[i], hvps[i]
            g = grads[i].detach() + decay * before["_w"] if decay else grads[i].detach()
            if isinstance(self.optimizer, torch.optim.SGD):
                mu = group.get("momentum", 0.0) or 0.0
                if mu:
                    b_prev = before.get("momentum_buffer")
                    b_next = state["momentum_buffer"]
                    # the first step sets b_1 = g_1: its tangent is g_1's
                    bdot = gdot if b_prev is None else mu * t["b"][i] + gdot + (
                        b_prev if setting == "momentum" else 0.0)
                    t["b"][i] = bdot
                else:
                    b_next, bdot = g, gdot
                t["w"][i] = t["w"][i] - lr * bdot - (b_next if setting == "lr" else 0.0)
                continue
            beta1, beta2 = group["betas"]
            step = float(state["step"])
            t["m"][i] = beta1 * t["m"][i] + (1 - beta1) * gdot
            t["v"][i] = beta2 * t["v"][i] + 2 * (1 - beta2) * g * gdot
            c1, c2 = 1 - beta1 ** step, 1 - beta2 ** step
            m_hat, v_hat = state["exp_avg"] / c1, state["exp_avg_sq"] / c2
            root = v_hat.sqrt()
            denom = root + group["eps"]
            # d(1/(sqrt(v)+eps))/dv = -1 / (2 sqrt(v) (sqrt(v)+eps)^2), taken as 0 where v = 0
            dv = torch.where(root > 0, (t["v"][i] / c2) / (2 * root.clamp_min(1e-30) * denom ** 2),
                             torch.zeros_like(root))
            ddot = (t["m"][i] / c1) / denom - m_hat * dv
            t["w"][i] = t["w"][i] - lr * ddot - (m_hat / denom if setting == "lr" else 0.0)

    def state_dict(self) -> dict[str, Any]:
        """The tangents and counters (to resume the unroll exactly)."""
        return {"tangents": {s: {k: [x.clone() for x in v] for k, v in t.items()}
                             for s, t in self.tangents.items()},
                "unrolled": self.unrolled, "since_call": self.since_call, "steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Put back what :meth:`state_dict` gave; a setting or loss hyperparameter the state
        lacks starts its tangent at zero."""
        self.reset()
        self.tangents.update({s: {k: [x.clone() for x in v] for k, v in t.items()}
                              for s, t in state["tangents"].items() if s in self.tangents})
        self.unrolled, self.steps = int(state["unrolled"]), int(state["steps"])
        self.since_call = int(state.get("since_call", self.unrolled))


def combine(*results: Hypergradients) -> Hypergradients:
    """One result from several (e.g. implicit for the weight decay, unrolled for the learning
    rate): the union of their hypergradients and values, converged only if all are, the
    checks of the first (the messages of all)."""
    if not results:
        raise ValueError("nothing to combine")
    grads, values = {}, {}
    for r in results:
        grads.update(r.grads)
        values.update(r.values)
    first = results[0].info
    info = dataclasses.replace(first, converged=all(r.info.converged for r in results),
                               finite=all(r.info.finite for r in results),
                               message="; ".join(r.info.message for r in results if r.info.message))
    return Hypergradients(grads, values, results[0].val_loss, info)


__all__ = ["SETTINGS", "UnrolledEngine", "combine"]

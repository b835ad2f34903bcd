r"""The in-trial loop: ``T`` inner optimizer steps, then one hyperstep on :math:`\theta`.

Works with any ``nn.Module`` (parameters and buffers are passed functionally with
:func:`torch.func.functional_call`, so BatchNorm running statistics are not moved by the
hypergradient computation), any ``torch.optim`` optimizer for the weights, and CPU or CUDA.
The hyperparameters are :class:`~autometa.hypergrad.families.Hyperparameter` objects; an outer
optimizer (Adam by default) updates their unconstrained tensors, then each value is clipped
to its bounds. A non-finite inner loss or hypergradient skips the step with a
:class:`DivergenceWarning` and leaves the weights and :math:`\theta` as they were.

This module never imports Ray; :mod:`autometa.trial` reports its results to Tune.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from autometa.hypergrad._flat import leaves
from autometa.hypergrad.families.transforms import Hyperparameter
from autometa.hypergrad.implicit import (
    DEFAULT_INNER_TOL,
    DEFAULT_TOL,
    HypergradientInfo,
    implicit_hypergradient,
)

Batch = Any
LossFn = Callable[["ModelView", Batch, dict[str, torch.Tensor]], torch.Tensor]


class DivergenceWarning(RuntimeWarning):
    """A non-finite loss or hypergradient: the step was skipped."""


class _NonFinite(Exception):
    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value


class ModelView:
    """A callable model with given parameters (``view(x)``); ``view.params`` for penalties."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor] | None = None,
                 buffers: dict[str, torch.Tensor] | None = None) -> None:
        self.model = model
        self.params = params if params is not None else dict(model.named_parameters())
        self.buffers = buffers

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.buffers is None:
            return self.model(*args, **kwargs)
        return functional_call(self.model, {**self.params, **self.buffers}, args, kwargs)


@dataclass
class HyperStepResult:
    """What one :meth:`HyperTrainer.step` did.

    Attributes:
        train_loss: Mean over the step's inner iterations of the loss each started from (what
            ``optimizer.step`` returns: for L-BFGS with one inner iteration, the loss before it).
        val_loss: Validation loss at the weights the hypergradient was taken at.
        values: Hyperparameter values the step trained with and took the hypergradient at
            (so ``values``, ``val_loss`` and ``hypergrads`` describe one point).
        hypergrads: :math:`\\partial L_{val}/\\partial x` in each value's own units.
        skipped: True when the hyperstep was skipped (non-finite loss or hypergradient).
        info: Convergence diagnostics of the hypergradient.
        messages: Why a step was skipped.
        updated: Values after the outer update (the next step's ``values``).
    """

    train_loss: float
    val_loss: float
    values: dict[str, torch.Tensor]
    hypergrads: dict[str, torch.Tensor]
    skipped: bool = False
    info: HypergradientInfo | None = None
    messages: list[str] = field(default_factory=list)
    updated: dict[str, torch.Tensor] = field(default_factory=dict)


class HyperTrainer:
    """Alternate ``inner_steps`` optimizer steps on the weights with one hyperstep.

    Args:
        model: The network.
        optimizer: Any ``torch.optim`` optimizer over ``model``'s parameters.
        hparams: The hyperparameters to learn.
        train_loss: ``train_loss(view, batch, values) -> scalar`` with ``view(x)`` the model
            and ``values`` the hyperparameter values by name.
        val_loss: ``val_loss(view, batch, values) -> scalar``.
        inner_steps: Optimizer steps between hypersteps (T).
        method: Hypergradient method (``"auto"``: MINRES; ``"cg"``, ``"neumann"``,
            ``"fixed_point"``, ``"exact"``).
        method_options: Options of that method (e.g. ``{"maxiter": 20}``).
        damping: Damping added to the Hessian, or ``"auto"`` (the default): none unless a
            solve misses ``tol``, then the smallest that meets it
            (:func:`~autometa.hypergrad.implicit.implicit_hypergradient`).
        tol, inner_tol: Tolerances of the checks
            (:func:`~autometa.hypergrad.implicit.implicit_hypergradient`); each solve starts
            from the previous hyperstep's solution.
        outer_lr: Learning rate of the outer optimizer.
        outer_optimizer: ``"adam"`` or ``"sgd"``.

    Example:
        See ``tests/test_hypergrad_loop.py`` for a complete ridge-regression run.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 hparams: Sequence[Hyperparameter], train_loss: LossFn, val_loss: LossFn, *,
                 inner_steps: int = 10, method: str = "auto",
                 method_options: dict[str, float] | None = None, damping: float | str = "auto",
                 outer_lr: float = 0.05, outer_optimizer: str = "adam",
                 tol: float = DEFAULT_TOL, inner_tol: float = DEFAULT_INNER_TOL) -> None:
        if inner_steps < 1:
            raise ValueError(f"inner_steps must be >= 1, got {inner_steps}")
        names = [h.name for h in hparams]
        if len(set(names)) != len(names):
            raise ValueError(f"hyperparameter names must be unique: {names}")
        self.model, self.optimizer = model, optimizer
        self.hparams = list(hparams)
        self.train_loss, self.val_loss = train_loss, val_loss
        self.inner_steps, self.method = inner_steps, method
        self.method_options = dict(method_options or {})
        self.damping, self.tol, self.inner_tol = damping, tol, inner_tol
        self.solution: torch.Tensor | None = None   # warm start of the next linear solve
        device = next(model.parameters()).device
        for h in self.hparams:
            h.raw = h.raw.detach().to(device).requires_grad_()
        outer = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
        if outer_optimizer not in outer:
            raise ValueError(f"outer_optimizer must be one of {sorted(outer)}")
        self.outer = outer[outer_optimizer]([h.raw for h in self.hparams], lr=outer_lr)
        self.steps = 0

    # -------------------------------------------------------------- values
    def values(self, detach: bool = True) -> dict[str, torch.Tensor]:
        """Current hyperparameter values by name."""
        return {h.name: (h.value().detach() if detach else h.value()) for h in self.hparams}

    # ----------------------------------------------------------- one round
    def step(self, train_batches: Iterator[Batch], val_batch: Batch,
             update: bool = True) -> HyperStepResult:
        """``inner_steps`` weight updates from ``train_batches``, then one hyperstep.

        The inner steps call ``optimizer.step(closure)``, so closure optimizers such as
        L-BFGS work too. With ``update=False`` the hypergradient is computed and returned but
        :math:`\theta` is left as it is (e.g. to report it at the end of a trial).
        """
        values = self.values()
        losses, last_batch = [], None
        for _ in range(self.inner_steps):
            batch = next(train_batches)
            self.model.train()
            snapshot = {n: p.detach().clone() for n, p in self.model.named_parameters()}

            def closure(batch: Batch = batch) -> torch.Tensor:
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.train_loss(ModelView(self.model), batch, values)
                if not torch.isfinite(loss):
                    raise _NonFinite(float(loss.detach()))
                loss.backward()
                return loss

            try:
                loss = self.optimizer.step(closure)
            except _NonFinite as err:
                with torch.no_grad():  # a closure optimizer may have moved the weights already
                    for n, p in self.model.named_parameters():
                        p.copy_(snapshot[n])
                return self._skip(f"inner loss is {err.value}: the weight update and the "
                                  "hyperstep were skipped", losses, values=values)
            losses.append(float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss))
            last_batch = batch
        grads, val, info = self.hypergradient(last_batch, val_batch)
        train_loss = sum(losses) / len(losses)
        if not all(torch.isfinite(g).all() for g in grads.values()) or not math.isfinite(val):
            return self._skip("non-finite hypergradient or validation loss: the hyperstep was "
                              "skipped", losses, val, values)
        by_name = {h.name: h for h in self.hparams}
        value_grads = {n: by_name[n].value_grad(g).detach() for n, g in grads.items()}
        if update:
            self.outer.zero_grad(set_to_none=True)
            for h in self.hparams:
                h.raw.grad = grads[h.name].to(h.raw.dtype)
            self.outer.step()
            for h in self.hparams:
                h.clip_()
            self.steps += 1
        return HyperStepResult(train_loss, val, values, value_grads, False, info,
                               updated=self.values())

    def hypergradient(self, train_batch: Batch, val_batch: Batch
                      ) -> tuple[dict[str, torch.Tensor], float, HypergradientInfo]:
        """Hypergradient with respect to the *raw* tensors, the validation loss, diagnostics.

        Buffers (BatchNorm statistics) are copied, so this computation leaves them alone.
        """
        buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        params = {n: p.detach() for n, p in self.model.named_parameters()}
        by_name = {h.name: h for h in self.hparams}
        was_training = self.model.training

        def values_of(raws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {n: by_name[n].value(r) for n, r in raws.items()}

        def train_fn(p: dict[str, torch.Tensor], raws: dict[str, torch.Tensor]) -> torch.Tensor:
            self.model.train()
            return self.train_loss(ModelView(self.model, p, dict(buffers)), train_batch,
                                   values_of(raws))

        def val_fn(p: dict[str, torch.Tensor], raws: dict[str, torch.Tensor]) -> torch.Tensor:
            self.model.eval()
            return self.val_loss(ModelView(self.model, p, dict(buffers)), val_batch,
                                 values_of(raws))

        raws = {h.name: h.raw.detach() for h in self.hparams}
        try:
            w, theta = leaves(params), leaves(raws)
            options = dict(self.method_options)
            tol = options.pop("tol", self.tol)  # a solver tolerance is the checked one too
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # reported through info instead
                result = implicit_hypergradient(
                    train_fn(w, theta), val_fn(w, theta), list(w.values()), list(theta.values()),
                    method=self.method, damping=self.damping, tol=tol,
                    inner_tol=self.inner_tol, init=self.solution, **options)
            if result.solution is not None:
                self.solution = result.solution
            grads, info = dict(zip(theta, result.grads, strict=True)), result.info
            with torch.no_grad():
                val = float(val_fn(params, raws))
        finally:
            self.model.train(was_training)
        return grads, val, info

    def _skip(self, message: str, losses: list[float], val: float = math.nan,
              values: dict[str, torch.Tensor] | None = None) -> HyperStepResult:
        warnings.warn(message, DivergenceWarning, stacklevel=3)
        train_loss = sum(losses) / len(losses) if losses else math.nan
        values = values if values is not None else self.values()
        return HyperStepResult(train_loss, val, values, {}, True, None, [message], values)

    # ----------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: weights, both optimizers, θ, step count."""
        # Deep copies: optimizers load tensors without copying, and training goes on in place.
        return {"model": copy.deepcopy(self.model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "outer": copy.deepcopy(self.outer.state_dict()),
                "hparams": {h.name: h.raw.detach().clone() for h in self.hparams},
                "steps": self.steps,
                "solution": None if self.solution is None else self.solution.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        with torch.no_grad():
            for h in self.hparams:
                h.raw.copy_(state["hparams"][h.name])
        self.outer.load_state_dict(state["outer"])
        self.steps = state["steps"]
        self.solution = state.get("solution")

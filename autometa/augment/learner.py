r"""Learning a :class:`~autometa.augment.choice.ChoicePolicy` while the network trains.

    policy = ChoicePolicy(seed=0)                  # TrivialAugment's uniform choice to start
    learner = PolicyLearner(policy, model, per_image_loss, lr=1e-2)
    for epoch in range(epochs):
        loss = loss_fn(model(policy(images)), labels)   # augmented training step, as usual
        ...
        result = learner.step((images, labels), (val_images, val_labels))
        tune.report({**result.metrics(), "val_accuracy": ...})   # or print(result.describe())

Each :meth:`PolicyLearner.step` takes the look-ahead hypergradient
(:func:`~autometa.augment.lookahead.policy_hypergradient`) and one Adam step on the policy's
logits and ceilings (the hypergradient's scale changes from step to step; Adam's does not). It
says how the policy stands: the entropy of its choice of operation, how far it has moved from
its start and in this step (total variation of the choice, largest change of a ceiling), and
the estimate's signal-to-noise ratio; a policy that has not moved after ``still_after`` steps
is warned about once (log ``autometa.augment``) and flagged in the results. Pure torch; no Ray.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autometa.augment.choice import ChoicePolicy, entropy, total_variation
from autometa.augment.lookahead import PerSampleLoss, PolicyHypergradient, policy_hypergradient

logger = logging.getLogger("autometa.augment")


@dataclass(frozen=True)
class PolicyStepResult:
    """One hyperstep of a :class:`PolicyLearner`.

    Attributes:
        hypergradient: The estimate and its standard errors.
        probabilities, ceilings: The policy after the step (identity first; ceilings of the
            operations).
        entropy: Of the choice of operation, nats.
        moved: Distance from the start: total variation of the choice plus the largest change
            of a ceiling.
        change: The same distance, for this step alone.
        still: True once the policy has gone ``still_after`` steps and moved less than
            ``still_below`` (the warning's condition).
        skipped: True when the estimate was not finite (nothing was changed).
        names: ``identity`` and the operations.
    """

    hypergradient: PolicyHypergradient
    probabilities: tuple[float, ...]
    ceilings: tuple[float, ...]
    entropy: float
    moved: float
    change: float
    still: bool
    skipped: bool
    names: tuple[str, ...]

    def metrics(self, prefix: str = "augment") -> dict[str, float]:
        """The step's result keys (:func:`autometa.trial.keys.policy_metrics`)."""
        from autometa.trial.keys import policy_metrics

        return policy_metrics(self, prefix)

    def describe(self) -> str:
        """One line: the most likely operations, the entropy, movement and signal-to-noise."""
        top = sorted(zip(self.probabilities, self.names, strict=True), reverse=True)[:4]
        ops = ", ".join(f"{name} {p:.2f}" for p, name in top)
        return (f"policy: {ops}; entropy {self.entropy:.2f}, moved {self.moved:.3f} "
                f"(+{self.change:.3f}), signal/noise {self.hypergradient.snr():.2f}"
                + (" (skipped: non-finite)" if self.skipped else ""))


class PolicyLearner:
    """Learn ``policy`` by look-ahead hypergradients of ``model``'s validation loss.

    Args:
        policy: The policy to learn (its parameters are changed in place).
        model: The network being trained.
        loss_fn: Per-image loss, ``loss_fn(outputs, targets)`` of shape (N,).
        lr: The training step's learning rate (the look-ahead step :math:`\\eta`).
        outer_lr: Adam's learning rate on the policy's logits.
        draws: Augmentation draws per image per hyperstep (variance against cost).
        epsilon: The directional derivative's central-difference step (relative).
        still_after, still_below: Warn when, after this many steps, the policy has moved less
            than this (see :attr:`PolicyStepResult.moved`).
        learn: What is learned: ``"weights"`` (the choice of operation), ``"ceilings"`` (the
            magnitudes), or both (the default); the other stays at its start.
        control_variate: Baselines in the weights' score-function estimate (False: for
            ablations; see :func:`~autometa.augment.lookahead.policy_hypergradient`).
    """

    def __init__(self, policy: ChoicePolicy, model: nn.Module, loss_fn: PerSampleLoss,
                 lr: float, outer_lr: float = 0.05, draws: int = 1, epsilon: float = 0.01,
                 still_after: int = 20, still_below: float = 0.02,
                 learn: tuple[str, ...] = ("weights", "ceilings"),
                 control_variate: bool = True) -> None:
        if lr <= 0 or outer_lr <= 0:
            raise ValueError(f"lr and outer_lr must be > 0, got {lr} and {outer_lr}")
        unknown = set(learn) - {"weights", "ceilings"}
        if unknown or not learn:
            raise ValueError(f"learn: expected some of ('weights', 'ceilings'), got {learn!r}")
        self.learn, self.control_variate = tuple(learn), bool(control_variate)
        self.policy, self.model, self.loss_fn = policy, model, loss_fn
        self.lr, self.draws, self.epsilon = float(lr), int(draws), float(epsilon)
        self.still_after, self.still_below = int(still_after), float(still_below)
        self.optimizer = torch.optim.Adam([policy.logits, policy.raw_ceiling], lr=outer_lr)
        self.start = self._snapshot()
        self.steps = 0
        self._warned = False

    def _snapshot(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.policy.probabilities().detach().clone(),
                self.policy.ceilings().detach().clone())

    @staticmethod
    def _distance(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]
                  ) -> float:
        return float(total_variation(a[0], b[0]) + (a[1] - b[1]).abs().max())

    def step(self, train_batch: tuple[torch.Tensor, Any], val_batch: tuple[torch.Tensor, Any]
             ) -> PolicyStepResult:
        """One hyperstep on ``train_batch`` (images before augmentation) against
        ``val_batch``."""
        before = self._snapshot()
        h = policy_hypergradient(self.model, self.loss_fn, self.policy, train_batch, val_batch,
                                 self.lr, self.draws, self.epsilon, self.control_variate)
        if h.finite:
            self.optimizer.zero_grad(set_to_none=True)
            if "weights" in self.learn:
                self.policy.logits.grad = h.logits.to(self.policy.logits)
            if "ceilings" in self.learn:
                self.policy.raw_ceiling.grad = h.raw_ceiling.to(self.policy.raw_ceiling)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        after = self._snapshot()
        moved = self._distance(after, self.start)
        still = self.steps >= self.still_after and moved < self.still_below
        if still and not self._warned:
            self._warned = True
            logger.warning(
                "the augmentation policy has moved %.3f from its start in %d hypersteps (signal/"
                "noise of the last estimate %.2f): its hypergradient is too weak or too noisy "
                "here; raise outer_lr or draws, take hypersteps later in training (when the "
                "network fits its training images), or use a larger validation batch",
                moved, self.steps, h.snr())
        return PolicyStepResult(h, tuple(after[0].tolist()), tuple(after[1].tolist()),
                                float(entropy(after[0])), moved, self._distance(after, before),
                                still, not h.finite, self.policy.names)

    def state_dict(self) -> dict[str, Any]:
        """The policy, Adam's moments, the start and the step count (for checkpoints)."""
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "start": self.start, "steps": self.steps, "warned": self._warned,
                "generator": self.policy.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.start, self.steps, self._warned = state["start"], state["steps"], state["warned"]
        self.policy.generator.set_state(state["generator"])

"""The digits CNN whose continuous hyperparameters are learned during its one training run.

The online mode (:mod:`autometa.hypergrad.online`), through the same public API a user's own
model would use: every ``hyper_every`` SGD steps, the weight decay of each layer, the label
smoothing and (if asked) the class weights move against their implicit hypergradients
(:class:`ImplicitEngine`, over the whole training split or a fresh random ``hyper_batch`` of
it, warm-started; or, ``loss_hypergradient: unrolled``, through the steps taken), the
learning rate and momentum against their hypergradient through those steps
(:class:`UnrolledEngine`: by default a truncated unroll, so it sees only the short horizon,
which is known to favour small learning rates; ``unroll_carry`` lengthens it), and
(``augment: choice``) an augmentation policy against its look-ahead hypergradient. The
validation split drives them; ``test_*`` is never seen. A searcher or population scheduler
chooses the rest (``hidden``, ``batch_size``) and the start values:
``search_spaces/online_hybrid.yaml``.

Config keys (all optional):

============== =========== =========================================================
key            default     meaning
============== =========== =========================================================
lr             0.05        SGD learning rate at the start (learned in [1e-3, 1])
momentum       0.9         SGD momentum at the start (learned in [0, 0.99])
decay          1e-4 each   ``{conv1, conv2, fc}`` or one number (learned in [1e-6, 0.1])
smoothing      0.05        label smoothing at the start (learned in [0, 0.3])
class_weight   1 each      ``{c0, ..., c9}`` or one number: each digit's weight in the
                           training loss (learned in [0.1, 10]; the AutoBalance case)
learn          lr, momen-  which of ``lr, momentum, decay, smoothing, class_weight`` are
               tum, decay, learned (the others stay at their config values); ``none``:
               smoothing   nothing
augment        none        ``choice``: augment every training batch by a
                           :class:`~autometa.augment.choice.ChoicePolicy` (one operation an
                           image, TrivialAugment's family with identity in it) learned at each
                           hyperstep by :class:`~autometa.augment.learner.PolicyLearner`
                           (look-ahead hypergradient on the last training batch against the
                           validation split); ``operations``, ``identity`` (its starting
                           weight), ``ceiling`` (0.5), ``augment_lr`` (0.05) and ``draws``
                           (1) as for ``digits_augment``
hyper_every    10          SGD steps between hypersteps (T), or ``epoch``: at each epoch's end
hyper_lr       0.05        the hypersteps' Adam step, in log/logit units
unroll_carry   0           share of the learning rate's and momentum's tangents kept from
                           one hyperstep to the next (``UnrolledEngine(carry=...)``): 0
                           differentiates through the last ``hyper_every`` steps only, 1
                           through the whole run so far
loss_hypergra- implicit    how the decays, the smoothing and the class weights get their
dient                      hypergradients: ``implicit`` (at the current weights, as if at an
                           optimum) or ``unrolled`` (through the steps taken, by
                           ``UnrolledEngine(loss_hparams=...)`` with ``unroll_carry``: no
                           optimum assumed; one more backward pass a step per hyperparameter)
hyper_update   true        false: take and report the hypergradients, move nothing (for a
                           population scheduler that moves the values itself)
maxiter        20          Hessian-vector products of each implicit solve
hyper_batch    all         training samples in each implicit solve's training loss: ``all``
                           (the whole split), or a number: a fresh random subset of that
                           many at each hyperstep (the Hessian of a minibatch: cheaper, and
                           ``converged`` then speaks of that minibatch's system)
damping        auto        the implicit solves' damping (:class:`ImplicitEngine`): ``auto``
                           or a number >= 0
hidden         16          channels of the first convolution
batch_size     64          minibatch size
epochs         10          epochs (one report each, with a checkpoint)
train_size     (all)       the first ``train_size`` training samples only
seed           0           weights and minibatch order
============== =========== =========================================================

Each epoch reports ``train_loss``, ``val_loss``, ``val_accuracy``, ``test_loss``,
``test_accuracy``, ``hparams/<name>`` (the values at the epoch's end, so a trial's reports are
its trajectory), the last hypergradients (``hypergrad/<name>``) with their checks, and
``hyperstep_skipped``, ``hyperstep_trust``, ``hypersteps``; with ``augment: choice`` also the
policy's (``hparams/augment.p.<op>``, ``augment_entropy``, ``augment_moved``, ...; its
``policy.yaml`` in each checkpoint for ``autometa policy export``). The implicit solves read the
training images without augmentation. The checkpoint holds everything (the
weights, the optimizer, the learned values, the engines' and the updater's state, the minibatch
order), so a paused or failed trial resumes exactly; under PBT the exploited trial takes the
donor's learned values with its weights (a checkpoint of another ``hidden`` is not loaded).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from autometa.augment.choice import ChoicePolicy
from autometa.augment.learner import PolicyLearner
from autometa.augment.policy_file import policy_writer
from autometa.data.digits import load_digits_splits
from autometa.hypergrad.families import smoothed_cross_entropy
from autometa.hypergrad.forward import UnrolledEngine, combine
from autometa.hypergrad.model import Hyperparameters, ImplicitEngine
from autometa.hypergrad.online import OnlineUpdater
from autometa.space import space_from_dict
from autometa.trainables.digits import (
    build_cnn,
    choice_policy_learner,
    evaluate,
    load_optimizer_state,
)
from autometa.trial.keys import SKIPPED, hparam_metrics, online_metrics

LAYERS = {"conv1": "1.weight", "conv2": "5.weight", "fc": "11.weight"}
"""Decay groups: layer name -> the weight of :func:`build_cnn`'s ``nn.Sequential`` it decays."""

CLASSES = 10
LEARNABLE = space_from_dict({"parameters": {
    "lr": {"type": "loguniform", "low": 1e-3, "high": 1.0, "differentiable": True},
    "momentum": {"type": "uniform", "low": 0.0, "high": 0.99, "differentiable": True},
    "decay": {layer: {"type": "loguniform", "low": 1e-6, "high": 0.1, "differentiable": True}
              for layer in LAYERS},
    "smoothing": {"type": "uniform", "low": 0.0, "high": 0.3, "differentiable": True},
    "class_weight": {f"c{c}": {"type": "loguniform", "low": 0.1, "high": 10.0,
                               "differentiable": True} for c in range(CLASSES)},
}})
"""The bounds (and so the log/logit coordinates) of what this trainable learns."""

DEFAULTS = {"lr": 0.05, "momentum": 0.9, "decay": 1e-4, "smoothing": 0.05}
"""Start values, and what ``learn`` means by default."""
LEARNABLE_GROUPS = (*DEFAULTS, "class_weight")
OPTIMIZER_SETTINGS = ("lr", "momentum")


def start_values(config: dict[str, Any]) -> dict[str, Any]:
    """The values to start from (or keep), nested as :data:`LEARNABLE`: the config's, else
    :data:`DEFAULTS`; ``decay`` may be one number for all layers."""
    decay = _per_key(config.get("decay", DEFAULTS["decay"]), LAYERS, "decay", DEFAULTS["decay"])
    weights = _per_key(config.get("class_weight", 1.0), [f"c{c}" for c in range(CLASSES)],
                       "class_weight", 1.0)
    return {"lr": float(config.get("lr", DEFAULTS["lr"])),
            "momentum": float(config.get("momentum", DEFAULTS["momentum"])),
            "decay": decay, "smoothing": float(config.get("smoothing", DEFAULTS["smoothing"])),
            "class_weight": weights}


def _per_key(value: Any, keys: Any, name: str, default: float) -> dict[str, float]:
    """One number for every key, or a mapping of some keys (the others at ``default``)."""
    if not isinstance(value, dict):
        value = {key: value for key in keys}
    unknown = set(value) - set(keys)
    if unknown:
        raise ValueError(f"{name}: unknown keys {sorted(unknown)}; use {sorted(keys)}")
    return {key: float(value.get(key, default)) for key in keys}


def learned_names(config: dict[str, Any]) -> list[str]:
    """The dotted names learned (``learn`` picks among lr, momentum, decay, smoothing)."""
    learn = config.get("learn", list(DEFAULTS))
    if learn in (None, "none"):
        learn = []
    if isinstance(learn, str):
        learn = [learn]
    unknown = set(learn) - set(LEARNABLE_GROUPS)
    if unknown:
        raise ValueError(f"learn: unknown {sorted(unknown)}; choose among "
                         f"{list(LEARNABLE_GROUPS)}")
    return [p.key for p in LEARNABLE.parameters if p.key.split(".")[0] in learn]


class OnlineDigitsCNN:
    """One training run of the CNN with its hyperparameters learned as it goes.

    Args:
        config: See the module docstring.
        device: Where to train (``trial_device()`` in a trial).
    """

    def __init__(self, config: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.config, self.device = dict(config), torch.device(device)
        data = load_digits_splits(seed=0)
        size = int(config.get("train_size") or len(data.y_train))
        self.t = {name: torch.as_tensor(getattr(data, name), device=self.device)
                  for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        self.t["x_train"], self.t["y_train"] = self.t["x_train"][:size], self.t["y_train"][:size]
        self.size = size
        seed = int(config.get("seed", 0))
        torch.manual_seed(seed)
        self.model = build_cnn(config).to(self.device)
        start = start_values(config)
        self.fixed = {p.key: torch.tensor(_get(start, p.key), device=self.device)
                      for p in LEARNABLE.parameters}
        names = learned_names(config)
        loss_names = [n for n in names if n.split(".")[0] not in OPTIMIZER_SETTINGS]
        opt_names = [n for n in names if n in OPTIMIZER_SETTINGS]
        self.loss_hp = _hparams(start, loss_names, self.device)
        self.opt_hp = _hparams(start, opt_names, self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=start["lr"],
                                         momentum=start["momentum"])
        self.through_steps = _loss_hypergradient(config.get("loss_hypergradient", "implicit"))
        self.implicit = (ImplicitEngine(self.model, self.loss_hp,
                                        damping=_damping(config.get("damping", "auto")),
                                        maxiter=int(config.get("maxiter", 20)))
                         if self.loss_hp is not None and not self.through_steps else None)
        self.hyper_batch = _hyper_batch(config.get("hyper_batch", "all"), size)
        carry = _carry(config.get("unroll_carry", 0.0))
        # through the steps: one engine for the optimizer's settings and (loss_hypergradient:
        # unrolled) the loss's hyperparameters, the same Hyperparameter objects the updater moves
        unroll_loss = self.loss_hp is not None and self.through_steps
        unroll_hp = Hyperparameters([h for hp in (self.loss_hp if unroll_loss else None,
                                                  self.opt_hp) if hp is not None
                                     for h in hp.hparams])
        self.unrolled = (UnrolledEngine(self.model, self.optimizer, unroll_hp,
                                        settings={n: n for n in opt_names}, carry=carry,
                                        loss_hparams=loss_names if unroll_loss else ())
                         if len(unroll_hp) else None)
        held = [h for h in (self.loss_hp, self.opt_hp) if h is not None]
        self.updater = (OnlineUpdater(*held, lr=float(config.get("hyper_lr", 0.05)))
                        if held else None)
        every = config.get("hyper_every", 10)
        self.every = None if every == "epoch" else int(every)
        if self.every is not None and self.every < 1:
            raise ValueError(f"hyper_every must be >= 1 or 'epoch', got {every!r}")
        self.batch = int(config.get("batch_size", 64))
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.epoch, self.steps = 0, 0
        self.last_result, self.last_step, self.last_policy = None, None, None
        self.weighted = "class_weight" in config or any(
            n.split(".")[0] == "class_weight" for n in names)
        self.policy, self.learner = self._policy(config, seed)
        self.learning = self.updater is not None or self.learner is not None
        self.last_rows: torch.Tensor | None = None

    def _policy(self, config: dict[str, Any], seed: int
                ) -> tuple[ChoicePolicy | None, PolicyLearner | None]:
        augment = config.get("augment", "none")
        if augment in ("none", None):
            return None, None
        if augment != "choice":
            raise ValueError(f"augment must be 'none' or 'choice', got {augment!r}")
        policy, learner = choice_policy_learner(config, self.model, self.optimizer_lr(), seed,
                                                float(config.get("augment_lr", 0.05)))
        policy.to(self.device)
        return policy, learner

    def optimizer_lr(self) -> float:
        """The SGD learning rate in use now."""
        return float(self.optimizer.param_groups[0]["lr"])

    def augmented(self, rows: torch.Tensor) -> torch.Tensor:
        """The training images ``rows``, through the policy when there is one (its draws a
        function of the seed and the step, so a resumed trial draws the same)."""
        x = self.t["x_train"][rows]
        if self.policy is None:
            return x
        self.policy.generator.manual_seed(self.seed * 1_000_003 + self.steps)
        return self.policy(x.reshape(-1, 1, 8, 8)).flatten(1)

    # ------------------------------------------------------------------ losses
    def value(self, hp: Any, name: str) -> torch.Tensor:
        """``name``'s value: from ``hp`` (a mapping the engines pass) when learned there."""
        return hp[name] if hp is not None and name in hp else self.fixed[name]

    def train_loss(self, hp: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r""":math:`\tfrac1N \sum_i \omega_{y_i} \mathrm{CE}_\varepsilon(f(x_i), y_i) +
        \tfrac12 \sum_k \lambda_k \|W_k\|^2` (:math:`\omega = 1` unless class weights are
        set or learned)."""
        params = dict(self.model.named_parameters())
        penalty = sum(0.5 * self.value(hp, f"decay.{layer}") * (params[w] ** 2).sum()
                      for layer, w in LAYERS.items())
        weights = torch.stack([self.value(hp, f"class_weight.c{c}") for c in range(CLASSES)]) \
            if self.weighted else None
        return smoothed_cross_entropy(self.model(x), y, self.value(hp, "smoothing"),
                                      weights) + penalty

    def val_loss(self, hp: Any = None) -> torch.Tensor:
        return nn.functional.cross_entropy(self.model(self.t["x_val"]), self.t["y_val"])

    # ---------------------------------------------------------------- training
    def train_epoch(self) -> tuple[dict[str, Any], Any]:
        """One epoch of SGD with a hyperstep every ``hyper_every`` steps; its metrics and
        the last hypergradients (None before the first hyperstep)."""
        self.model.train()
        order = torch.as_tensor(self.rng.permutation(self.size), device=self.device)
        total = 0.0
        loss_values = self.loss_hp.values() if self.loss_hp is not None else None
        for i in range(0, self.size, self.batch):
            idx = order[i:i + self.batch]
            self.last_rows = idx
            x, y = self.augmented(idx), self.t["y_train"][idx]
            if self.unrolled is not None and self.unrolled.loss_hparams:
                loss = self.unrolled.step(lambda h, x=x, y=y: self.train_loss(h, x, y))
            elif self.unrolled is not None:
                loss = self.unrolled.step(self.train_loss(loss_values, x, y))
            else:
                loss = self.train_loss(loss_values, x, y)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
            total += float(loss.detach()) * len(idx)
            self.steps += 1
            if self.learning and self.every and self.steps % self.every == 0:
                self.hyperstep()
                loss_values = self.loss_hp.values() if self.loss_hp is not None else None
        if self.learning and self.every is None:
            self.hyperstep()
        self.epoch += 1
        metrics = {"epoch": self.epoch, "train_loss": total / self.size,
                   **evaluate(self.model, self.t, "val"), **evaluate(self.model, self.t, "test")}
        if self.updater is not None:  # the values now, hypergradients or not yet
            metrics.update(hparam_metrics(self.updater.values()))
        if self.last_policy is not None:
            metrics.update(self.last_policy.metrics())
        if self.last_step is not None:
            skipped = metrics.get(SKIPPED, 0.0)  # (the policy's)
            metrics.update(online_metrics(self.last_step, self.updater))
            metrics[SKIPPED] = max(metrics[SKIPPED], skipped)
        return metrics, self.current()

    def hyperstep(self) -> None:
        """Hypergradients at the current weights, then the online update."""
        results = []
        if self.implicit is not None:
            x, y = self.t["x_train"], self.t["y_train"]
            if self.hyper_batch is not None:
                idx = torch.as_tensor(self.rng.choice(self.size, self.hyper_batch, replace=False),
                                      device=self.device)
                x, y = x[idx], y[idx]
            results.append(self.implicit.hypergradients(lambda h: self.train_loss(h, x, y),
                                                        self.val_loss))
        if self.unrolled is not None:
            results.append(self.unrolled.hypergradients(self.val_loss))
        update = self.config.get("hyper_update", True)
        if results:
            self.last_result = combine(*results)
            if update:
                self.last_step = self.updater.step(*results)
        if update and self.learner is not None and self.last_rows is not None:
            self.learner.lr = self.optimizer_lr()  # the look-ahead's step: SGD's own
            rows = self.last_rows
            self.last_policy = self.learner.step(
                (self.t["x_train"][rows].reshape(-1, 1, 8, 8), self.t["y_train"][rows]),
                (self.t["x_val"].reshape(-1, 1, 8, 8), self.t["y_val"]))

    def current(self) -> Any:
        """The last hypergradients with the values now in use (what a report describes)."""
        if self.last_result is None:
            return None
        return self.last_result.at(self.updater.values())

    # ------------------------------------------------------------- persistence
    def write_policy(self, folder: str) -> None:
        """The learned policy as ``policy.yaml`` in ``folder`` (for ``autometa policy export``)."""
        policy_writer(self.policy.to_definition())(folder)

    def state_dict(self) -> dict[str, Any]:
        return {"hidden": int(self.config.get("hidden", 16)), "epoch": self.epoch,
                "steps": self.steps, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rng": self.rng.bit_generator.state,
                "updater": None if self.updater is None else self.updater.state_dict(),
                "implicit": None if self.implicit is None else self.implicit.state_dict(),
                "unrolled": None if self.unrolled is None else self.unrolled.state_dict(),
                "learner": None if self.learner is None else self.learner.state_dict(),
                "last_rows": self.last_rows}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Resume from ``state``; False (and nothing loaded) for another architecture."""
        if state.get("hidden") != int(self.config.get("hidden", 16)):
            return False
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.epoch, self.steps = int(state["epoch"]), int(state["steps"])
        if not self.config.get("hyper_update", True):
            # the values are the config's (a scheduler moves them): the warm start only
            if self.implicit is not None and state.get("implicit") is not None:
                self.implicit.solution = state["implicit"]["solution"]
            return True
        self.last_rows = state.get("last_rows")
        for part in ("updater", "implicit", "unrolled", "learner"):
            mine = getattr(self, part)
            if mine is not None and state.get(part) is not None:
                mine.load_state_dict(state[part])
        return True


def _damping(value: Any) -> float | str:
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"damping must be 'auto' or a number >= 0, got {value!r}")
    return float(value)


def _loss_hypergradient(value: Any) -> bool:
    """True for ``unrolled`` (the loss's hyperparameters through the steps), False for
    ``implicit``."""
    if value not in ("implicit", "unrolled"):
        raise ValueError(f"loss_hypergradient must be 'implicit' or 'unrolled', got {value!r}")
    return value == "unrolled"


def _carry(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"unroll_carry must be a number in [0, 1], got {value!r}")
    return float(value)


def _hyper_batch(value: Any, size: int) -> int | None:
    """None for the whole training split, else a subset size in [1, size]."""
    if value in ("all", None):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"hyper_batch must be 'all' or an integer >= 1, got {value!r}")
    return None if value >= size else value


def _get(nested: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        nested = nested[part]
    return nested


def _hparams(start: dict[str, Any], names: list[str], device: torch.device
             ) -> Hyperparameters | None:
    return Hyperparameters.from_config(start, LEARNABLE, names, device=device) if names else None


def train_digits_cnn_online(config: dict[str, Any]) -> None:
    """Tune function trainable (see the module docstring)."""
    from autometa.trainables.digits import trial_device
    from autometa.trial.tune import report_hypergradients, restore_state

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    device = trial_device()
    run = OnlineDigitsCNN(config, device)
    state = restore_state(map_location=device)
    if state is not None:
        run.load_state_dict(state)
    while run.epoch < int(config.get("epochs", 10)):
        metrics, result = run.train_epoch()
        report_hypergradients(result, metrics, state=run.state_dict(),
                              write=run.write_policy if run.policy is not None else None)

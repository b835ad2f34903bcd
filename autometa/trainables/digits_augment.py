"""The digits CNN trained on few labelled images, with an augmentation policy learned in-trial.

The training split keeps ``per_class`` images of each digit (low-data). A policy of
sub-policies (``policy``: lists of operation names, :mod:`autometa.augment.ops`) augments every
training batch; its probabilities and magnitudes are hyperparameters of the training loss,
learned by the in-trial hypergradient loop (:class:`~autometa.hypergrad.loop.HyperTrainer`:
``inner_steps`` weight steps, then one hyperstep against the validation split). With
``learn_policy: false`` the policy stays as initialized; with ``policy: []`` or ``none`` there is
no augmentation (the baseline; its checkpoints' ``policy.yaml`` says so). With an ``augment``
mapping instead, the policy is a point of a black-box policy space (RandAugment,
TrivialAugment, AutoAugment-style sub-policies: :mod:`autometa.augment.blackbox`) applied by
torchvision, and nothing is learned in-trial.
With ``policy: choice`` the policy is a :class:`~autometa.augment.choice.ChoicePolicy` (one
operation per image by learned weights, TrivialAugment's family with identity in it) learned
by :class:`~autometa.augment.learner.PolicyLearner` (look-ahead hypergradient, one hyperstep
per round): keys ``operations`` (all), ``identity`` (its starting weight; default uniform),
``ceiling`` (0.5), ``outer_lr`` (0.05), ``draws`` (1); its reports carry the learner's result
keys (``augment_entropy``, ``augment_moved``, ``augment_hypergrad_snr``, ...), written through
:func:`~autometa.trial.tune.report_hypergradients` as a user's own loop would.

Config keys (all optional): ``per_class`` (20), ``policy`` (:data:`DEFAULT_POLICY`),
``probability`` (0.1) and ``magnitude`` (0.1) to start from (near the identity: the
hypersteps raise what helps), ``temperature`` (0.5),
``learn_policy`` (true), ``rounds`` (40: reports, each after one hyperstep), ``inner_steps``
(5), ``batch_size`` (64), ``lr`` (0.05, SGD with momentum 0.9), ``hidden`` (16),
``method`` (``cg``; ``neumann`` with ``terms`` (0) and ``alpha`` (``lr``) is DADA's one-step
look-ahead), ``maxiter`` (10), ``damping`` (0.01), ``outer_lr`` (0.05), ``seed`` (0),
``fail_at_round`` (fault injection for tests: raise at that round unless restored). Batches and
augmentation draws depend only on the seed and the batch's index, so a trial restored from its
checkpoint goes on exactly as it would have.

Each report has ``train_loss``, ``val_loss``, ``val_accuracy``, ``test_loss``,
``test_accuracy``, ``heldout_loss`` and ``heldout_accuracy`` (the test split plus the training
images left unlabelled: 1,238 images at 20 per class, for measurements less noisy than the 359
of the test split alone), ``hparams/augment.probability.<i>``, ``hparams/augment.magnitude.<i>`` and
their ``hypergrad/...`` (i runs over sub-policy x operation), and a checkpoint with the loop's
state and the current policy as ``policy.yaml`` (``autometa policy export`` takes the best
trial's).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from autometa.augment.blackbox import augment_batch, make_transform
from autometa.augment.policy import AugmentationPolicy
from autometa.augment.policy_file import NO_AUGMENTATION, policy_writer
from autometa.data.digits import load_digits_splits
from autometa.hypergrad.loop import HyperTrainer
from autometa.trainables.digits import build_cnn, choice_policy_learner, evaluate, trial_device
from autometa.trial.tune import report_hypergradients, report_hyperstep, restore_trainer

DEFAULT_POLICY = [["rotate", "translate_x"], ["shear_x", "contrast"], ["scale", "translate_y"],
                  ["rotate", "cutout"], ["shear_y", "brightness"], ["sharpness", "rotate"],
                  ["translate_y", "scale"], ["cutout", "shear_x"]]
"""Eight sub-policies of two operations (geometric ones first: digits are not photographs)."""


def low_data_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` indices of each label, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:per_class]
              for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def train_digits_augment(config: dict[str, Any]) -> None:
    """Tune function trainable (see the module docstring)."""
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    device, seed = trial_device(), int(config.get("seed", 0))
    data = load_digits_splits(seed=0)
    keep = low_data_indices(data.y_train, int(config.get("per_class", 20)), seed)
    t = {name: torch.as_tensor(getattr(data, name), device=device)
         for name in ("x_val", "y_val", "x_test", "y_test")}
    unused = np.setdiff1d(np.arange(len(data.y_train)), keep)
    t["x_heldout"] = torch.cat([t["x_test"], torch.as_tensor(data.x_train[unused], device=device)])
    t["y_heldout"] = torch.cat([t["y_test"], torch.as_tensor(data.y_train[unused], device=device)])
    x = torch.as_tensor(data.x_train[keep], device=device).reshape(-1, 1, 8, 8)
    y = torch.as_tensor(data.y_train[keep], device=device)
    torch.manual_seed(seed)
    model = build_cnn(config).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=float(config.get("lr", 0.05)), momentum=0.9)
    if config.get("policy") == "choice":
        _train_choice(config, model, optimizer, x, y, t, seed)
        return
    transform = make_transform(config["augment"]) if "augment" in config else None
    subs = [] if "augment" in config or config.get("policy") == "none" else \
        config.get("policy", DEFAULT_POLICY)
    # no augmentation at all: the trial's policy file says so, for ``autometa policy export``
    none = policy_writer(NO_AUGMENTATION) if not subs and transform is None else None
    policy = AugmentationPolicy(subs, float(config.get("probability", 0.1)),
                                float(config.get("magnitude", 0.1)),
                                float(config.get("temperature", 0.5)), seed=seed) if subs else None
    hparams = policy.hyperparameters() if policy is not None else []

    def train_loss(view: Any, batch: Any, values: dict) -> torch.Tensor:
        images, labels, noise = batch
        if policy is not None:
            images = policy.train_images(images, noise, values)
        return nn.functional.cross_entropy(view(images.flatten(1)), labels)

    def val_loss(view: Any, batch: Any, values: dict) -> torch.Tensor:
        return nn.functional.cross_entropy(view(batch[0]), batch[1])

    inner = int(config.get("inner_steps", 5))
    trainer = HyperTrainer(model, optimizer, hparams, train_loss, val_loss, inner_steps=inner,
                           method=config.get("method", "cg"),
                           method_options=_method_options(config),
                           damping=float(config.get("damping", 1e-2)),
                           outer_lr=float(config.get("outer_lr", 0.05))) if hparams else None
    batch_size = int(config.get("batch_size", 64))

    def batches(index: int) -> Any:
        """Batch ``index`` onwards; each one a function of (seed, index) only, so a restored
        trial continues with the batches and draws it would have had."""
        per_epoch = -(-len(y) // batch_size)
        while True:
            epoch, i = divmod(index, per_epoch)
            order = torch.as_tensor(np.random.default_rng([seed, epoch]).permutation(len(y)),
                                    device=device)
            rows = order[i * batch_size:(i + 1) * batch_size]
            noise = None
            if policy is not None:
                policy.generator.manual_seed(seed * 1_000_003 + index)
                noise = policy.sample_noise(x[rows])
            index += 1
            yield x[rows], y[rows], noise

    restored = trainer is not None and restore_trainer(trainer)
    start = trainer.steps if restored else 0
    stream = batches(start * inner)
    fail_at = None if restored else config.get("fail_at_round")
    learn = bool(config.get("learn_policy", True))
    for round_ in range(int(start), int(config.get("rounds", 40))):
        if fail_at is not None and round_ == int(fail_at):
            raise RuntimeError(f"fault injected at round {round_} (fail_at_round)")
        if trainer is None:
            metrics = {"train_loss": _plain_steps(model, optimizer, stream, inner, transform),
                       **_evaluate_all(model, t)}
            report_hypergradients(None, metrics, write=none)
            continue
        result = trainer.step(stream, (t["x_val"], t["y_val"]), update=learn)
        trainer.steps += 0 if learn else 1  # a round counts even when nothing is learned
        values = trainer.values()
        policy.load_values(values["augment.probability"], values["augment.magnitude"])
        report_hyperstep(trainer, result, _evaluate_all(model, t),
                         write=policy_writer(policy.to_definition()))


def _train_choice(config: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
                  x: torch.Tensor, y: torch.Tensor, t: dict, seed: int) -> None:
    """``policy: choice``: the public API a user's own loop would use (PolicyLearner,
    report_hypergradients, restore_state)."""
    from autometa.trial.tune import report_hypergradients, restore_state

    policy, learner = choice_policy_learner(config, model, float(config.get("lr", 0.05)), seed,
                                            float(config.get("outer_lr", 0.05)))
    net = learner.model
    state = restore_state(map_location=x.device)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        learner.load_state_dict(state["learner"])
        start = state["round"] + 1
    fail_at = None if state is not None else config.get("fail_at_round")
    inner, batch_size = int(config.get("inner_steps", 5)), int(config.get("batch_size", 64))
    per_epoch = -(-len(y) // batch_size)
    val = (t["x_val"].reshape(-1, 1, 8, 8), t["y_val"])
    for round_ in range(start, int(config.get("rounds", 40))):
        if fail_at is not None and round_ == int(fail_at):
            raise RuntimeError(f"fault injected at round {round_} (fail_at_round)")
        losses = []
        net.train()
        for index in range(round_ * inner, (round_ + 1) * inner):
            epoch, i = divmod(index, per_epoch)  # batches and draws: functions of (seed, index)
            order = torch.as_tensor(np.random.default_rng([seed, epoch]).permutation(len(y)),
                                    device=x.device)
            rows = order[i * batch_size:(i + 1) * batch_size]
            policy.generator.manual_seed(seed * 1_000_003 + index)
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(net(policy(x[rows])), y[rows])
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        result = learner.step((x[rows], y[rows]), val)
        metrics = {"train_loss": sum(losses) / len(losses), **_evaluate_all(model, t),
                   "hyperstep": learner.steps}
        report_hypergradients(result, metrics,
                              state={"model": model.state_dict(),
                                     "optimizer": optimizer.state_dict(),
                                     "learner": learner.state_dict(), "round": round_},
                              write=policy_writer(policy.to_definition()))


def _evaluate_all(model: nn.Module, t: dict) -> dict[str, float]:
    return {**evaluate(model, t, "val"), **evaluate(model, t, "test"),
            **evaluate(model, t, "heldout")}


def _method_options(config: dict[str, Any]) -> dict[str, Any]:
    """Solver options: ``maxiter`` (cg, fixed point), or ``terms`` and ``alpha`` (Neumann;
    ``terms: 0`` with ``alpha`` the learning rate is DADA's one-step look-ahead)."""
    if config.get("method", "cg") == "neumann":
        return {"terms": int(config.get("terms", 0)),
                "alpha": float(config.get("alpha", config.get("lr", 0.05)))}
    return {"maxiter": int(config.get("maxiter", 10))}


def _plain_steps(model: nn.Module, optimizer: torch.optim.Optimizer, stream: Any,
                 steps: int, transform: Any) -> float:
    model.train()
    losses = []
    for images, labels, _ in itertools.islice(stream, steps):
        optimizer.zero_grad()
        images = augment_batch(images, transform)
        loss = nn.functional.cross_entropy(model(images.flatten(1)), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return sum(losses) / len(losses)

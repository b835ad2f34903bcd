"""The digits CNN trained on few labelled images, with an augmentation policy learned in-trial.

The training split keeps ``per_class`` images of each digit (low-data). A policy of
sub-policies (``policy``: lists of operation names, :mod:`autometa.augment.ops`) augments every
training batch; its probabilities and magnitudes are hyperparameters of the training loss,
learned by the in-trial hypergradient loop (:class:`~autometa.hypergrad.loop.HyperTrainer`:
``inner_steps`` weight steps, then one hyperstep against the validation split). With
``learn_policy: false`` the policy stays as initialized; with ``policy: []`` there is no
augmentation (the baseline). With an ``augment`` mapping instead, the policy is a point of a
black-box policy space (RandAugment, TrivialAugment, AutoAugment-style sub-policies:
:mod:`autometa.augment.blackbox`) applied by torchvision, and nothing is learned in-trial.

Config keys (all optional): ``per_class`` (20), ``policy`` (:data:`DEFAULT_POLICY`),
``probability`` (0.3) and ``magnitude`` (0.3) to start from, ``temperature`` (0.5),
``learn_policy`` (true), ``rounds`` (40: reports, each after one hyperstep), ``inner_steps``
(5), ``batch_size`` (64), ``lr`` (0.05, SGD with momentum 0.9), ``hidden`` (16),
``method`` (``cg``), ``maxiter`` (10), ``damping`` (0.01), ``outer_lr`` (0.05), ``seed`` (0).

Each report has ``train_loss``, ``val_loss``, ``val_accuracy``, ``test_loss``,
``test_accuracy``, ``hparams/augment.probability.<i>``, ``hparams/augment.magnitude.<i>`` and
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
from ray import tune
from torch import nn

from autometa.augment.blackbox import augment_batch, make_transform
from autometa.augment.policy import AugmentationPolicy
from autometa.augment.policy_file import save_policy
from autometa.data.digits import load_digits_splits
from autometa.hypergrad.loop import HyperTrainer
from autometa.trainables.digits import build_cnn, evaluate, trial_device
from autometa.trial.tune import report_hyperstep, restore_trainer

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
    x = torch.as_tensor(data.x_train[keep], device=device).reshape(-1, 1, 8, 8)
    y = torch.as_tensor(data.y_train[keep], device=device)
    torch.manual_seed(seed)
    model = build_cnn(config).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=float(config.get("lr", 0.05)), momentum=0.9)
    transform = make_transform(config["augment"]) if "augment" in config else None
    subs = [] if "augment" in config else config.get("policy", DEFAULT_POLICY)
    policy = AugmentationPolicy(subs, float(config.get("probability", 0.3)),
                                float(config.get("magnitude", 0.3)),
                                float(config.get("temperature", 0.5)), seed=seed) if subs else None
    hparams = policy.hyperparameters() if policy is not None else []

    def train_loss(view: Any, batch: Any, values: dict) -> torch.Tensor:
        images, labels, noise = batch
        if policy is not None:
            images = policy.train_images(images, noise, values)
        return nn.functional.cross_entropy(view(images.flatten(1)), labels)

    def val_loss(view: Any, batch: Any, values: dict) -> torch.Tensor:
        return nn.functional.cross_entropy(view(batch[0]), batch[1])

    trainer = HyperTrainer(model, optimizer, hparams, train_loss, val_loss,
                           inner_steps=int(config.get("inner_steps", 5)),
                           method=config.get("method", "cg"),
                           method_options=_method_options(config),
                           damping=float(config.get("damping", 1e-2)),
                           outer_lr=float(config.get("outer_lr", 0.05))) if hparams else None
    rng = np.random.default_rng(seed)
    batch_size = int(config.get("batch_size", 64))

    def batches() -> Any:
        while True:
            order = torch.as_tensor(rng.permutation(len(y)), device=device)
            for i in range(0, len(y), batch_size):
                rows = order[i:i + batch_size]
                noise = policy.sample_noise(x[rows]) if policy is not None else None
                yield x[rows], y[rows], noise

    stream = batches()
    start = trainer.steps if trainer is not None and restore_trainer(trainer) else 0
    learn = bool(config.get("learn_policy", True))
    for _ in range(int(start), int(config.get("rounds", 40))):
        if trainer is None:
            metrics = {"train_loss": _plain_steps(model, optimizer, stream,
                                                  int(config.get("inner_steps", 5)), transform),
                       **evaluate(model, t, "val"), **evaluate(model, t, "test")}
            tune.report(metrics)
            continue
        result = trainer.step(stream, (t["x_val"], t["y_val"]), update=learn)
        trainer.steps += 0 if learn else 1  # a round counts even when nothing is learned
        values = trainer.values()
        policy.load_values(values["augment.probability"], values["augment.magnitude"])
        report_hyperstep(trainer, result, {**evaluate(model, t, "val"), **evaluate(model, t, "test")},
                         write=lambda folder: save_policy(policy.to_definition(),
                                                          os.path.join(folder, "policy.yaml")))


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

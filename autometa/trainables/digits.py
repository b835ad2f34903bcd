"""The built-in example: a small MLP or CNN on scikit-learn's 8x8 digits, in PyTorch.

Config keys (all optional):

============== ============ ==================================================
key            default      meaning
============== ============ ==================================================
lr             0.05         learning rate
optimizer      ``sgd``      ``sgd``/``adam``, or a nested choice
                            ``{name: sgd, momentum: 0.9}`` / ``{name: adam, beta1: 0.9}``
momentum       0.0          SGD momentum (when ``optimizer`` is a plain name)
weight_decay   0.0          L2 penalty
batch_size     64           minibatch size
hidden         64           hidden width (MLP) or channels (CNN)
layers         1            hidden layers (MLP)
dropout        0.0          dropout probability
activation     ``relu``     ``relu``/``tanh``/``gelu``
epochs         20           epochs (one report each)
seed           0            seed of weights and minibatch order
data_seed      0            seed of the train/validation/test split
folds          (none)       k-fold cross-validation over train + validation: ``fold``
fold           0            (0..k-1) validates, the rest trains; the test split stays.
                            For racing: ``instance_key: fold`` (or ``seed``: one
                            instance per weight seed)
fail_at_epoch  (none)       fault injection for tests: raise at this epoch unless the
                            trial was restored from a checkpoint
============== ============ ==================================================

Each epoch reports ``train_loss``, ``val_loss``, ``val_accuracy``, ``test_loss``,
``test_accuracy`` and ``epoch``, with a checkpoint (weights, optimizer, epoch), so
ASHA/Hyperband can stop it and Tune can pause and resume it exactly.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import torch
from ray import tune
from torch import nn

from autometa.data.digits import cross_validation_fold, load_digits_splits

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def trial_device() -> torch.device:
    """The GPU Ray assigned to this trial, or the CPU when none was."""
    import ray

    try:
        gpus = ray.get_gpu_ids()
    except Exception:  # noqa: BLE001 - outside a Ray worker
        gpus = []
    return torch.device("cuda:0") if gpus and torch.cuda.is_available() else torch.device("cpu")


def build_mlp(config: dict[str, Any]) -> nn.Module:
    width, act = int(_get(config, "hidden", 64)), _activation(config)
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = 64
    for _ in range(int(_get(config, "layers", 1))):
        layers += [nn.Linear(fan_in, width), act(), nn.Dropout(float(_get(config, "dropout", 0.0)))]
        fan_in = width
    layers.append(nn.Linear(fan_in, 10))
    return nn.Sequential(*layers)


def build_cnn(config: dict[str, Any]) -> nn.Module:
    ch, act = int(_get(config, "hidden", 16)), _activation(config)
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, ch, 3, padding=1), nn.BatchNorm2d(ch), act(), nn.MaxPool2d(2),
        nn.Conv2d(ch, 2 * ch, 3, padding=1), nn.BatchNorm2d(2 * ch), act(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(float(_get(config, "dropout", 0.0))), nn.Linear(8 * ch, 10),
    )


def train_digits_mlp(config: dict[str, Any]) -> None:
    """Tune function trainable: the MLP on digits."""
    _train(config, build_mlp)


def train_digits_cnn(config: dict[str, Any]) -> None:
    """Tune function trainable: a two-layer CNN (with BatchNorm) on digits."""
    _train(config, build_cnn)


def _get(config: dict[str, Any], key: str, default: Any) -> Any:
    """``config[key]``, or ``default`` when absent or None (an inactive conditional parameter)."""
    value = config.get(key)
    return default if value is None else value


def _activation(config: dict[str, Any]) -> type[nn.Module]:
    name = _get(config, "activation", "relu")
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]


def make_optimizer(config: dict[str, Any], params: Any) -> torch.optim.Optimizer:
    """Build the optimizer named by ``config['optimizer']`` (a name or a nested choice)."""
    spec = _get(config, "optimizer", "sgd")
    opts = dict(spec) if isinstance(spec, dict) else {"name": spec}
    name = opts.pop("name", "sgd")
    lr = float(opts.pop("lr", _get(config, "lr", 0.05)))
    wd = float(_get(config, "weight_decay", 0.0))
    if name == "sgd":
        momentum = _get(opts, "momentum", _get(config, "momentum", 0.0))
        return torch.optim.SGD(params, lr=lr, momentum=float(momentum), weight_decay=wd)
    if name == "adam":
        betas = (float(opts.get("beta1", 0.9)), float(opts.get("beta2", 0.999)))
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load the optimizer's moments from ``state`` but keep its current hyperparameters.

    ``Optimizer.load_state_dict`` also restores the learning rate and the other settings of
    each parameter group; a trial restored under a new config (PBT's exploit) must train
    with the new ones.
    """
    settings = [{k: v for k, v in group.items() if k != "params"}
                for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kept in zip(optimizer.param_groups, settings, strict=True):
        group.update(kept)


def _train(config: dict[str, Any], build: Any) -> None:
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    device = trial_device()
    data = load_digits_splits(seed=int(_get(config, "data_seed", 0)))
    if config.get("folds") is not None:  # cross-validation: one instance per fold (racing)
        data = cross_validation_fold(data, int(_get(config, "fold", 0)), int(config["folds"]),
                                     seed=int(_get(config, "data_seed", 0)))
    torch.manual_seed(int(_get(config, "seed", 0)))
    model = build(config).to(device)
    optimizer = make_optimizer(config, model.parameters())
    rng = np.random.default_rng(int(_get(config, "seed", 0)))
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as path:
            state = torch.load(os.path.join(path, "state.pt"), map_location=device)
        model.load_state_dict(state["model"])
        load_optimizer_state(optimizer, state["optimizer"])
        rng.bit_generator.state = state["rng"]
        start = state["epoch"]
    tensors = {name: torch.as_tensor(getattr(data, name), device=device)
               for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
    batch = int(_get(config, "batch_size", 64))
    loss_fn = nn.CrossEntropyLoss()
    fail_at = None if checkpoint is not None else config.get("fail_at_epoch")
    for epoch in range(start + 1, int(_get(config, "epochs", 20)) + 1):
        if fail_at is not None and epoch == int(fail_at):
            raise RuntimeError(f"fault injected at epoch {epoch} (fail_at_epoch)")
        model.train()
        order = torch.as_tensor(rng.permutation(len(data.y_train)), device=device)
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            optimizer.zero_grad()
            loss = loss_fn(model(tensors["x_train"][idx]), tensors["y_train"][idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        metrics = {"epoch": epoch, "train_loss": total / len(order)}
        metrics.update(evaluate(model, tensors, "val", loss_fn))
        metrics.update(evaluate(model, tensors, "test", loss_fn))
        with tempfile.TemporaryDirectory() as path:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "rng": rng.bit_generator.state, "epoch": epoch},
                       os.path.join(path, "state.pt"))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(path))


def choice_policy_learner(config: dict[str, Any], model: nn.Module, lr: float, seed: int,
                          outer_lr: float) -> tuple[Any, Any]:
    """The digits trainables' learned augmentation: a
    :class:`~autometa.augment.choice.ChoicePolicy` from ``operations``, ``identity`` and
    ``ceiling`` (0.5) of ``config``, and its :class:`~autometa.augment.learner.PolicyLearner`
    (``draws``: 1) for ``model`` (which reads flat images) at the SGD step ``lr``."""
    from autometa.augment.choice import DEFAULT_OPERATIONS, ChoicePolicy
    from autometa.augment.learner import PolicyLearner

    policy = ChoicePolicy(config.get("operations", DEFAULT_OPERATIONS), config.get("identity"),
                          float(config.get("ceiling", 0.5)), seed=seed)

    def per_image(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs, targets, reduction="none")

    learner = PolicyLearner(policy, nn.Sequential(nn.Flatten(), model), per_image, lr=lr,
                            outer_lr=outer_lr, draws=int(config.get("draws", 1)))
    return policy, learner


@torch.no_grad()
def evaluate(model: nn.Module, tensors: dict, split: str,
             loss_fn: nn.Module | None = None) -> dict[str, float]:
    """``<split>_loss`` (cross-entropy unless ``loss_fn``) and ``<split>_accuracy`` of ``model``
    on ``tensors["x_<split>"]``, ``tensors["y_<split>"]``."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.eval()
    logits = model(tensors[f"x_{split}"])
    y = tensors[f"y_{split}"]
    return {f"{split}_loss": float(loss_fn(logits, y)),
            f"{split}_accuracy": float((logits.argmax(1) == y).float().mean())}

"""Lines a user adds to a plain Tune trainable to report checked hypergradients: the API against
writing it by hand with the functional engine (what the first wave offered).

Three versions of one trainable (the MLP of examples/bring_your_own_model.py, reduced to its
loop): ``plain`` reports val_loss; ``with_api`` adds the hypergradient with autometa's trial
API; ``by_hand`` adds the same with :func:`autometa.hypergrad.hypergradient` only: the losses
rewritten as functions of ``(params, hparams)`` through ``torch.func.functional_call``, the log
transform and the chain rule to value units written out, the result keys spelled, the checkpoint
written and read. The script counts the lines each adds to ``plain`` (``difflib``, blank lines
and comments left out) and checks that both report the same hypergradient.

    python benchmarks/byom_lines.py
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import tempfile

import torch
from torch import nn

SPACE = {"parameters": {"weight_decay": {"type": "loguniform", "low": 1e-3, "high": 1.0,
                                         "differentiable": True}}}


def plain(config, data, report):
    x, y, xv, yv = data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 16), nn.Tanh(), nn.Linear(16, 2)).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def train_loss(wd):
        decay = sum((p ** 2).sum() for name, p in model.named_parameters() if "weight" in name)
        return nn.functional.cross_entropy(model(x), y) + 0.5 * wd * decay

    for _ in range(config["epochs"]):
        for _ in range(200):
            optimizer.zero_grad()
            train_loss(config["weight_decay"]).backward()
            optimizer.step()
        with torch.no_grad():
            val = float(nn.functional.cross_entropy(model(xv), yv))
        report({"val_loss": val})


def with_api(config, data, report):
    import autometa
    from autometa.space import space_from_dict

    x, y, xv, yv = data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 16), nn.Tanh(), nn.Linear(16, 2)).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    hp = autometa.Hyperparameters.from_config(config, space_from_dict(SPACE), dtype=torch.float64)
    engine = autometa.ImplicitEngine(model, hp)

    def train_loss(hp):
        decay = sum((p ** 2).sum() for name, p in model.named_parameters() if "weight" in name)
        return nn.functional.cross_entropy(model(x), y) + 0.5 * hp["weight_decay"] * decay

    state = autometa.restore_state()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    for _ in range(config["epochs"]):
        for _ in range(200):
            optimizer.zero_grad()
            train_loss(hp).backward()
            optimizer.step()
        result = engine.hypergradients(train_loss,
                                       lambda hp: nn.functional.cross_entropy(model(xv), yv))
        autometa.report_hypergradients(result, {"val_loss": result.val_loss}, state={
            "model": model.state_dict(), "optimizer": optimizer.state_dict()})


def by_hand(config, data, report):
    from ray import tune

    from autometa.hypergrad import hypergradient

    x, y, xv, yv = data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 16), nn.Tanh(), nn.Linear(16, 2)).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def train_loss(wd):
        decay = sum((p ** 2).sum() for name, p in model.named_parameters() if "weight" in name)
        return nn.functional.cross_entropy(model(x), y) + 0.5 * wd * decay

    def functional_train(params, hparams):
        out = torch.func.functional_call(model, params, (x,))
        decay = sum((p ** 2).sum() for name, p in params.items() if "weight" in name)
        return nn.functional.cross_entropy(out, y) + 0.5 * torch.exp(hparams["u"]) * decay

    def functional_val(params, hparams):
        return nn.functional.cross_entropy(torch.func.functional_call(model, params, (xv,)), yv)

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(os.path.join(folder, "state.pt"), weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    for _ in range(config["epochs"]):
        for _ in range(200):
            optimizer.zero_grad()
            train_loss(config["weight_decay"]).backward()
            optimizer.step()
        params = {n: p.detach() for n, p in model.named_parameters()}
        u = torch.tensor(math.log(config["weight_decay"]), dtype=torch.float64)
        grads, info = hypergradient(functional_train, functional_val, params, {"u": u},
                                    return_info=True)
        with torch.no_grad():
            val = float(functional_val(params, {"u": u}))
        metrics = {"val_loss": val, "hparams/weight_decay": config["weight_decay"],
                   "hypergrad/weight_decay": float(grads["u"]) / config["weight_decay"],
                   "hypergrad_converged": float(info.converged),
                   "hypergrad_residual": info.relative_residual,
                   "hypergrad_inner_gap": info.inner_gap}
        with tempfile.TemporaryDirectory() as folder:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                       os.path.join(folder, "state.pt"))
            report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def code_lines(function) -> list[str]:
    lines = inspect.getsource(function).splitlines()[1:]          # without the def line
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def added(version) -> int:
    diff = difflib.ndiff(code_lines(plain), code_lines(version))
    return sum(1 for line in diff if line.startswith("+ "))


def check_same_hypergradient() -> tuple[float, float]:
    """Run both versions as real Tune trials and compare the hypergradients they reported."""
    import numpy as np
    import ray
    from ray import tune
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x = (x - x[:300].mean(0)) / x[:300].std(0)
    data = (torch.tensor(x[:300]), torch.tensor(y[:300]), torch.tensor(x[300:]),
            torch.tensor(y[300:]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out = []
    for version in (with_api, by_hand):
        def trainable(config, version=version):
            version(config, data, tune.report)

        with tempfile.TemporaryDirectory() as storage:
            result = tune.Tuner(trainable, param_space={"weight_decay": 0.02, "epochs": 2},
                                run_config=tune.RunConfig(storage_path=storage, verbose=0)
                                ).fit()[0]
        out.append(result.metrics["hypergrad/weight_decay"])
    ray.shutdown()
    return out[0], out[1]


def main() -> None:
    api, hand = check_same_hypergradient()
    print(f"same hypergradient reported: API {api:.8g}, by hand {hand:.8g}")
    print(f"lines added to the plain trainable: API {added(with_api)}, "
          f"by hand {added(by_hand)}")


if __name__ == "__main__":
    main()

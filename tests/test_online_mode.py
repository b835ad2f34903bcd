"""The online mode: hyperparameters moved during one run from the hypergradients it takes
(``autometa.hypergrad.online``), and the built-in CNN that learns its decays, label smoothing,
learning rate and momentum that way."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from autometa.hypergrad import HypergradientInfo, Hypergradients, Hyperparameters
from autometa.hypergrad.families import Hyperparameter, LogTransform
from autometa.hypergrad.online import OnlineUpdater, adam_direction
from autometa.space import space_from_dict

SPACE = space_from_dict({"parameters": {
    "decay": {"type": "loguniform", "low": 1e-6, "high": 1e-1, "differentiable": True},
    "smoothing": {"type": "uniform", "low": 0.0, "high": 0.3, "differentiable": True}}})


def _hp(decay=1e-3, smoothing=0.1) -> Hyperparameters:
    return Hyperparameters.from_config({"decay": decay, "smoothing": smoothing}, SPACE)


def _result(grads, converged=True, residual=0.0, finite=True) -> Hypergradients:
    info = HypergradientInfo(converged, residual, finite=finite,
                             message="" if converged else "unconverged")
    return Hypergradients({n: torch.tensor(g) for n, g in grads.items()}, {}, 0.0, info)


def test_adam_direction_is_adams():
    p = torch.nn.Parameter(torch.tensor([0.3, -1.0]))
    opt = torch.optim.Adam([p], lr=1.0)
    m = v = torch.zeros(2)
    for t, g in enumerate([torch.tensor([0.5, 2.0]), torch.tensor([-1.0, 0.1])], 1):
        before = p.detach().clone()
        p.grad = g.clone()
        opt.step()
        d, m, v = adam_direction(g, m, v, t)
        assert torch.allclose(before - d, p.detach(), atol=1e-7)


def test_the_chain_rule_through_each_transform_inverts_value_grads():
    hp = _hp()
    value_grads = {"decay": torch.tensor(3.0), "smoothing": torch.tensor(-0.5)}
    back = hp.value_grads(hp.raw_grads(value_grads))
    for name, g in value_grads.items():
        assert float(back[name]) == pytest.approx(float(g), rel=1e-6)


def test_a_positive_hypergradient_lowers_the_value_and_the_first_step_is_lr_in_log_units():
    hp = _hp(decay=1e-3)
    updater = OnlineUpdater(hp, lr=0.1)
    step = updater.step(_result({"decay": 5.0, "smoothing": -1.0}))
    assert step.moved and step.trust == 1.0
    # Adam's first step is lr * sign(g) in the unconstrained coordinate: log(decay) - 0.1
    assert math.log(float(hp["decay"])) == pytest.approx(math.log(1e-3) - 0.1, abs=1e-6)
    assert float(hp["smoothing"]) > 0.1  # a negative one raises it
    assert step.before["decay"] == pytest.approx(1e-3) and step.after["decay"] < 1e-3


def test_values_never_leave_their_bounds():
    hp = _hp(decay=0.09, smoothing=0.29)
    updater = OnlineUpdater(hp, lr=2.0)
    for _ in range(20):
        updater.step(_result({"decay": -100.0, "smoothing": -100.0}))
    assert 1e-6 <= float(hp["decay"]) <= 0.1 and 0.0 <= float(hp["smoothing"]) <= 0.3
    assert float(hp["decay"]) == pytest.approx(0.1, rel=1e-4)


def test_an_unconverged_hypergradient_shortens_only_its_own_part_of_the_step():
    a, b = _hp(), Hyperparameters([Hyperparameter.from_value("lr", 0.05, LogTransform())])
    updater = OnlineUpdater(a, b, lr=0.1)
    step = updater.step(_result({"decay": 1.0, "smoothing": 1.0}, converged=False,
                                residual=0.5), _result({"lr": 1.0}))
    assert step.trust == pytest.approx(0.5) and "decay, smoothing" in step.message
    assert math.log(float(a["decay"])) == pytest.approx(math.log(1e-3) - 0.05, abs=1e-6)
    assert math.log(float(b["lr"])) == pytest.approx(math.log(0.05) - 0.1, abs=1e-6)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_hypergradient_moves_nothing(bad):
    hp = _hp()
    updater = OnlineUpdater(hp, lr=0.1)
    before = hp.state_dict()
    step = updater.step(_result({"decay": bad, "smoothing": 1.0}))
    assert not step.moved and step.trust == 0.0 and updater.skipped == 1
    assert all(torch.equal(before[n], hp.state_dict()[n]) for n in before)
    step = updater.step(_result({"decay": 1.0}, finite=False))
    assert not step.moved and updater.skipped == 2 and updater.steps == 0


def test_hypergradients_for_a_name_it_does_not_hold_are_an_error():
    with pytest.raises(ValueError, match=r"hypergradients for \['lr'\]"):
        OnlineUpdater(_hp()).step(_result({"lr": 1.0}))
    with pytest.raises(ValueError, match="in two of"):
        OnlineUpdater(_hp(), _hp())


def test_the_updater_resumes_exactly():
    grads = [{"decay": 2.0, "smoothing": -1.0}, {"decay": -0.5, "smoothing": 0.2},
             {"decay": 1.0, "smoothing": 1.0}]
    hp = _hp()
    straight = OnlineUpdater(hp, lr=0.1)
    for g in grads:
        straight.step(_result(g))
    hp2 = _hp()
    first = OnlineUpdater(hp2, lr=0.1)
    first.step(_result(grads[0]))
    saved = first.state_dict()
    hp3 = _hp(decay=0.05, smoothing=0.2)  # elsewhere: the state puts it back
    resumed = OnlineUpdater(hp3, lr=0.1)
    resumed.load_state_dict(saved)
    for g in grads[1:]:
        resumed.step(_result(g))
    assert all(torch.equal(hp.state_dict()[n], hp3.state_dict()[n]) for n in hp.names)


# ------------------------------------------------------------- the built-in CNN
CONFIG = {"train_size": 200, "hidden": 4, "batch_size": 50, "hyper_every": 2, "seed": 0,
          "maxiter": 5}


def _run(config=None):
    from autometa.trainables.digits_cnn_online import OnlineDigitsCNN

    torch.set_num_threads(1)
    return OnlineDigitsCNN({**CONFIG, **(config or {})})


def test_the_cnn_learns_every_hyperparameter_inside_its_bounds():
    from autometa.trainables.digits_cnn_online import LEARNABLE, LEARNABLE_GROUPS

    assert set(_run().updater.values()) == {"lr", "momentum", "smoothing", "decay.conv1",
                                            "decay.conv2", "decay.fc"}  # the default
    run = _run({"learn": list(LEARNABLE_GROUPS)})
    start = {n: float(v) for n, v in run.updater.values().items()}
    assert set(start) == {p.key for p in LEARNABLE.parameters}
    assert {n for n in start if n.startswith("class_weight.")} == {f"class_weight.c{c}"
                                                                   for c in range(10)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unconverged solves early in training: reported
        for _ in range(2):
            metrics, result = run.train_epoch()
    assert metrics["hypersteps"] == 4.0 and metrics["hyperstep_skipped"] == 0.0
    keys = result.metrics()
    for p in LEARNABLE.parameters:
        value = keys[f"hparams/{p.key}"]
        assert value != start[p.key], p.key  # moved
        assert p.low <= value <= p.high and math.isfinite(keys[f"hypergrad/{p.key}"])
    assert 0.0 < metrics["hyperstep_trust"] <= 1.0 and "hypergrad_converged" in keys


def test_what_is_not_learned_stays_at_its_config_value():
    run = _run({"learn": ["lr"], "momentum": 0.5, "decay": 1e-3, "smoothing": 0.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.train_epoch()
    assert set(run.updater.values()) == {"lr"}
    assert run.optimizer.param_groups[0]["momentum"] == 0.5
    assert float(run.fixed["decay.fc"]) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="learn: unknown"):
        _run({"learn": ["dropout"]})


@pytest.mark.parametrize("config", [
    {}, {"hyper_batch": 60, "damping": 1e-3},
    {"augment": "choice", "learn": ["decay", "class_weight", "lr"]},
    {"unroll_carry": 1.0, "learn": ["lr", "momentum"]},
    {"unroll_carry": 1.0, "loss_hypergradient": "unrolled"}],
    ids=["whole-split", "minibatch-solves", "augment-and-class-weights", "whole-run-unroll",
         "loss-through-the-steps"])
def test_the_cnn_resumes_exactly_from_its_state(config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        straight = _run(config)
        for _ in range(2):
            straight.train_epoch()
        first = _run(config)
        first.train_epoch()
        state = first.state_dict()
        resumed = _run(config)
        assert resumed.load_state_dict(state)
        resumed.train_epoch()
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    for name, value in straight.updater.values().items():
        assert float(resumed.updater.values()[name]) == pytest.approx(float(value), rel=1e-6)
    assert not _run({"hidden": 5}).load_state_dict(state)  # another architecture


@pytest.mark.slow
def test_the_hybrid_file_runs_and_each_trial_reports_its_trajectory(tmp_path, ray_session, capsys):
    """``search_spaces/online_hybrid.yaml`` (PBT over the discrete parts, the online mode
    inside each trial), shortened: every trial finishes, and each one's reports show its
    learned values moving from the config's start."""
    import glob
    import json
    import os

    import yaml

    from autometa.launch.cli import main

    doc = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), os.pardir,
                                           "search_spaces", "online_hybrid.yaml")))
    doc["experiment"].update(num_samples=2, storage_path=str(tmp_path / "results"))
    doc["parameters"].update(epochs=2, train_size=100, hyper_every=2, maxiter=5,
                             hidden={"type": "choice", "values": [4]},
                             batch_size={"type": "choice", "values": [25]})
    doc["experiment"]["scheduler"]["hyperparam_mutations"] = {"batch_size": [25, 50]}
    path = tmp_path / "hybrid.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["run", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Trials: 2 of 2 planned finished" in out
    assert "Learned during the trial (hparams/<name>, first report -> last" in out and \
        "lr " in out.split("Learned during the trial")[1], out
    files = glob.glob(str(tmp_path / "results" / "*" / "*" / "result.json"))
    assert len(files) == 2
    for file in files:
        rows = [json.loads(line) for line in open(file)]
        assert len(rows) == 2
        start = rows[0]["config"]["lr"]
        assert all(r["hparams/lr"] != start for r in rows) and rows[0]["hparams/lr"] != \
            rows[1]["hparams/lr"]
        assert {"hypergrad/decay.conv1", "hypergrad/smoothing", "hyperstep_trust"} <= set(rows[1])
    folder = os.path.dirname(os.path.dirname(files[0]))
    assert main(["show", folder, "--no-html"]) == 0
    shown = capsys.readouterr().out
    assert "Learned during the trial" in shown and "trajectory_lr.png" in shown, shown


def test_report_only_mode_takes_hypergradients_and_keeps_the_config_values():
    """``hyper_update: false`` (for a population scheduler that moves the values itself):
    each epoch ends with hypergradients, nothing moves, and a restored checkpoint does not
    bring back the donor's values over the config's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = _run({"learn": ["decay", "smoothing"], "hyper_update": False,
                    "hyper_every": "epoch", "smoothing": 0.1})
        metrics, result = run.train_epoch()
        state = run.state_dict()
        moved = _run({"learn": ["decay", "smoothing"], "hyper_update": False,
                      "hyper_every": "epoch", "smoothing": 0.2})
        assert moved.load_state_dict(state)
    keys = result.metrics()
    assert keys["hparams/smoothing"] == pytest.approx(0.1) and "hyperstep_trust" not in metrics
    assert math.isfinite(keys["hypergrad/smoothing"]) and math.isfinite(keys["hypergrad/decay.fc"])
    assert float(moved.updater.values()["smoothing"]) == pytest.approx(0.2)


def test_minibatch_solves_take_a_fresh_subset_each_hyperstep_and_bad_values_are_refused():
    from autometa.trainables.digits_cnn_online import OnlineDigitsCNN

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole, sub = _run({"learn": "decay"}), _run({"learn": "decay", "hyper_batch": 40})
        drawn = []
        train_loss = sub.train_loss
        sub.train_loss = lambda hp, x, y: drawn.append(x) or train_loss(hp, x, y)
        whole.train_epoch()
        sub.train_epoch()
    # 4 training steps of 50 and 2 hypersteps (every 2 steps), each on 40 drawn samples
    assert sorted(len(x) for x in drawn) == [40, 40, 50, 50, 50, 50]
    first, second = (x for x in drawn if len(x) == 40)
    assert not torch.equal(first, second)  # a fresh draw
    a = whole.last_result.grads["decay.fc"]
    b = sub.last_result.grads["decay.fc"]
    assert float(a) != float(b)  # another system than the whole split's
    assert _run({"hyper_batch": 10_000}).hyper_batch is None  # at least the split: all of it
    for key, bad in (("hyper_batch", 0), ("hyper_batch", "half"), ("hyper_batch", 2.5),
                     ("damping", -1.0), ("damping", "lots"), ("unroll_carry", 1.5),
                     ("unroll_carry", True), ("loss_hypergradient", "exact")):
        with pytest.raises(ValueError, match=key):
            OnlineDigitsCNN({**CONFIG, key: bad})


def test_the_cnn_learns_an_augmentation_policy_and_writes_it_for_export(tmp_path):
    from autometa.augment.policy_file import load_policy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = _run({"augment": "choice", "learn": "none"})  # only the policy is learned
        metrics, result = alone.train_epoch()
    assert result is None and alone.learner.steps == 2  # every hyper_every steps
    assert metrics["augment_moved"] > 0 and 0 < metrics["augment_entropy"]
    probabilities = [v for k, v in metrics.items() if k.startswith("hparams/augment.p.")]
    assert len(probabilities) == 13 and sum(probabilities) == pytest.approx(1.0)
    alone.write_policy(str(tmp_path))
    exported = load_policy(tmp_path / "policy.yaml")
    weights = {c.op: c.weight for c in exported.choices}  # the learned weights, as exported
    assert set(weights) == {"identity", *alone.policy.operations}
    for name, p in zip(alone.policy.names, alone.policy.probabilities().tolist(), strict=True):
        assert weights[name] == pytest.approx(p, abs=1e-5)
    # the training batches are augmented: another run with the policy frozen at its start
    # trains on other images than one without it
    plain = _run({"learn": "none"})
    frozen = _run({"augment": "choice", "learn": "none", "hyper_update": False})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain.train_epoch()
        frozen.train_epoch()
    assert frozen.learner.steps == 0  # report-only: the policy stays at its start
    assert not torch.equal(plain.model.state_dict()["1.weight"],
                           frozen.model.state_dict()["1.weight"])
    with pytest.raises(ValueError, match="augment must be"):
        _run({"augment": "trivial"})



def test_unroll_carry_differentiates_the_learning_rate_through_the_whole_run():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = {carry: _run({"learn": ["lr"], "unroll_carry": carry}) for carry in (0.0, 1.0)}
        for run in runs.values():
            run.train_epoch()
    # 4 steps, a hyperstep every 2: the truncated unroll restarts, the whole-run one covers all
    assert runs[0.0].unrolled.unrolled == 0 and runs[1.0].unrolled.unrolled == 4
    assert runs[1.0].unrolled.carry == 1.0
    a, b = (float(runs[c].last_result.grads["lr"]) for c in (0.0, 1.0))
    assert math.isfinite(b) and a != b


def test_loss_hyperparameters_through_the_steps_match_a_re_run_epoch():
    """``loss_hypergradient: unrolled``: the decays' and the smoothing's hypergradients come
    from the steps taken (no implicit solve), and the decays' match central differences of
    re-running the epoch (report-only, so the values do not move during it; at this step size
    the float32 validation loss is smooth in the decay at this scale)."""
    config = {"loss_hypergradient": "unrolled", "hyper_every": "epoch", "hyper_update": False,
              "learn": ["decay", "smoothing"], "decay": 0.01, "smoothing": 0.1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = _run(config)
        run.train_epoch()
    assert run.implicit is None and run.unrolled.loss_hparams == [
        "decay.conv1", "decay.conv2", "decay.fc", "smoothing"]
    grads = run.last_result.grads
    assert math.isfinite(float(grads["smoothing"])) and float(grads["smoothing"]) != 0.0

    def val_after(decay) -> float:
        again = _run({**config, "learn": "none", "decay": decay})
        again.train_epoch()
        with torch.no_grad():
            return float(again.val_loss())

    eps = 0.002
    every = (val_after(0.01 + eps) - val_after(0.01 - eps)) / (2 * eps)
    fc = (val_after({"fc": 0.01 + eps, "conv1": 0.01, "conv2": 0.01})
          - val_after({"fc": 0.01 - eps, "conv1": 0.01, "conv2": 0.01})) / (2 * eps)
    total = sum(float(grads[f"decay.{layer}"]) for layer in ("conv1", "conv2", "fc"))
    assert abs(every) > 1e-3
    assert total == pytest.approx(every, rel=0.05)
    assert float(grads["decay.fc"]) == pytest.approx(fc, rel=0.05)

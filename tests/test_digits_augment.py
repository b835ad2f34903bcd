"""The low-data digits trainable with a policy learned in-trial, and exporting the best
trial's policy to a file that torchvision applies."""

from __future__ import annotations

import glob
import json
import os
import textwrap

import numpy as np
import pytest
import torch

from autometa.augment import LearnedAugment, load_policy
from autometa.launch.cli import main
from autometa.trainables.digits_augment import low_data_indices


def test_low_data_split_keeps_per_class_images_of_each_digit():
    labels = np.repeat(np.arange(10), 30)
    picked = low_data_indices(labels, 7, seed=1)
    assert np.bincount(labels[picked]).tolist() == [7] * 10
    assert not np.array_equal(picked, low_data_indices(labels, 7, seed=2))


def test_learned_policy_trial_then_export(tmp_path, storage, ray_session, capsys):
    file = tmp_path / "aug.yaml"
    file.write_text(textwrap.dedent(f"""\
        experiment:
          name: aug
          trainable: digits_augment
          metric: val_loss
          searcher: random
          num_samples: 1
          storage_path: {storage}
          seed: 0
        parameters:
          per_class: 10
          rounds: 3
          inner_steps: 3
          magnitude: 0.4
          outer_lr: 0.2
        """))
    assert main(["run", str(file), "--quiet"]) == 0
    rows = [json.loads(line) for f in glob.glob(os.path.join(storage, "aug", "*", "result.json"))
            for line in open(f)]
    assert len(rows) == 3
    first, last = rows[0], rows[-1]
    keys = [k for k in last if k.startswith("hparams/augment.")]
    assert len(keys) == 2 * 16 and all(np.isfinite(last[f"hypergrad/{k[8:]}"]) for k in keys)
    assert any(last[k] != first[k] for k in keys if "magnitude" in k)  # the policy moved
    out = tmp_path / "policy.yaml"
    capsys.readouterr()
    assert main(["policy", "export", os.path.join(storage, "aug"), "-o", str(out)]) == 0
    assert "policy written to" in capsys.readouterr().out
    policy = load_policy(out)
    magnitudes = [o.magnitude for sub in policy.sub_policies for o in sub]
    # the last report has the values its round used; the file, those after its hyperstep
    used = [last[f"hparams/augment.magnitude.{i}"] for i in range(16)]
    assert np.allclose(magnitudes, used, atol=0.05) and magnitudes != [0.4] * 16
    image = torch.rand(1, 8, 8)
    assert LearnedAugment(policy)(image).shape == (1, 8, 8)


def test_export_from_an_experiment_without_policies_is_a_clear_error(tmp_path, storage,
                                                                     ray_session, capsys):
    file = tmp_path / "q.yaml"
    file.write_text(textwrap.dedent(f"""\
        experiment:
          name: q
          trainable: quadratic
          metric: loss
          num_samples: 1
          storage_path: {storage}
        parameters:
          x: {{type: uniform, low: 0, high: 1}}
          iterations: 1
        """))
    assert main(["run", str(file), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["policy", "export", os.path.join(storage, "q")]) == 2
    assert "saved no policy.yaml" in capsys.readouterr().err


def test_augment_or_not_races_none_against_a_learned_policy_and_exports_the_winner(
        tmp_path, storage, ray_session, capsys):
    """search_spaces/augment_or_not.yaml: a trial without augmentation and one learning a
    choice policy; the export is the winner's policy, identity only when "none" won."""
    import yaml

    from autometa.augment.policy_file import NO_AUGMENTATION

    space = yaml.safe_load(open(os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                             "search_spaces", "augment_or_not.yaml")))
    space["experiment"].update(name="aon", storage_path=storage)
    space["parameters"].update(per_class=5, rounds=3, inner_steps=2)
    file = tmp_path / "aon.yaml"
    file.write_text(yaml.safe_dump(space))
    assert main(["run", str(file), "--quiet"]) == 0
    results = glob.glob(os.path.join(storage, "aon", "*", "result.json"))
    last = {}
    for f in results:
        rows = [json.loads(line) for line in open(f)]
        last[rows[-1]["config"]["policy"]] = rows[-1]
    assert set(last) == {"none", "choice"} and len(results) == 2
    assert "augment_moved" in last["choice"] and "augment_moved" not in last["none"]
    winner = min(last, key=lambda p: last[p]["val_loss"])
    out = tmp_path / "policy.yaml"
    capsys.readouterr()
    assert main(["policy", "export", os.path.join(storage, "aon"), "-o", str(out)]) == 0
    exported = load_policy(out)
    if winner == "none":
        assert exported == NO_AUGMENTATION
    else:
        assert {c.op for c in exported.choices} > {"identity"}
    image = torch.rand(1, 8, 8)
    assert torch.equal(LearnedAugment(NO_AUGMENTATION)(image), image)  # applies nothing
    assert "no augmentation" in NO_AUGMENTATION.describe()


def test_black_box_policy_space_from_a_file(tmp_path, storage, ray_session):
    """An AutoAugment-style sub-policy space in a search-space file: the searcher draws the
    operations, probabilities and magnitudes; the trials apply them with torchvision."""
    import yaml

    space = yaml.safe_load(open(os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                             "search_spaces", "augment_autoaugment.yaml")))
    space["experiment"].update(name="bb", storage_path=storage, num_samples=2)
    space["parameters"].update(rounds=2, inner_steps=2)
    file = tmp_path / "bb.yaml"
    file.write_text(yaml.safe_dump(space))
    assert main(["run", str(file), "--quiet"]) == 0
    results = glob.glob(os.path.join(storage, "bb", "*", "result.json"))
    assert len(results) == 2
    configs = [json.loads(open(f).readline())["config"]["augment"] for f in results]
    assert all(c["kind"] == "autoaugment" and c["s0"]["op0"] in
               ("rotate", "shear_x", "translate_x", "scale", "cutout") for c in configs)
    rows = [json.loads(line) for f in results for line in open(f)]
    assert all(0 <= r["val_accuracy"] <= 1 and "hparams/augment.magnitude.0" not in r
               for r in rows)


def test_failed_learned_policy_trials_resume_exactly_and_the_choice_policy_exports(
        tmp_path, storage, ray_session, capsys):
    """Batches and augmentation draws follow (seed, batch index), so a trial retried from its
    checkpoint reports what the uninterrupted trial reported: the sub-policy policy (implicit
    engine) and ``policy: choice`` (PolicyLearner, the public API), side by side in one
    experiment. The choice trials carry the learner's result keys; ``show`` says how far the
    best trial's policy moved; the exported file is a choice policy."""
    from ray import tune

    from autometa.augment import ChoiceDefinition
    from autometa.launch.durable import DurableStateCallback
    from autometa.trainables.digits_augment import DEFAULT_POLICY, train_digits_augment

    # straight and broken trials side by side in one experiment (the callback: without it
    # Tune's result loggers may copy a retried trial's results back over its newer ones, and
    # its history lacks the reports before the failure)
    config = {"per_class": 5, "rounds": 4, "inner_steps": 2, "outer_lr": 0.2, "seed": 3,
              "policy": tune.grid_search([DEFAULT_POLICY, "choice"]),
              "fail_at_round": tune.grid_search([None, 2]),
              "operations": ["rotate", "translate_x", "solarize"]}  # (read by choice only)
    results = tune.Tuner(train_digits_augment, param_space=config,
                         tune_config=tune.TuneConfig(max_concurrent_trials=2),
                         run_config=tune.RunConfig(
                             storage_path=storage, name="aug", verbose=0,
                             callbacks=[DurableStateCallback()],
                             failure_config=tune.FailureConfig(max_failures=1))).fit()
    assert not results.errors and len(results) == 4

    def by_policy(fail_at_round):
        return {("choice" if r.config["policy"] == "choice" else "sub"): r.metrics_dataframe
                for r in results if r.config["fail_at_round"] == fail_at_round}

    straight, broken = by_policy(None), by_policy(2)
    keys = {"sub": ("val_loss", "hparams/augment.probability.5"),
            "choice": ("val_loss", "hparams/augment.p.solarize", "augment_moved")}
    for kind, history in broken.items():
        assert history["hyperstep"].tolist() == straight[kind]["hyperstep"].tolist() == \
            [1, 2, 3, 4]
        for key in keys[kind]:
            np.testing.assert_allclose(history[key], straight[kind][key], rtol=1e-6)
    history = broken["choice"]
    assert history["augment_moved"].iloc[-1] > 0 and history["augment_still"].max() == 0
    assert np.isfinite(history["augment_hypergrad_snr"]).all()
    capsys.readouterr()
    assert main(["show", os.path.join(storage, "aug"), "--metric", "augment_moved",
                 "--mode", "max", "-o", str(tmp_path / "report")]) == 0
    moved = history["augment_moved"].iloc[-1]
    assert f"Augmentation policy of the best trial: moved {moved:.3f} from its start" in \
        capsys.readouterr().out
    out = tmp_path / "policy.yaml"
    assert main(["policy", "export", os.path.join(storage, "aug"), "-o", str(out),
                 "--metric", "augment_moved", "--mode", "max"]) == 0
    policy = load_policy(out)
    assert isinstance(policy, ChoiceDefinition)
    weights = {c.op: c.weight for c in policy.choices}
    assert weights["solarize"] == pytest.approx(history["hparams/augment.p.solarize"].iloc[-1],
                                                abs=1e-5)  # the file rounds to 6 digits

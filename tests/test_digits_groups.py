"""Per-group sample weights as hyperparameters (issue 6, use 4): exact hypergradients of the
leave-one-out error and of the held-out loss, and a real hypergradient search that turns down a
noisy data source."""

from __future__ import annotations

import os

import pytest

from autometa.launch.cli import main
from autometa.trainables.digits_groups import group_weight_scores

NOISY = {"source_noise": [0.0, 0.0, 0.0, 0.5], "n_train": 300, "n_val": 300,
         **{f"weight_s{k}": w for k, w in enumerate([1.0, 0.7, 1.3, 0.9])}}


@pytest.mark.parametrize("objective", ["loo_error", "val_loss"])
def test_group_hypergradients_match_finite_differences(objective):
    config = {**NOISY, "objective": objective}
    scores = group_weight_scores(config)
    h = 1e-5
    for k in range(4):
        key = f"weight_s{k}"
        up = group_weight_scores({**config, key: config[key] + h})[objective]
        down = group_weight_scores({**config, key: config[key] - h})[objective]
        numeric = (up - down) / (2 * h)
        assert scores[f"hypergrad/{key}"] == pytest.approx(numeric, rel=1e-6, abs=1e-10)
        assert scores[f"hparams/{key}"] == config[key]


def test_the_noisy_source_is_the_one_to_turn_down():
    scores = group_weight_scores({**NOISY, "objective": "val_loss"})
    grads = [scores[f"hypergrad/weight_s{k}"] for k in range(4)]
    assert grads[3] > 0 and all(g < grads[3] for g in grads[:3])


def test_class_groups_and_clear_errors():
    config = {"group_by": "class", **{f"weight_c{c}": 1.0 for c in range(10)}}
    assert {k for k in group_weight_scores(config) if k.startswith("hypergrad/")} == \
        {f"hypergrad/weight_c{c}" for c in range(10)}
    with pytest.raises(ValueError, match="weight_s3"):
        group_weight_scores({k: v for k, v in NOISY.items() if k != "weight_s3"})
    with pytest.raises(ValueError, match="objective"):
        group_weight_scores({**NOISY, "objective": "accuracy"})


def test_hypergradient_search_turns_down_the_noisy_source(tmp_path, storage, ray_session,
                                                          capsys):
    file = os.path.join(os.path.dirname(os.path.dirname(__file__)), "search_spaces",
                        "group_weights.yaml")
    assert main(["run", file, "--storage-path", storage, "--num-samples", "12", "--quiet"]) == 0
    import yaml

    best = yaml.safe_load(open(os.path.join(storage, "group_weights", "best_config.yaml")))
    assert best["weight_s3"] < min(best[f"weight_s{k}"] for k in range(3))
    start = group_weight_scores({**best, **{f"weight_s{k}": 1.0 for k in range(4)}})
    assert group_weight_scores(best)["val_loss"] < start["val_loss"]  # better than equal weights

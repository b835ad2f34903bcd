"""Racing: the statistics, one race on synthetic instances, and the racing searchers in Tune."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher
from scipy import stats

from autometa.racing import Race, RaceSettings, worse_than_best
from autometa.racing.sampling import sample_around, spread
from autometa.racing.stats import block_ranks, conover_p, friedman_p, holm
from autometa.searchers import make_searcher
from autometa.space import space_from_dict
from autometa.trainables.synthetic import quadratic


def test_holm_matches_its_definition():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    # sorted: 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08 -> 0.09 (monotone), 0.5*1 -> 0.5
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_conover_against_its_formula():
    x = np.array([[1.0, 2.0, 3.0], [1.0, 3.0, 2.0], [2.0, 1.0, 3.0], [1.0, 2.0, 3.0]])
    r = block_ranks(x)
    n, k = r.shape
    sums, a = r.sum(0), (r ** 2).sum()
    scale = math.sqrt(2 * (n * a - (sums ** 2).sum()) / ((n - 1) * (k - 1)))
    expected = stats.t.sf((sums[2] - sums[0]) / scale, (n - 1) * (k - 1))
    assert conover_p(x, 0)[2] == pytest.approx(expected)
    assert conover_p(x, 0)[0] == 1.0
    assert friedman_p(x) == pytest.approx(stats.friedmanchisquare(*x.T).pvalue)


def test_ties_single_candidate_and_failures():
    assert worse_than_best(np.ones((8, 4))) == []          # complete ties: nobody goes
    assert worse_than_best(np.ones((8, 1))) == []          # a single candidate
    x = np.tile([0.0, 1.0, 2.0, 3.0], (8, 1))
    x[:, 3] = np.nan                                        # always failing: ranks last
    assert 3 in worse_than_best(x)
    with pytest.raises(ValueError, match="test must be one of"):
        worse_than_best(x, test="anova")


def _race(seed: int, means: np.ndarray, test: str = "friedman", noise: float = 0.5,
          fail: tuple[int, int] | None = None) -> tuple[Race, np.ndarray]:
    rng = np.random.default_rng(seed)
    instances = rng.normal(size=20) * 2.0           # instance effects shared by candidates
    own = rng.normal(size=(20, len(means))) * noise
    race = Race(len(means), RaceSettings(min_instances=5, max_instances=20, test=test))
    while (pair := race.next_pair()) is not None:
        c, k = pair
        value = math.nan if fail == (c, k) else means[c] + instances[k] + own[k, c]
        race.record(c, k, value)
    assert race.finished
    full = (means + instances[:, None] + own).mean(axis=0)
    return race, full


@pytest.mark.parametrize("test", ["friedman", "wilcoxon", "t"])
def test_best_survives_worse_ones_go_early_and_evaluations_are_saved(test):
    means = np.linspace(0.0, 1.5, 16)   # candidate 0 is best, 15 clearly worst
    runs = [_race(seed, means, test) for seed in range(100)]
    lost = sum(0 in race.eliminated for race, _ in runs) / len(runs)
    assert lost <= 0.05, f"the best candidate was eliminated in {lost:.0%} of races"
    for race, _ in runs:
        assert 15 in race.eliminated and race.eliminated[15] <= 10  # by half of max_instances
    evaluations = np.mean([race.evaluations() for race, _ in runs])
    assert evaluations < 0.7 * 16 * 20, evaluations
    agree = np.mean([race.best() == int(np.argmin(full)) for race, full in runs])
    assert agree >= 0.7, agree


def test_a_failed_evaluation_counts_as_worst_and_the_race_goes_on():
    race, _ = _race(0, np.linspace(0.0, 1.5, 8), fail=(0, 2))
    assert race.results[0][2] == math.inf
    assert race.finished and race.best() in race.alive


def test_one_candidate_is_already_decided():
    race = Race(1)
    assert race.finished and race.next_pair() is None and race.best() == 0


def test_blocks_stay_aligned():
    race = Race(3, RaceSettings(min_instances=2, max_instances=4))
    first = [race.next_pair() for _ in range(3)]
    assert sorted(first) == [(0, 0), (1, 0), (2, 0)]
    assert race.next_pair() is None        # instance 1 waits until instance 0 is complete
    race.record(0, 0, 1.0)
    race.record(1, 0, 2.0)
    assert race.next_pair() is None
    race.record(2, 0, 3.0)
    assert race.next_pair()[1] == 1


def test_sampling_narrows_around_the_parent_and_stays_in_bounds():
    space = space_from_dict({"parameters": {
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
        "width": {"type": "randint", "low": 1, "high": 64},
        "act": {"type": "choice", "values": ["relu", "tanh", "gelu"]}}})
    parent = {"lr": 1e-2, "width": 32, "act": "tanh"}
    rng = np.random.default_rng(0)
    late = [sample_around(space, parent, rng, 4, 4, 8) for _ in range(300)]
    early = [sample_around(space, parent, rng, 1, 4, 8) for _ in range(300)]
    for flat in early + late:
        assert not space.problems(space.assemble(flat))
    assert np.std([math.log(f["lr"]) for f in late]) < np.std([math.log(f["lr"]) for f in early])
    assert np.mean([f["act"] == "tanh" for f in late]) > np.mean([f["act"] == "tanh" for f in early])
    assert spread(0.0, 1.0, 2, 8, 3) < spread(0.0, 1.0, 1, 8, 3)


SPACE = {"parameters": {"x": {"type": "uniform", "low": 0.0, "high": 2.0},
                        "noise": 0.05, "instance_effect": 1.0, "iterations": 1}}


def _tune(searcher, storage, num_samples=-1):
    return tune.Tuner(
        quadratic,
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=num_samples,
                                    search_alg=ConcurrencyLimiter(searcher, 2),
                                    reuse_actors=True),  # a fresh worker per trial: ~1 s
        run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()


def test_race_in_tune_finds_the_best_candidate_with_fewer_evaluations(ray_session, storage):
    space = space_from_dict(SPACE)
    searcher = make_searcher("race", space, metric="loss", mode="min", seed=0, candidates=5,
                             min_instances=3, max_instances=6)
    results = _tune(searcher, storage)
    assert not results.errors
    assert len(results) < 5 * 6                      # stopped before evaluating everything
    assert searcher.race.finished
    xs = [c["x"] for c in (searcher.space.assemble(f) for f in searcher.configs)]
    assert searcher.best_config()["x"] == min(xs, key=lambda x: abs(x - 0.5))
    by_pair = {(r.config["x"], r.config["instance"]) for r in results}
    assert len(by_pair) == len(results)              # no pair evaluated twice


def test_irace_improves_on_its_first_race(ray_session, storage):
    space = space_from_dict(SPACE)
    searcher = make_searcher("irace", space, metric="loss", mode="min", seed=1, candidates=4,
                             min_instances=2, max_instances=4, budget=30, elites=2)
    results = _tune(searcher, storage)
    assert not results.errors and len(results) == 30
    assert len(searcher.races) >= 2
    first_race_best = min(abs(f["x"] - 0.5) for f in searcher.configs[:4])
    assert abs(searcher.best_config()["x"] - 0.5) <= first_race_best


def test_instance_key_cannot_be_a_searchable_parameter():
    space = space_from_dict({"parameters": {"seed": {"type": "randint", "low": 0, "high": 9}}})
    searcher = make_searcher("race", space, metric="loss", mode="min", instance_key="seed")
    with pytest.raises(ValueError, match="instance_key 'seed'"):
        searcher.suggest("t")


def test_race_finishes_and_says_so():
    space = space_from_dict(SPACE)
    searcher = make_searcher("race", space, metric="loss", mode="min", seed=0, candidates=2,
                             min_instances=2, max_instances=2)
    seen = 0
    while (config := searcher.suggest(f"t{seen}")) not in (None, Searcher.FINISHED):
        searcher.on_trial_complete(f"t{seen}", {"loss": (config["x"] - 0.5) ** 2,
                                                 "config": config})
        seen += 1
    assert config == Searcher.FINISHED and seen == 4


def test_a_candidate_whose_trials_fail_is_dropped_and_the_race_ends():
    space = space_from_dict(SPACE)
    searcher = make_searcher("race", space, metric="loss", mode="min", seed=0, candidates=4,
                             min_instances=3, max_instances=6)
    i, broken = 0, None
    while (config := searcher.suggest(f"t{i}")) not in (None, Searcher.FINISHED):
        broken = config["x"] if broken is None else broken   # candidate 0 comes first
        if config["x"] == broken:   # this candidate's trials raise
            searcher.on_trial_complete(f"t{i}", None, error=True)
        else:
            searcher.on_trial_complete(f"t{i}", {"loss": (config["x"] - 0.5) ** 2 + 0.01 * (
                config["instance"] % 3), "config": config})
        i += 1
    assert config == Searcher.FINISHED
    assert 0 in searcher.race.eliminated
    assert searcher.best_config()["x"] != broken


def test_identical_rankings_use_the_exact_permutation_p_value():
    from autometa.racing.stats import rank_difference_p

    # last in all 3 blocks against first in all 3: (1 / (8 * 7))^3 of the random orderings
    assert rank_difference_p(21, 3, 8) == pytest.approx((1 / 56) ** 3)
    assert rank_difference_p(-21, 3, 8) == pytest.approx(1.0)
    x = np.tile(np.arange(8.0), (3, 1))     # the same ranking three times
    dropped = worse_than_best(x)
    assert 7 in dropped and 1 not in dropped  # the runner-up is not dropped on 3 blocks


def test_instances_trainable_resumes_after_a_hyperband_pause(ray_session, storage):
    """One trial per configuration, one report per instance, under Ray's synchronous Hyperband:
    the run ends (trials paused at a milestone come back), and a paused trial continues from
    its checkpoint rather than scoring its first instances again."""
    from autometa.launch.durable import DurableStateCallback
    from autometa.trainables.synthetic import instance_score, noisy_instances

    xs = [0.1 * i for i in range(9)]
    keys = list(range(100, 109))
    results = tune.Tuner(
        noisy_instances,
        param_space={"x": tune.grid_search(xs), "noise": 0.05, "instance_effect": 1.0,
                     "instances": keys},
        tune_config=tune.TuneConfig(
            metric="loss", mode="min", max_concurrent_trials=9, reuse_actors=True,
            scheduler=tune.schedulers.HyperBandScheduler(max_t=9, reduction_factor=3)),
        run_config=tune.RunConfig(storage_path=storage, name="hb", verbose=0,
                                  callbacks=[DurableStateCallback()])).fit()
    assert len(results) == 9 and not results.errors
    seen = []
    for r in results:
        # no restart: every report's count of instances seen is its iteration, which Tune
        # carries on from the checkpoint, so a trial that scored its first instances again
        # would fall behind it; and every report is in the history (DurableStateCallback:
        # without it Tune's result loggers copy a resumed trial's older results back over its
        # newer ones; histories such as [1, 2, 4, ..., 9] and [4, ..., 9] were seen in CI)
        frame = r.metrics_dataframe
        rows = [(int(it), int(n)) for it, n in zip(frame["training_iteration"],
                                                   frame["instances_seen"], strict=True)]
        last = r.metrics["instances_seen"]
        assert rows == [(i, i) for i in range(1, last + 1)], rows
        assert r.metrics["training_iteration"] == last
        config = {"x": r.config["x"], "noise": 0.05, "instance_effect": 1.0}
        mean = np.mean([instance_score(config, k) for k in keys[:last]])
        assert r.metrics["loss"] == pytest.approx(mean)  # the first `last` instances, each once
        seen.append(last)
    assert min(seen) < 9 and max(seen) == 9  # Hyperband stopped some, ran others to the end


def test_a_replayed_race_drops_the_same_candidates_and_says_why_it_ended():
    from autometa.racing.race import Race, RaceSettings, replay_race

    rng = np.random.default_rng(3)
    settings = RaceSettings(min_instances=3, max_instances=8, alpha=0.05)
    means = [0.0, 0.1, 2.0, 3.0, 0.05]
    race = Race(len(means), settings)
    values = [{} for _ in means]
    while (pair := race.next_pair()) is not None:  # the race as the searcher runs it
        c, k = pair
        v = means[c] + 0.3 * rng.standard_normal()
        values[c][k] = v
        race.record(c, k, v)
    assert race.finished and race.eliminated  # the clearly worse ones went
    again = replay_race(values, settings)
    assert again.alive == race.alive and again.eliminated == race.eliminated
    assert again.end_reason == race.end_reason and again.end_reason is not None
    assert Race(2, settings).end_reason is None  # still running


def test_irace_says_why_it_ended_and_who_survived_from_its_saved_state(tmp_path):
    import pandas as pd

    from autometa.launch.show import irace_outcome, race_candidates
    from autometa.searchers.racing import IteratedRacingSearcher

    space = space_from_dict(SPACE)
    searcher = make_searcher("irace", space, metric="loss", mode="min", seed=2, candidates=3,
                             min_instances=2, max_instances=3, budget=14, elites=2)
    rows, i = [], 0
    while (config := searcher.suggest(f"t{i}")) not in (None, Searcher.FINISHED):
        assert searcher.end_reason() is None  # it goes on
        loss = (config["x"] - 0.5) ** 2 + 0.001 * config["instance"]
        searcher.on_trial_complete(f"t{i}", {"loss": loss, "config": config})
        rows.append({"trial_id": f"t{i}", "loss": loss, "config/x": config["x"],
                     "config/instance": config["instance"]})
        i += 1
    assert i == 14
    reason = searcher.end_reason()
    assert reason.startswith(f"its budget of 14 trials was used, in {len(searcher.races)} races")
    assert len(searcher.races) >= 2
    searcher.save(str(tmp_path / "searcher-state-2026.pkl"))  # as Tune saves it
    candidates = race_candidates(pd.DataFrame(rows), "loss", "min", "instance")
    marked, said = irace_outcome(str(tmp_path), candidates)
    assert said == reason
    alive = {f["x"] for f in searcher.survivors()}
    assert set(marked.loc[marked["survivor"], "config/x"]) == alive and alive
    assert marked["survivor"].tolist() == sorted(marked["survivor"], reverse=True)
    # another searcher's state, or none: nothing is claimed
    assert irace_outcome(str(tmp_path / "missing"), candidates) == (candidates, None)
    make_searcher("random", space, metric="loss", mode="min").save(
        str(tmp_path / "searcher-state-2027.pkl"))
    # the newest session by name, not by mtime (a resume copies the older files back)
    import os
    import time

    later = time.time() + 60
    os.utime(tmp_path / "searcher-state-2026.pkl", (later, later))
    assert IteratedRacingSearcher.saved_in(str(tmp_path)) is None

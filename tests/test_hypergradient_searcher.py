"""The hypergradient searcher: convergence on known functions, bounds, chain rule, mixed spaces."""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from autometa.searchers import make_searcher
from autometa.searchers._chain import Chain, ChainSettings
from autometa.space import box, space_from_dict
from autometa.space import unconstrained as coords
from autometa.testing.problems import BoxQuadratic
from autometa.trial.keys import gradient_trust

SPACE = {"parameters": {
    "lam": {"type": "loguniform", "low": 1e-4, "high": 10.0, "differentiable": True},
    "b": {"type": "uniform", "low": -1.0, "high": 1.0, "differentiable": True},
}}


def bowl(config):
    """f = (log lam - log 0.05)^2 + 4 (b - 0.3)^2 with its exact derivatives in value units."""
    lam, b = config["lam"], config["b"]
    f = (math.log(lam) - math.log(0.05)) ** 2 + 4 * (b - 0.3) ** 2
    return {"loss": f, "hypergrad/lam": 2 * (math.log(lam) - math.log(0.05)) / lam,
            "hypergrad/b": 8 * (b - 0.3), "config": config}


def drive(searcher, space, score, n):
    best, configs = math.inf, []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        assert config is not None
        assert not space.problems(config), config
        configs.append(config)
        result = score(config)
        searcher.on_trial_complete(f"t{i}", result)
        best = min(best, result["loss"])
    return best, configs


def test_converges_to_an_inside_optimum_within_bounds():
    space = space_from_dict(SPACE)
    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0, chains=1)
    best, configs = drive(searcher, space, bowl, 25)
    assert best < 1e-3, best
    first = bowl(configs[0])["loss"]
    assert first > 0.1  # it had somewhere to go


def test_optimum_on_a_bound_is_approached_without_leaving_it():
    space = space_from_dict({"parameters": {
        "x": {"type": "uniform", "low": 0.0, "high": 1.0, "differentiable": True}}})
    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=1, chains=1)

    def score(config):
        x = config["x"]
        return {"loss": (x - 2.0) ** 2, "hypergrad/x": 2 * (x - 2.0), "config": config}

    best, configs = drive(searcher, space, score, 8)
    assert max(c["x"] for c in configs) <= 1.0
    assert best == (1.0 - 2.0) ** 2  # the bound itself, reached by projection, not crawled to
    assert searcher.all_chains[0].converged  # the projected gradient is zero there


def test_maximization_goes_uphill():
    space = space_from_dict(SPACE)
    searcher = make_searcher("hypergradient", space, metric="score", mode="max", seed=0, chains=1)

    def score(config):
        r = bowl(config)
        return {"score": -r["loss"], "hypergrad/lam": -r["hypergrad/lam"],
                "hypergrad/b": -r["hypergrad/b"], "config": config, "loss": r["loss"]}

    best, _ = drive(searcher, space, score, 25)
    assert best < 1e-3
    assert -searcher.all_chains[0].best_f > -1e-3  # the chain tracked the maximum of score


@pytest.mark.parametrize("param", [
    {"type": "loguniform", "low": 1e-3, "high": 10.0},
    {"type": "uniform", "low": -2.0, "high": 3.0},
    {"type": "normal", "mu": 0.0, "sigma": 1.0},
])
def test_coordinate_chain_rule_matches_finite_differences(param):
    p = space_from_dict({"parameters": {"x": {**param, "differentiable": True}}})["x"]
    for u in (-1.3, 0.0, 0.7):
        h = 1e-6
        fd = (coords.from_unconstrained(p, u + h) - coords.from_unconstrained(p, u - h)) / (2 * h)
        assert coords.derivative(p, u) == pytest.approx(fd, rel=1e-6)
        x = coords.from_unconstrained(p, u)
        assert coords.to_unconstrained(p, x) == pytest.approx(u, abs=1e-9)
    if param["type"] == "loguniform":  # dL/du = dL/dx * x on the log scale
        assert coords.derivative(p, math.log(2.0)) == pytest.approx(2.0)


@pytest.mark.parametrize("param", [
    {"type": "loguniform", "low": 1e-3, "high": 10.0},
    {"type": "uniform", "low": -2.0, "high": 3.0},
    {"type": "normal", "mu": 0.5, "sigma": 2.0},
    {"type": "normal", "mu": 0.0, "sigma": 1.0, "low": -0.5},
])
def test_box_coordinate_keeps_bounds_and_its_jacobian_matches_finite_differences(param):
    p = space_from_dict({"parameters": {"x": param}})["x"]
    low, high = box.bounds(p)
    for z in (0.1, 0.5, 0.8):
        h = 1e-6
        fd = (box.from_box(p, z + h) - box.from_box(p, z - h)) / (2 * h)
        assert box.box_derivative(p, z) == pytest.approx(fd, rel=1e-6)
        assert box.to_box(p, box.from_box(p, z)) == pytest.approx(z, abs=1e-9)
    if p.low is not None:  # a bound is a finite coordinate, mapped exactly
        assert box.from_box(p, low) == p.low and box.from_box(p, low - 5.0) == p.low
    if p.high is not None:
        assert box.from_box(p, high) == p.high and box.from_box(p, high + 5.0) == p.high
    assert low <= box.start(p) <= high


@pytest.mark.parametrize("on_bound", [False, True], ids=["inside", "on-bounds"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quadratic_with_a_plain_tune_space_within_1e_3_in_40_trials(seed, on_bound):
    """8 parameters (4 log-scale, 4 linear), exact hypergradients, a plain Tune space given
    late as Tune does: within 1e-3 of the box optimum in 40 trials, never out of bounds."""
    problem = BoxQuadratic(seed, on_bound=on_bound)
    searcher = make_searcher("hypergradient", metric="loss", mode="min", seed=seed, chains=1)
    assert searcher.set_search_properties("loss", "min", problem.tune_space())
    best, losses = math.inf, []
    for i in range(40):
        config = searcher.suggest(f"t{i}")
        for key, (low, high, _) in problem.bounds.items():
            assert low <= config[key] <= high, (key, config[key])
        result = problem(config)
        searcher.on_trial_complete(f"t{i}", {**result, "config": config})
        best = min(best, result["loss"])
        losses.append(result["loss"])
    assert best - problem.best < 1e-3, best - problem.best
    assert losses[0] - problem.best > 0.1  # it had somewhere to go


def test_gradient_trust_shortens_the_step_with_the_residual():
    assert gradient_trust(None, None) == 1.0 and gradient_trust(1.0, 5.0) == 1.0
    assert gradient_trust(0.0, 0.05) == pytest.approx(0.95)
    assert gradient_trust(0.0, 25.0) == pytest.approx(0.1)
    assert gradient_trust(0.0, None) == 0.5
    steps = []
    for trust in (1.0, 0.1):
        chain = Chain({}, np.full(2, 0.5), ChainSettings(radius=0.2), np.zeros(2), np.ones(2))
        chain.observe(chain.next_point(), 1.0, np.array([1.0, -2.0]), trust)
        steps.append(np.abs(chain.next_point() - 0.5).max())
    assert steps[0] == pytest.approx(0.2) and steps[1] == pytest.approx(0.02)


def test_untrusted_gradients_give_no_curvature_pair():
    chain = Chain({}, np.full(1, 0.5), ChainSettings(), np.zeros(1), np.ones(1))
    chain.observe(chain.next_point(), 1.0, np.array([1.0]))
    chain.observe(chain.next_point(), 0.5, np.array([0.5]), trust=0.4)
    assert chain.pairs == []
    chain.observe(chain.next_point(), 0.4, np.array([0.3]))
    assert chain.pairs == []  # the best point's own gradient was not trusted
    chain.observe(chain.next_point(), 0.3, np.array([0.2]))
    assert len(chain.pairs) == 1


def test_quasi_newton_beats_scaled_steepest_descent_on_an_ill_conditioned_bowl():
    """With curvature pairs (memory 8) the chain needs far fewer trials than without (memory 0)
    on f = 0.5 z^T H z with condition number 100, rotated so no diagonal scaling fixes it."""
    rotation = np.array([[np.cos(0.6), -np.sin(0.6)], [np.sin(0.6), np.cos(0.6)]])
    h = rotation @ np.diag([100.0, 1.0]) @ rotation.T
    centre = np.array([0.3, 0.6])

    def trials_to(memory):
        chain = Chain({}, np.array([0.9, 0.1]), ChainSettings(memory=memory, max_length=200),
                      np.zeros(2), np.ones(2))
        for n in range(1, 201):
            z = chain.next_point()
            d = z - centre
            chain.observe(z, 0.5 * d @ h @ d, h @ d)
            if 0.5 * (chain.best_u - centre) @ h @ (chain.best_u - centre) < 1e-8:
                return n
            if chain.done:
                return 1000
        return 1000

    assert trials_to(8) <= 20 and trials_to(8) * 3 <= trials_to(0)


def test_mixed_space_keeps_the_context_and_finds_the_better_branch():
    space = space_from_dict({"parameters": {
        **SPACE["parameters"], "kind": {"type": "choice", "values": ["good", "bad"]}}})
    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=3, chains=2)
    best = math.inf
    for i in range(40):
        config = searcher.suggest(f"t{i}")
        assert not space.problems(config)
        chain = searcher.chain_of(f"t{i}")
        assert chain.context == {"kind": config["kind"]}  # a chain keeps its category
        result = bowl(config)
        result["loss"] += 0.0 if config["kind"] == "good" else 1.0
        searcher.on_trial_complete(f"t{i}", result)
        best = min(best, result["loss"])
    assert best < 1e-3
    assert {c.context["kind"] for c in searcher.all_chains} == {"good", "bad"}


def test_without_hypergradients_it_warns_once_and_acts_as_base(caplog):
    space = space_from_dict(SPACE)
    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0)
    reference = make_searcher("random", space, metric="loss", mode="min", seed=0)
    with caplog.at_level("WARNING"):
        for i in range(6):
            config = searcher.suggest(f"t{i}")
            searcher.on_trial_complete(f"t{i}", {"loss": 1.0, "config": config})
    assert sum("carry no hypergrad/" in r.message for r in caplog.records) == 1
    later = [searcher.suggest(f"u{i}") for i in range(3)]
    assert all(not space.problems(c) for c in later)
    assert reference.suggest("x") is not None


def test_restore_continues_the_same_descent():
    space = space_from_dict(SPACE)
    a = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0, chains=1)
    drive(a, space, bowl, 5)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "s.pkl")
        a.save(path)
        b = make_searcher("hypergradient", space, metric="loss", mode="min", seed=42, chains=1)
        b.restore(path)
    for i in range(5, 10):
        ca, cb = a.suggest(f"t{i}"), b.suggest(f"t{i}")
        assert ca == cb
        a.on_trial_complete(f"t{i}", bowl(ca))
        b.on_trial_complete(f"t{i}", bowl(cb))


def test_add_evaluated_point_starts_a_chain_there():
    space = space_from_dict(SPACE)
    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0, chains=1)
    searcher.add_evaluated_point({"lam": 0.04, "b": 0.25}, 0.06)
    first = searcher.suggest("t0")
    assert first == {"lam": pytest.approx(0.04), "b": pytest.approx(0.25)}


def test_points_to_evaluate_start_the_chains_and_the_default_start_is_the_middle():
    space = space_from_dict(SPACE)
    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0, chains=2,
                             points_to_evaluate=[{"lam": 0.5, "b": -0.5}])
    assert searcher.suggest("t0") == {"lam": 0.5, "b": -0.5}
    second = searcher.suggest("t1")  # a second chain, from the base searcher
    assert second != {"lam": 0.5, "b": -0.5}
    middle = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0)
    first = middle.suggest("t0")
    assert first["lam"] == pytest.approx(math.sqrt(1e-4 * 10.0)) and first["b"] == 0.0
    with pytest.raises(ValueError, match=r"points_to_evaluate\[0\]: lam: 50.0 is outside"):
        make_searcher("hypergradient", space, metric="loss", mode="min",
                      points_to_evaluate=[{"lam": 50.0, "b": 0.0}]).suggest("t0")


def test_holdout_metric_stops_a_chain_that_only_overfits():
    """Validation keeps improving but the held-out metric does not: the chain ends after patience."""
    space = space_from_dict(SPACE)
    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0, chains=1,
                             holdout_metric="holdout", patience=3)
    for i in range(8):
        config = searcher.suggest(f"t{i}")
        result = bowl(config)
        result["holdout"] = 1.0 if i == 0 else 2.0   # best at the first trial, never again
        searcher.on_trial_complete(f"t{i}", result)
    first = searcher.all_chains[0]
    assert first.length == 4 and first.done  # 1 best + 3 without improvement
    assert len(searcher.all_chains) == 2  # a new chain took over


def test_inactive_differentiable_parameter_gives_a_plain_trial_not_a_chain():
    space = space_from_dict({"parameters": {
        "use": {"type": "choice", "values": [True, False]},
        "x": {"type": "uniform", "low": 0.0, "high": 1.0, "differentiable": True,
              "condition": {"use": True}}}})
    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0, chains=1)
    for i in range(12):
        config = searcher.suggest(f"t{i}")
        assert config is not None and not space.problems(config)
        x = config["x"]
        result = {"loss": 1.0 if x is None else (x - 0.3) ** 2, "config": config}
        if x is not None:
            result["hypergrad/x"] = 2 * (x - 0.3)
        searcher.on_trial_complete(f"t{i}", result)
    assert all(set(c.context) == {"use"} and c.context["use"] is True for c in searcher.all_chains)


def test_rejected_steps_do_not_use_up_patience():
    """Backtracking after a worse step is not overfitting: only accepted steps count."""
    from autometa.searchers._chain import Chain, ChainSettings

    chain = Chain({}, np.zeros(1), ChainSettings(patience=2))
    chain.observe(chain.next_point(), 1.0, np.ones(1))
    chain.watch(1.0, accepted=True)
    for _ in range(3):  # worse on the metric itself: rejected, and the holdout is no better
        assert not chain.observe(chain.next_point(), 2.0, np.ones(1))
        chain.watch(1.5, accepted=False)
    assert chain.stale == 0 and not chain.done
    for i in range(2):  # accepted steps that do not improve the holdout
        assert chain.observe(chain.next_point(), 0.5 - 0.1 * i, np.ones(1))
        chain.watch(1.2, accepted=True)
    assert chain.stale == 2 and chain.done


PLAIN = {"parameters": {  # as from a plain Tune param_space: nothing marked
    "lam": {"type": "loguniform", "low": 1e-4, "high": 10.0},
    "b": {"type": "uniform", "low": -1.0, "high": 1.0},
}}


def test_with_nothing_marked_it_descends_on_what_the_trials_differentiate(caplog):
    space = space_from_dict(PLAIN)
    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0, chains=1)
    with caplog.at_level("INFO", logger="autometa.searchers.hypergradient"):
        best, _ = drive(searcher, space, bowl, 25)
    assert best < 1e-3, best                            # as with the marker (test above)
    assert any("descending on ['lam', 'b']" in r.message for r in caplog.records)
    random_best, _ = drive(make_searcher("random", space, metric="loss", mode="min", seed=0),
                           space, bowl, 25)
    assert random_best > 100 * best                     # it did not become random search


def test_differentiable_argument_picks_the_parameters_and_is_checked():
    space = space_from_dict(PLAIN)
    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0, chains=1,
                             differentiable=["b"])

    def only_b(config):  # lam is not descended: it stays where the base searcher put it
        return {**bowl(config), "hypergrad/lam": math.nan}

    _, configs = drive(searcher, space, only_b, 7)
    assert len({c["lam"] for c in configs}) == 1          # one chain: lam held at its start
    assert min(abs(c["b"] - 0.3) for c in configs) < 0.05  # b descended
    with pytest.raises(ValueError, match="not in the space"):
        drive(make_searcher("hypergradient", space, metric="loss", mode="min",
                            differentiable=["nope"]), space, bowl, 1)


def test_without_any_hypergradient_it_names_the_problem_once(caplog):
    space = space_from_dict(PLAIN)
    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0)
    with caplog.at_level("WARNING", logger="autometa.searchers.hypergradient"):
        drive(searcher, space, lambda c: {"loss": bowl(c)["loss"], "config": c}, 6)
    warnings = [r.message for r in caplog.records if "no parameter is differentiable" in r.message]
    assert len(warnings) == 1 and "differentiable=[...]" in warnings[0]


def test_plain_tune_code_with_a_tune_space_reaches_the_optimum(ray_session, storage):
    """Real Tune, a plain Tune param_space (no marker), an 8-parameter quadratic with its
    optimum on the bounds for three coordinates, reporting exact hypergradients: the searcher
    adopts all eight and gets within 1e-3 of the optimum in 40 trials, inside the bounds."""
    from autometa.searchers import HypergradientSearcher

    problem = BoxQuadratic(0, on_bound=True)
    searcher = HypergradientSearcher(metric="loss", mode="min", seed=0, chains=1)
    results = tune.Tuner(
        problem.trainable, param_space=problem.tune_space(),
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=40,
                                    search_alg=ConcurrencyLimiter(searcher, 1),
                                    reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert not results.errors
    losses = sorted(r.metrics["loss"] for r in results)
    assert losses[0] - problem.best < 1e-3, (losses[0], problem.best)
    for r in results:
        for key, (low, high, _) in problem.bounds.items():
            assert low <= r.config[key] <= high
    # `autometa show` on the folder of plain Tune code: metric and mode are the Tuner's
    from autometa.launch.show import summarize

    summary = summarize(results.experiment_path)
    assert (summary.metric, summary.mode) == ("loss", "min")
    assert summary.table.iloc[0]["loss"] == losses[0]


def test_a_tune_dict_given_as_space_is_converted():
    searcher = make_searcher("hypergradient", space={"lam": tune.loguniform(1e-4, 10.0)},
                             metric="loss", mode="min", seed=0)
    assert searcher.space.keys == ["lam"]
    with pytest.raises(TypeError, match="space must be an autometa Space"):
        make_searcher("random", space=["lam"], metric="loss", mode="min")


def test_non_finite_and_unconverged_hypergradients_are_said_once(caplog):
    space = space_from_dict(SPACE)
    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0, chains=1)

    def flaky(config):
        result = {**bowl(config), "hypergrad_converged": 0.0}
        if config["b"] > 0.0:
            result["hypergrad/b"] = np.float32("nan")
        return result

    with caplog.at_level("WARNING", logger="autometa.searchers.hypergradient"):
        _, configs = drive(searcher, space, flaky, 10)
    messages = [r.getMessage() for r in caplog.records]
    assert sum(c["b"] > 0.0 for c in configs) >= 2          # NaN reported more than once ...
    assert sum("reported hypergrad/b=" in m for m in messages) == 1  # ... and said once
    assert sum("failed their checks (hypergrad_converged = 0)" in m for m in messages) == 1


def test_probes_let_one_chain_use_concurrent_trials_along_different_directions():
    """probes=2 at two concurrent trials: both come from the chain's best point, along
    different directions, and the chain still reaches the optimum (within 1e-3 in 40)."""
    problem = BoxQuadratic(1)
    searcher = make_searcher("hypergradient", metric="loss", mode="min", seed=1, chains=1,
                             probes=2, differentiable=problem.keys)
    searcher.set_search_properties("loss", "min", problem.tune_space())
    first = searcher.suggest("t0")
    extra = searcher.suggest("extra")  # nothing to probe before the first gradient: explore
    assert extra is not None and searcher.chain_of("extra") is None
    searcher.on_trial_complete("extra", {**problem(extra), "config": extra})
    searcher.on_trial_complete("t0", {**problem(first), "config": first})
    a, b = searcher.suggest("a"), searcher.suggest("b")
    assert a is not None and b is not None and a != b
    chain = searcher.all_chains[0]
    assert len(searcher.all_chains) == 1 and len(chain.pending) == 2
    start = np.array([box.to_box(searcher.space[k], first[k]) for k in problem.keys])
    da = np.array([box.to_box(searcher.space[k], a[k]) for k in problem.keys]) - start
    db = np.array([box.to_box(searcher.space[k], b[k]) for k in problem.keys]) - start
    assert abs(da @ db) / (np.linalg.norm(da) * np.linalg.norm(db)) < 0.999  # not one line
    live, best, i = [("a", a), ("b", b)], math.inf, 0
    for _ in range(38):
        trial_id, config = live.pop(0)
        result = problem(config)
        searcher.on_trial_complete(trial_id, {**result, "config": config})
        best = min(best, result["loss"] - problem.best)
        while len(live) < 2:
            nxt = searcher.suggest(f"t{i + 1}")
            if nxt is None:
                break
            i += 1
            live.append((f"t{i}", nxt))
    assert best < 1e-3, best


def test_a_point_to_evaluate_starts_the_first_chain_with_nothing_marked():
    """A plain Tune space: the differentiable parameters are known only from the first result,
    that of the point to evaluate; the first chain goes on from there with that result (not
    from the box's middle, and without running the point again)."""
    space = space_from_dict(PLAIN)
    start = {"lam": 0.01, "b": -0.5}
    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0,
                             chains=1, points_to_evaluate=[start])
    first = searcher.suggest("t0")
    assert first == start
    searcher.on_trial_complete("t0", bowl(first))
    assert searcher.chain_trials() == [["t0"]]
    second = searcher.suggest("t1")
    # a step from the start against its gradient (b moves toward its optimum 0.3), not the
    # middle of the box (b = 0) or the start again
    assert second != start and -0.5 < second["b"] < 0.0
    searcher.on_trial_complete("t1", bowl(second))
    assert searcher.chain_trials() == [["t0", "t1"]]


def test_a_chain_compares_a_trial_stopped_early_at_the_budget_both_reached():
    """Under ASHA a chain's step may stop after 1 iteration while its best ran 9; a metric
    that improves with training must not make the better point look worse."""
    space = space_from_dict({"parameters": {
        "x": {"type": "uniform", "low": 0.0, "high": 1.0, "differentiable": True}}})

    def report(searcher, trial, x, iterations):
        q = (x - 0.3) ** 2 + 0.01
        for i in range(1, iterations + 1):  # loss q (1 + 4/i): training improves it
            result = {"loss": q * (1 + 4 / i), "training_iteration": i,
                      "hypergrad/x": 2 * (x - 0.3) * (1 + 4 / i), "config": {"x": x}}
            if i < iterations:
                searcher.on_trial_result(trial, result)
        searcher.on_trial_complete(trial, result)
        return result["loss"]

    searcher = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0, chains=1)
    start = searcher.suggest("t0")["x"]
    assert start == pytest.approx(0.5)                      # the box's middle
    final = report(searcher, "t0", start, 9)
    (chain,) = searcher.all_chains
    assert chain.best_f == final                            # one budget: the value as reported
    step = searcher.suggest("t1")["x"]
    assert 0.3 < step < start                               # downhill, short of the optimum
    stopped = report(searcher, "t1", step, 1)               # ASHA stopped it at its first rung
    assert stopped > final                                  # its last value looks worse...
    assert chain.best_u == pytest.approx([box.to_box(space["x"], step)])  # ...but it is better
    assert chain.best_f < final
    assert searcher.suggest("t2")["x"] < step               # the chain goes on from there
    # a point worse at the budget both reached is still rejected
    worse = make_searcher("hypergradient", space, metric="loss", mode="min", seed=0, chains=1)
    report(worse, "t0", worse.suggest("t0")["x"], 1)        # the best: 1 iteration
    worse.suggest("t1")
    report(worse, "t1", 0.9, 9)                             # ran longer, but farther away
    assert worse.all_chains[0].best_u == pytest.approx([box.to_box(space["x"], 0.5)])

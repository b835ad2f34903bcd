"""The searcher conformance suite.

Each check takes a *factory*: ``factory(space=None, metric=..., mode=..., seed=...)``
returning a fresh ``ray.tune.search.Searcher`` (e.g. ``functools.partial(make_searcher,
"tpe")``). Checks that run Tune need a running local Ray.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from typing import Any

from ray.tune.search import ConcurrencyLimiter, Searcher

from autometa.space import Space
from autometa.testing.spaces import full_space

Factory = Callable[..., Searcher]
METRIC = "loss"


def assert_plain(value: Any, where: str = "config") -> None:
    """Every leaf is a plain Python value (no numpy scalars)."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), f"{where}: key {k!r} is not a str"
            assert_plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            assert_plain(v, f"{where}[{i}]")
    else:
        assert value is None or type(value) in (bool, int, float, str), \
            f"{where}: {value!r} is a {type(value).__module__}.{type(value).__name__}"


def _loss(config: dict) -> float:
    # A deterministic score so model-based searchers have something to learn.
    return (math.log10(config["lr"]) + 2) ** 2 + (config["width"] - 16) ** 2 / 100 + \
        abs(config["shift"]) + (0.5 if config["optimizer"]["name"] == "adam" else 0.0)


def _drive(searcher: Searcher, space: Space, n: int, prefix: str = "t",
           score: Callable[[dict], float] = _loss) -> list[dict]:
    configs = []
    for i in range(n):
        trial_id = f"{prefix}{i}"
        config = searcher.suggest(trial_id)
        if config == Searcher.FINISHED:
            break
        assert config is not None, f"suggestion {i} was None without a concurrency limit"
        problems = space.problems(config)
        assert not problems, f"suggestion {i} is outside the space: {problems} ({config})"
        assert_plain(config)
        configs.append(config)
        value = score(config)
        result = {METRIC: value, "training_iteration": 1, "config": config,
                  "hyperband_info": {"budget": 1}}
        searcher.on_trial_result(trial_id, result)
        searcher.on_trial_complete(trial_id, result)
    return configs


def check_suggestions_in_space(factory: Factory, n: int = 30) -> None:
    """Suggestions satisfy bounds, quantization, conditions and forbidden clauses; plain types."""
    space = full_space()
    configs = _drive(factory(space, metric=METRIC, mode="min", seed=0), space, n)
    assert configs, "no suggestion at all"


def check_seed_reproducible(factory: Factory, n: int = 5) -> None:
    """The same seed gives the same first suggestions."""
    space = full_space()
    a = _drive(factory(space, metric=METRIC, mode="min", seed=3), space, n)
    b = _drive(factory(space, metric=METRIC, mode="min", seed=3), space, n)
    assert a == b, "same seed, different suggestions"


def check_nonfinite_metrics(factory: Factory, n: int = 25) -> None:
    """NaN and infinite metric values are survived, and later suggestions stay valid."""
    space = full_space()
    bad = iter([math.nan, math.inf, -math.inf] * n)
    configs = _drive(factory(space, metric=METRIC, mode="min", seed=1), space, n,
                     score=lambda c: next(bad) if c["depth"] != 2 else _loss(c))
    assert len(configs) >= min(n, 2)


def check_save_restore(factory: Factory, n_before: int = 6, n_after: int = 4) -> None:
    """State saved after some trials restores into a fresh searcher that continues identically."""
    space = full_space()
    original = factory(space, metric=METRIC, mode="min", seed=7)
    _drive(original, space, n_before)
    pending = original.suggest("pending")  # a live trial at save time
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "searcher.pkl")
        original.save(path)
        restored = factory(space, metric=METRIC, mode="min", seed=99)
        restored.restore(path)
    assert pending is not None
    for searcher in (original, restored):  # the live trial finishes after the restore
        result = {METRIC: _loss(pending), "training_iteration": 1, "config": pending}
        searcher.on_trial_complete("pending", result)
    a = _drive(original, space, n_after, prefix="after")
    b = _drive(restored, space, n_after, prefix="after")
    assert a == b, "the restored searcher does not continue like the original"


def check_unknown_trial_after_restore(factory: Factory) -> None:
    """A trial the restored state never saw (suggested after the last save) is taken over.

    Tune restores the searcher from its last experiment checkpoint, so trials suggested
    after it report to a searcher that does not know them (``TuneBOHB`` raised ``KeyError``).
    """
    space = full_space()
    original = factory(space, metric=METRIC, mode="min", seed=5)
    _drive(original, space, 3)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "searcher.pkl")
        original.save(path)
        late = original.suggest("late")  # after the save: unknown to the restored copy
        restored = factory(space, metric=METRIC, mode="min", seed=5)
        restored.restore(path)
    result = {METRIC: _loss(late), "training_iteration": 1, "config": late,
              "hyperband_info": {"budget": 1}}
    restored.on_trial_result("late", result)
    restored.on_trial_complete("late", result)
    _drive(restored, space, 3, prefix="next")


def check_late_space(factory: Factory, n: int = 10) -> None:
    """Works when Tune hands over the space, metric and mode late (``set_search_properties``)."""
    from autometa.convert.tune import to_tune

    space = full_space()
    tune_space = to_tune(space)
    searcher = factory(None, metric=None, mode=None, seed=0)
    assert searcher.set_search_properties(METRIC, "min", tune_space), \
        "set_search_properties refused a Tune param_space"
    # The space read back from Tune lacks the forbidden clause (Tune cannot express it).
    plain = Space(space.parameters)
    _drive(searcher, plain, n)


def check_concurrency_limiter(factory: Factory) -> None:
    """Under ``ConcurrencyLimiter(max_concurrent=2)``: two live trials, then None until one ends."""
    space = full_space()
    limiter = ConcurrencyLimiter(factory(space, metric=METRIC, mode="min", seed=0),
                                 max_concurrent=2)
    first, second = limiter.suggest("a"), limiter.suggest("b")
    assert first is not None and second is not None
    assert limiter.suggest("c") is None, "a third concurrent suggestion was made"
    limiter.on_trial_complete("a", {METRIC: 1.0, "config": first})
    third = limiter.suggest("c")
    assert third is not None and not space.problems(third)


def _instance(searcher: Searcher) -> dict[str, Any]:
    """The instance key a racing searcher needs on an evaluated point (else nothing)."""
    key = getattr(searcher, "instance_key", None)
    return {} if key is None else {key: searcher.instances[0]}


def check_points_to_evaluate(factory: Factory) -> None:
    """``points_to_evaluate`` run first, in order (a partial point is completed from the space);
    an unknown key or a value outside the space is a ``ValueError`` naming the point."""
    import numpy as np

    space = full_space()
    rng = np.random.default_rng(11)
    points = [space.sample(rng) for _ in range(2)]
    partial = {k: v for k, v in space.sample(rng).items() if k != "lr"}
    searcher = factory(space, metric=METRIC, mode="min", seed=0,
                       points_to_evaluate=points + [partial])
    suggested = _drive(searcher, space, 3)
    for i, point in enumerate(points):
        assert space.flatten(suggested[i]) == space.flatten(point), \
            f"suggestion {i} is not points_to_evaluate[{i}]: {suggested[i]} vs {point}"
    rest = space.flatten(suggested[2])
    assert {k: v for k, v in rest.items() if k != "lr"} == space.flatten(partial)
    assert 1e-4 <= rest["lr"] <= 1.0
    for bad, says in (({**points[0], "colour": 1}, "unknown parameter"),
                      ({**points[0], "lr": 5.0}, "lr")):
        try:
            factory(space, metric=METRIC, mode="min", seed=0, points_to_evaluate=[bad]) \
                .suggest("t0")
        except ValueError as err:
            assert "points_to_evaluate[0]" in str(err) and says in str(err), str(err)
        else:
            raise AssertionError(f"a bad point was accepted: {bad}")


def check_add_evaluated_point(factory: Factory, n: int = 25) -> None:
    """``add_evaluated_point`` is accepted (never ``NotImplementedError``), a config outside the
    space is a ``ValueError``, suggestions stay valid, and a searcher that models results
    (``models_results``) suggests differently after it was told points."""
    import numpy as np

    space = full_space()
    rng = np.random.default_rng(5)
    told = factory(space, metric=METRIC, mode="min", seed=2)
    for _ in range(n):
        config = space.sample(rng)
        told.add_evaluated_point({**config, **_instance(told)}, _loss(config))
    told.add_evaluated_point({**space.sample(rng), **_instance(told)}, math.nan)
    try:
        told.add_evaluated_point({**space.sample(rng), "lr": -1.0, **_instance(told)}, 1.0)
    except ValueError as err:
        assert "lr" in str(err), str(err)
    else:
        raise AssertionError("a config outside the space was accepted")
    after = _drive(told, space, 4)
    if getattr(told, "models_results", False):
        fresh = _drive(factory(space, metric=METRIC, mode="min", seed=2), space, 4)
        assert after != fresh, "the evaluated points changed nothing"


ALL_CHECKS = (check_suggestions_in_space, check_seed_reproducible, check_nonfinite_metrics,
              check_save_restore, check_unknown_trial_after_restore, check_late_space,
              check_concurrency_limiter, check_points_to_evaluate, check_add_evaluated_point)
"""Every offline check; :func:`check_in_tune` additionally needs a running Ray."""


def check_in_tune(factory: Factory, scheduler: Any = None, num_samples: int = 6,
                  storage: str | None = None) -> Any:
    """A real ``tune.Tuner`` run of the quadratic trainable; some trials report NaN.

    Returns the ``ResultGrid``. Needs a running Ray.
    """
    from ray import tune

    from autometa.testing.spaces import nan_space
    from autometa.trainables.synthetic import quadratic

    space = nan_space()
    searcher = factory(space, metric=METRIC, mode="min", seed=0)
    with tempfile.TemporaryDirectory() as folder:
        tuner = tune.Tuner(
            quadratic,
            tune_config=tune.TuneConfig(metric=METRIC, mode="min", num_samples=num_samples,
                                        search_alg=ConcurrencyLimiter(searcher, 2),
                                        scheduler=scheduler,
                                        reuse_actors=True),  # as `autometa run` does
            run_config=tune.RunConfig(storage_path=storage or folder, verbose=0),
        )
        results = tuner.fit()
    assert not results.errors, f"trials failed: {results.errors}"
    assert len(results) == num_samples, f"{len(results)} trials instead of {num_samples}"
    for result in results:
        assert not space.problems(result.config), result.config
    return results

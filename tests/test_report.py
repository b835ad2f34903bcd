"""``autometa show``'s plots and report.html: what they draw, parameter importance against
closed forms, and the report loaded in a real headless Chromium."""

import math
import os
import shutil
import textwrap

import numpy as np
import pytest

from autometa.launch import figures
from autometa.launch.cli import main
from autometa.launch.importance import MIN_TRIALS, main_effects


def test_log_axis_for_log_scale_parameters_and_values_over_a_decade():
    assert figures.log_axis([0.002, 0.01, 0.015], declared=True)  # a loguniform lr
    assert not figures.log_axis([0.002, 0.01, 0.015])
    assert figures.log_axis([0.18, 2.3])  # a loss over a decade: its good region is not squeezed
    assert not figures.log_axis([-1.0, 2.0, 300.0], declared=True)  # not all positive
    assert not figures.log_axis([float("nan")], declared=True)


@pytest.mark.parametrize("mode, worst", [("min", 3.0), ("max", 1.0)])
def test_trials_are_marked_by_how_they_ended(mode, worst):
    values = [1.0, 3.0, math.nan, 2.0]
    endings = [figures.ended(d, e) for d, e in
               [(False, False), (False, True), (True, False), (False, False)]]
    traces = figures.over_trials(values, endings, ["a", "b", "c", "d"], "loss", mode).traces
    by_end = {t.ended: t for t in traces if t.style == "markers"}
    assert by_end[figures.FINISHED].text == ["a", "d"]
    assert by_end[figures.EARLY].text == ["b"] and by_end[figures.EARLY].x == [2]
    # a diverged trial has no value: drawn at the worst value shown, and the legend says so
    assert by_end[figures.DIVERGED].y == [worst] and "worst" in by_end[figures.DIVERGED].name
    best = next(t for t in traces if t.style == "lines").y
    assert best == ([1.0, 1.0, 1.0, 1.0] if mode == "min" else [1.0, 3.0, 3.0, 3.0])


def test_a_categorical_parameter_is_drawn_on_labels_and_a_constant_one_not_at_all():
    fig = figures.against_parameter("opt", ["sgd", "adam", "sgd"], [1.0, 2.0, 3.0],
                                    [figures.FINISHED] * 3, ["a", "b", "c"], "loss", "min")
    assert fig.categories == ["adam", "sgd"] and fig.traces[0].x == [1, 0, 1]
    assert figures.against_parameter("w", [0.1, 0.1], [1.0, 2.0], [figures.FINISHED] * 2,
                                     ["a", "b"], "loss", "min") is None


def test_a_race_line_ends_where_its_candidate_was_dropped():
    values = [{0: 1.0, 1: 3.0, 2: 2.0}, {0: 5.0, 1: 5.0, 2: 7.0}]
    fig = figures.race_figure(values, [None, 2], [True, False], ["x=1", "x=2"], "loss")
    survivor, dropped = fig.traces
    assert survivor.y == [1.0, 2.0, 2.0] and survivor.width > dropped.width
    assert dropped.x == [1, 2] and dropped.y == [5.0, 5.0]  # dropped after two instances


def test_each_chain_is_drawn_in_its_own_order_with_its_best_so_far():
    fig = figures.chain_figure([["t1", "t3"], ["t2"]], {"t1": 2.0, "t2": 4.0, "t3": 1.0},
                               "loss", "min")
    points, best, other, _ = fig.traces
    assert points.y == [2.0, 1.0] and best.y == [2.0, 1.0] and other.y == [4.0]
    assert points.group == best.group != other.group  # a chain's points and line: one colour


def test_importance_recovers_the_variance_shares_of_an_additive_function():
    # y = 5 x0 + 0.5 x1 + 2 [c = b], x ~ U(0, 1), c uniform over three labels, x2 unused:
    # Var = 25/12 + 0.25/12 + 4 (1/3)(2/3): shares 0.696, 0.007, 0, 0.297
    rng = np.random.default_rng(0)
    n = 300
    x0, x1, x2 = rng.uniform(size=(3, n))
    c = rng.choice(["a", "b", "c"], n)
    y = 5 * x0 + 0.5 * x1 + 2.0 * (c == "b")
    imp = main_effects({"x0": list(x0), "x1": list(x1), "x2": list(x2), "c": list(c)}, list(y))
    total = 25 / 12 + 0.25 / 12 + 8 / 9
    assert imp.explained and imp.r2 > 0.9 and imp.trials == n
    assert imp.shares["x0"] == pytest.approx(25 / 12 / total, abs=0.1)
    assert imp.shares["c"] == pytest.approx(8 / 9 / total, abs=0.1)
    assert imp.shares["x1"] < 0.03 and imp.shares["x2"] < 0.01


def test_importance_says_when_the_forest_explains_nothing_and_needs_enough_trials():
    rng = np.random.default_rng(1)
    noise = main_effects({"x": list(rng.uniform(size=200))}, list(rng.normal(size=200)))
    assert not noise.explained and noise.r2 < 0.3
    fig = figures.importance_figure(noise.shares, noise.r2, noise.trials, noise.explained)
    assert "read these shares as noise" in fig.note
    few = MIN_TRIALS - 1
    assert main_effects({"x": list(range(few))}, [float(i) for i in range(few)]) is None
    # non-finite values are left out before counting
    assert main_effects({"x": list(range(MIN_TRIALS))},
                        [math.nan] + [float(i) for i in range(MIN_TRIALS - 1)]) is None


ONLINE_MODEL = """\
import math

from ray import tune

from autometa import hypergrad_metrics


def fit(config):
    x, lr = config["x"], 0.1
    for step in range(1, 5):
        lr *= 0.8  # a hyperparameter the trial changes as it trains
        loss = (x - 0.3) ** 2 + 1.0 / step if x < 0.9 else math.nan
        tune.report({"loss": loss, "hparams/lr": lr,
                     **hypergrad_metrics({"x": 2 * (x - 0.3)}, {"x": x})})
"""


def _browser():
    """Debian's Chromium and ChromeDriver (installed by .ci/run): a WebDriver that keeps the
    page's console."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI") or os.environ.get("AUTOMETA_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are missing (.ci/run installs them)")
        pytest.skip("no chromium/chromedriver here (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1200,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.slow
def test_show_draws_chains_trajectories_and_endings_and_a_browser_renders_the_report(
        tmp_path, storage, ray_session, capsys):
    (tmp_path / "online_model.py").write_text(ONLINE_MODEL)
    file = tmp_path / "online.yaml"
    file.write_text(textwrap.dedent(f"""\
        experiment:
          name: online
          trainable: online_model:fit
          metric: loss
          searcher: {{name: hypergradient, chains: 1, points_to_evaluate: [{{x: 0.95}}]}}
          scheduler: {{name: asha, max_t: 4, grace_period: 1, reduction_factor: 2}}
          num_samples: 10
          max_concurrent_trials: 2
          storage_path: {storage}
        parameters:
          x: {{type: uniform, low: 0, high: 1, differentiable: true}}
          w: {{type: loguniform, low: 0.001, high: 1}}
        """))
    assert main(["run", str(file), "--quiet"]) == 0
    path = os.path.join(storage, "online")
    capsys.readouterr()
    assert main(["show", path]) == 0
    out = capsys.readouterr().out
    report = os.path.join(path, "autometa_report", "report.html")
    assert f"Interactive report (one file, opens offline): {report}" in out

    from autometa.launch.plots import figures_of
    from autometa.launch.show import summarize

    summary = summarize(path)
    drawn = {fig.name: fig for fig in figures_of(summary)}
    for name in ("metric_over_trials", "metric_vs_x", "metric_vs_w", "chains", "trajectory_lr"):
        assert name in drawn and os.path.exists(os.path.join(path, "autometa_report",
                                                             f"{name}.png")), name
    assert drawn["metric_vs_w"].xlog  # drawn on a log scale in the file
    # the chains hold the trials the descent ran (the others came from its base searcher),
    # each once, in the order they ran: the diverged 0.95 start ended its chain at once
    chained = [t for chain in summary.chains for t in chain]
    assert len(chained) == len(set(chained)) and set(chained) <= set(summary.table["trial_id"])
    x_of = dict(zip(summary.table["trial_id"], summary.table["config/x"], strict=True))
    assert [x_of[t] for t in summary.chains[0]] == [0.95]
    assert max(map(len, summary.chains)) >= 3
    longest = max(summary.chains, key=len)
    assert abs(x_of[longest[-1]] - 0.3) < abs(x_of[longest[0]] - 0.3)  # it descended
    over = drawn["metric_over_trials"]
    diverged = [t for t in over.traces if t.ended == figures.DIVERGED]
    assert len(diverged) == 1 and len(diverged[0].x) == int(summary.table["diverged"].sum()) >= 1
    # each trial's own learning-rate schedule: 0.1 * 0.8^k over its iterations
    steps, lrs = next(iter(summary.trajectories["lr"].values()))
    assert lrs == pytest.approx([0.1 * 0.8 ** k for k in steps])
    assert len(summary.trajectories["lr"]) == int((summary.table["iterations"] > 1).sum())

    browser = _browser()
    try:
        browser.get("file://" + report)
        plots = browser.execute_script(
            "return Array.from(document.querySelectorAll('.js-plotly-plot')).map("
            "g => [g.id, g.data.length, g.querySelectorAll('.main-svg').length,"
            " g.querySelectorAll('.scatterlayer .trace, .barlayer .trace').length])")
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        browser.quit()
    assert not errors, errors
    assert {p[0] for p in plots} == {f"plot-{name}" for name in drawn}
    for plot_id, traces, svgs, rendered in plots:
        fig = drawn[plot_id[len("plot-"):]]
        assert traces == len(fig.traces) and svgs > 0, plot_id
        assert rendered == len(fig.traces), (plot_id, rendered)  # every trace was drawn

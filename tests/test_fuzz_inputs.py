"""A generated fuzz suite of search-space files: every key of a file that uses every feature
given wrong types, bounds, sizes and encodings, keys removed and added, hostile YAML. Each
case must end clean: ``autometa validate`` exits 0 or 2, never raises, and an exit 2 names
the file on one line with no traceback."""

from __future__ import annotations

import copy
import json
import os

import pytest
import yaml

from autometa.launch.cli import main

BASE = {
    "experiment": {
        "trainable": "quadratic", "metric": "loss", "mode": "min",
        "searcher": {"name": "tpe", "n_initial_points": 4},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "num_samples": 4, "max_concurrent_trials": 2, "stop": {"training_iteration": 3},
        "seed": 0, "storage_path": "results", "name": "fuzz",
        "resources_per_trial": {"cpu": 1},
    },
    "parameters": {
        "x": {"type": "uniform", "low": 0.0, "high": 2.0, "differentiable": True},
        "lr": {"type": "loguniform", "low": 1e-4, "high": 0.1},
        "drop": {"type": "quniform", "low": 0.0, "high": 0.5, "q": 0.1},
        "units": {"type": "randint", "low": 8, "high": 64, "log": True},
        "noise": {"type": "normal", "mu": 0.0, "sigma": 1.0, "low": -2.0, "high": 2.0},
        "act": {"type": "choice", "values": ["relu", "tanh"]},
        "y": {"type": "grid", "values": [0.5, 1.5]},
        "opt": {"type": "choice", "values": [
            {"name": "sgd", "momentum": {"type": "uniform", "low": 0.0, "high": 0.9}},
            {"name": "adam"}]},
        "gated": {"type": "uniform", "low": 0.0, "high": 1.0, "condition": {"act": "relu"}},
        "iterations": 1,
    },
    "forbidden": [{"act": "tanh", "y": 1.5}],
}

BAD_VALUES = [None, "", True, -1, 0, 1e400, float("nan"), 10 ** 4000, [1, 2], {"a": 1},
              "1e-4", -1e308]
"""Nothing, an empty string, a boolean, a negative, zero, an infinity, NaN, an integer beyond a
float, a list, a mapping, a number in quotes, the most negative float."""


def _leaf_paths(node, path=()):
    """Every key path of the document down to its leaves (and the containers on the way)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (key,)
            yield from _leaf_paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield path + (i,)
            yield from _leaf_paths(value, path + (i,))


def _set(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _delete(doc, path):
    node = doc
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


def _cases():
    paths = list(_leaf_paths(BASE))
    cases = []
    for path in paths:
        name = ".".join(map(str, path))
        # a mutated parameter or forbidden clause is checked without the experiment section
        # (the trainable and options stay the base file's); the searchers meet every mutated
        # space in the test below
        base = BASE if path[0] == "experiment" else {
            k: v for k, v in BASE.items() if k != "experiment"}
        for i, bad in enumerate(BAD_VALUES):
            doc = copy.deepcopy(base)
            _set(doc, path, bad)
            cases.append((f"{name}={i}", doc))
        doc = copy.deepcopy(base)
        _delete(doc, path)
        cases.append((f"{name}:removed", doc))
        parent = path[:-1]
        node = BASE
        for key in parent:
            node = node[key]
        if isinstance(node, dict):
            doc = copy.deepcopy(base if parent else BASE)
            _set(doc, parent + ("no_such_key",), 1)
            cases.append((f"{'.'.join(map(str, parent)) or 'top'}+unknown", doc))
    return cases


CASES = _cases()

HOSTILE = {
    "billion_laughs": "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    + "parameters: {x: *i}\n",
    "recursive_alias": "parameters: &a {x: *a}\n",
    "deep_list": "parameters: {x: " + "[" * 5000 + "]" * 5000 + "}\n",
    "deep_mapping": "parameters:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(300)),
    "tabs": "parameters:\n\tx: {type: uniform, low: 0, high: 1}\n",
    "binary": "parameters: {x: \x00\x01\x02}\n",
    "bom_and_crlf": "\ufeffparameters:\r\n  x: {type: uniform, low: 0, high: 1}\r\n",
    "duplicate_key": "parameters:\n  x: 1\n  x: 2\n",
    "python_tag": "parameters: {x: !!python/object/apply:os.system [echo hi]}\n",
    "tune_eval": "parameters: {x: {eval: '__import__(\"os\").system(\"echo hi\")'}}\n",
    "huge_choice": "parameters:\n  x: {type: choice, values: [" + ", ".join(
        str(i) for i in range(100000)) + "]}\n",
    "huge_int": "parameters:\n  x: {type: randint, low: 0, high: " + "9" * 5000 + "}\n",
    "empty": "",
    "only_comment": "# nothing\n",
    "a_list": "- 1\n- 2\n",
    "a_scalar": "42\n",
    "unterminated": "parameters: {x: [1, 2\n",
}


def _check(path, capsys):
    try:
        code = main(["validate", str(path)])
    except SystemExit as exit_:  # argparse-level exits are codes too
        code = exit_.code
    captured = capsys.readouterr()
    assert code in (0, 2), (code, captured.err)
    assert "Traceback" not in captured.out + captured.err
    if code == 2:
        lines = [line for line in captured.err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and str(path) in lines[0], captured.err
    return code


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One folder for the cases' files (a fresh tmp_path per case costs more than the case)."""
    return tmp_path_factory.mktemp("fuzz")


def _write(index, folder):
    """Case ``index``'s file, in its own folder (results would go below it)."""
    name, doc = copy.deepcopy(CASES[index])
    tmp_path = folder / f"case{index}"
    tmp_path.mkdir(exist_ok=True)
    if isinstance(doc.get("experiment"), dict) and isinstance(
            doc["experiment"].get("storage_path"), str):
        doc["experiment"]["storage_path"] = str(tmp_path / doc["experiment"]["storage_path"])
    path = tmp_path / "space.yaml"
    try:
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    except (ValueError, OverflowError):  # a value YAML cannot write: try JSON's spelling
        path = tmp_path / "space.json"
        path.write_text(json.dumps(doc, allow_nan=True))
    return path


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c[0] for c in CASES])
def test_a_mutated_file_validates_or_is_refused_cleanly(index, folder, capsys):
    _check(_write(index, folder), capsys)


def test_what_validate_accepts_the_run_builds(folder, capsys):
    """``validate`` checks options against the declarations alone (no Ray); ``run`` also
    builds the searcher and Ray's scheduler before Ray starts. Every mutated experiment
    section that validate accepts must build, and come out the same; every one it refuses,
    ``run`` refuses with the same line (exit 2, before Ray starts)."""
    from autometa.launch.plan import plan_experiment
    from autometa.space import load_space

    accepted = 0
    for index, (name, _) in enumerate(CASES):
        if not name.startswith("experiment"):
            continue
        path = _write(index, folder)
        if _check(path, capsys) != 0:
            main(["validate", str(path)])  # (_check read its output: again, for the line)
            said = capsys.readouterr().err
            assert main(["run", str(path)]) == 2, name
            assert capsys.readouterr().err == said, name
            continue
        accepted += 1
        space = load_space(str(path))
        light = plan_experiment(space, need_trainable=False, build=False)
        built = plan_experiment(space, need_trainable=False, build=True)  # SpaceError: a miss
        assert light == built, name
    assert accepted >= 30, accepted


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_yaml_is_refused_cleanly_and_quickly(name, tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_bytes(HOSTILE[name].encode("utf-8", "surrogatepass"))
    code = _check(path, capsys)
    if name not in ("bom_and_crlf", "huge_choice"):  # (both are valid files)
        assert code == 2, name


def test_the_base_file_is_valid(tmp_path, capsys):
    doc = copy.deepcopy(BASE)
    doc["experiment"]["storage_path"] = str(tmp_path / "results")
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert _check(path, capsys) == 0
    assert len(CASES) > 900 and os.path.exists(path)


def _valid_spaces():
    """The distinct spaces among the mutants that load (the experiment section aside)."""
    from autometa.space import SpaceError, space_from_dict

    seen, spaces = set(), []
    for name, doc in CASES:
        body = {k: v for k, v in doc.items() if k != "experiment"}
        key = repr(body)
        if key in seen:
            continue
        seen.add(key)
        try:
            spaces.append((name, space_from_dict(body)))
        except SpaceError:
            continue
    return spaces


def test_every_searcher_draws_a_valid_config_from_every_mutant_that_loads():
    """What validate accepts, every registered searcher and Tune can sample from (the
    mutants' huge or tiny bounds reach NumPy, hyperopt, ConfigSpace and Tune)."""
    from autometa.convert.configspace import decode_configspace, to_configspace
    from autometa.convert.tune import to_tune
    from autometa.searchers import SEARCHERS, make_searcher

    spaces = _valid_spaces()
    assert len(spaces) > 100
    for name, space in spaces:
        for searcher_name in SEARCHERS:
            if searcher_name == "bohb":
                continue  # needs the bohb scheduler; its space is ConfigSpace's, checked below
            searcher = make_searcher(searcher_name, space, metric="loss", mode="min", seed=0)
            config = searcher.suggest("t0")
            assert isinstance(config, dict), (name, searcher_name, config)
            config = {k: v for k, v in config.items() if k != "instance"}
            assert not space.problems(config), (name, searcher_name, config)
        for domain in to_tune(space).values():
            if hasattr(domain, "sample"):
                domain.sample()
        try:  # bohb's space: converted, or refused with a message validate shows as file:line
            cs = to_configspace(space, seed=0)
        except ValueError as err:
            assert str(err), name
            continue
        flat = decode_configspace(space, dict(cs.sample_configuration()))
        assert not space.problems(space.assemble(flat)), (name, flat)


RUN = {"": 4, "experiment.searcher:removed": 4, "experiment.scheduler:removed": 4,
       "experiment.scheduler.grace_period=10": 4, "experiment.stop.training_iteration=4": 4,
       "experiment.stop:removed": 4, "experiment.resources_per_trial.cpu=10": 4}
"""The base file and mutants that validate accepts, each run for real, with the trials each
must finish: the random searcher, the fifo scheduler, a grace period of 1e-4, a stop at
iteration 0 (every trial stops after its first report), no stop at all, 1e-4 CPU a trial."""


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUN))
def test_the_base_file_and_accepted_mutants_run(name, folder, ray_session, capsys):
    """A tiny run of what validate accepts (TPE or random, ASHA or FIFO, every parameter
    type): it ends with every planned trial finished, and exit 0."""
    if name:
        index = next(i for i, (n, _) in enumerate(CASES) if n == name)
        path = _write(index, folder)
        assert _check(path, capsys) == 0
    else:
        doc = copy.deepcopy(BASE)
        doc["experiment"]["storage_path"] = str(folder / "base-results")
        path = folder / "base.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["run", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"Trials: {RUN[name]} of {RUN[name]} planned finished" in out, out

"""Real NNI search spaces (tests/data/nni, from NNI's examples) and NNI's own leniencies:
read as NNI means them, written back as they were, converted to every target."""

import glob
import json
import logging
import os
import warnings

import numpy as np
import pytest

from autometa.convert.configspace import from_configspace, to_configspace
from autometa.convert.document import dump_document
from autometa.convert.hyperopt import to_hyperopt
from autometa.convert.nni import to_nni
from autometa.convert.tune import to_tune
from autometa.launch.cli import main
from autometa.space import SpaceError, SpaceWarning, load_space, space_from_text

DATA = os.path.join(os.path.dirname(__file__), "data", "nni")
FILES = sorted(glob.glob(os.path.join(DATA, "*.json")))


def _load(path):
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        space = load_space(path)
    return space, [w.message for w in said if issubclass(w.category, SpaceWarning)]


def test_the_real_files_are_there():
    assert len(FILES) == 7 and os.path.exists(os.path.join(DATA, "LICENSE"))


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_a_real_nni_file_loads_samples_converts_and_writes_back_as_it_was(path, tmp_path):
    space, said = _load(path)
    original = json.load(open(path))
    assert set(space.sample(0)) == set(original)  # NNI's names as they are ("coef0 " too)
    rng = np.random.default_rng(0)
    for _ in range(30):
        config = space.sample(int(rng.integers(1 << 30)))
        assert not space.problems(config), config
    assert to_nni(space) == original  # nothing lost or renamed
    to_tune(space), to_hyperopt(space)
    assert from_configspace(to_configspace(space)).parameters == space.parameters
    own = tmp_path / "space.yaml"
    own.write_text(dump_document(space))
    assert load_space(str(own)).parameters == space.parameters  # and in autometa's format
    cascading = os.path.basename(path) == "mnist_cascading.json"
    assert bool(said) == cascading, said


def test_a_nested_choice_keeps_nnis_name_key_for_the_trial():
    space, _ = _load(os.path.join(DATA, "mnist_nested.json"))
    seen = set()
    for seed in range(60):
        layer = space.sample(seed)["layer0"]
        seen.add(layer["_name"])  # the trial reads value["_name"], as under NNI
        expected = {"Empty": set(), "Conv": {"kernel_size"}}.get(layer["_name"], {"pooling_size"})
        assert set(layer) - {"_name"} == expected
    assert seen == {"Empty", "Conv", "Max_pool", "Avg_pool"}
    tune_space = to_tune(space)["layer0"]
    assert {c["_name"] for c in tune_space.categories} == seen


def test_nni_lists_holding_a_spec_are_passed_as_written_and_said_so():
    space, said = _load(os.path.join(DATA, "mnist_cascading.json"))
    assert len(said) == 30  # three list options in each of ten layers
    assert "mnist_cascading.json:" in str(said[0]) and "layer0._value[1]" in str(said[0])
    assert "the trial receives the list as written" in str(said[0])
    values = space["layer0"].values
    assert values[1] == ["Conv", {"_type": "choice", "_value": [2, 3, 5]}]


def test_nni_quniform_bounds_off_the_grid_move_inward_and_say_so():
    text = json.dumps({"drop": {"_type": "quniform", "_value": [0.05, 0.52, 0.1]},
                       "units": {"_type": "qloguniform", "_value": [10, 1000, 16]}}, indent=1)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        space = space_from_text(text, file="ss.json")
    messages = sorted((str(w.message) for w in said), key=lambda m: "units" in m)
    assert messages[0].startswith("ss.json:4: drop._value: [0.05, 0.52] are not multiples of "
                                  "q=0.1: NNI clips its draws to those bounds; autometa draws "
                                  "the multiples of q in [0.1, 0.5]"), messages
    assert "[16, 992]" in messages[1]
    assert (space["drop"].low, space["drop"].high) == pytest.approx((0.1, 0.5))
    assert (space["units"].low, space["units"].high) == (16, 992)
    for seed in range(40):
        config = space.sample(seed)
        assert 0.1 - 1e-12 <= config["drop"] <= 0.5 + 1e-12 and config["units"] % 16 == 0
    with pytest.raises(SpaceError, match=r"ss.json:1: x._value: no multiple of q=1 lies in"):
        space_from_text(json.dumps({"x": {"_type": "quniform", "_value": [0.2, 0.7, 1]}}),
                        file="ss.json")


def test_nni_sub_spaces_without_a_name_are_named_by_position_and_mixed_ones_refused():
    text = json.dumps({"opt": {"_type": "choice", "_value": [
        {"lr": {"_type": "uniform", "_value": [0, 1]}}, {"_name": "adam"}]}})
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        space = space_from_text(text, file="ss.json")
    assert len(said) == 1 and "options [0] have no '_name'" in str(said[0].message)
    assert space["opt"].values == ("0", "adam")
    assert {space.sample(s)["opt"]["_name"] for s in range(30)} == {"0", "adam"}
    with pytest.raises(SpaceError, match="mix of sub-spaces"):
        space_from_text(json.dumps({"opt": {"_type": "choice", "_value": [
            {"_name": "sgd"}, "adam"]}}), file="ss.json")


def test_name_key_in_autometa_files():
    space = space_from_text(
        "parameters:\n  opt:\n    type: choice\n    name_key: kind\n    values:\n"
        "      - {kind: sgd, momentum: {type: uniform, low: 0, high: 1}}\n      - {kind: adam}\n")
    assert {space.sample(s)["opt"]["kind"] for s in range(20)} == {"sgd", "adam"}
    assert "name_key: kind" in dump_document(space)
    for bad, problem in (("name_key: 3", "expected a non-empty string"),
                         ("name_key: kind\n    values: [1, 2]", "name_key is for a nested")):
        with pytest.raises(SpaceError, match=problem):
            space_from_text(f"parameters:\n  opt:\n    type: choice\n    {bad}\n"
                            + ("    values: [{kind: a}]\n" if "values" not in bad else ""))
    with pytest.raises(SpaceError, match="needs a 'kind'"):
        space_from_text("parameters:\n  opt: {type: choice, name_key: kind, values: [{a: 1}]}\n")


def test_validate_prints_the_nni_warning_as_one_line(capsys, caplog):
    with caplog.at_level(logging.WARNING, logger="py.warnings"):
        assert main(["validate", os.path.join(DATA, "mnist_cascading.json")]) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "py.warnings"]
    assert len(lines) == 30 and all("\n" not in line for line in lines)
    assert lines[0].startswith("SpaceWarning: ") and "mnist_cascading.json:6:" in lines[0]
    assert "ok (10 searchable" in capsys.readouterr().out

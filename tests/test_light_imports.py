"""Converting spaces or running black-box searches never imports torch; the space layer not Ray."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(m for m in ('torch', 'ray', 'hyperopt', " \
                   "'ConfigSpace') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         timeout=120)
    return set(out.stdout.split())


def test_space_layer_loads_neither_ray_nor_torch():
    loaded = loaded_after("import autometa, autometa.space, autometa.convert\n"
                          "s = autometa.load_space('search_spaces/conditional.yaml')\n"
                          "s.sample(0)\n"
                          "from autometa.convert.document import dump_document; dump_document(s)\n"
                          "from autometa.convert.nni import to_nni")
    assert loaded == set()


def test_validate_checks_every_searcher_and_scheduler_without_ray(tmp_path):
    """validate checks options against the declarations: it imports no Ray (about 0.2 s a
    file here, against 1.7-2.2 s when it built Ray's classes)."""
    files = []
    for searcher, scheduler in [("tpe", "asha"), ("bohb", "bohb"), ("hypergradient", "median"),
                                ("race", "fifo"), ("irace", "hyperband"), ("grid", "asha"),
                                ("random", "pbt"), ("random", "hypergradient_pbt")]:
        path = tmp_path / f"{searcher}-{scheduler}.yaml"
        path.write_text(f"experiment:\n  searcher: {{name: {searcher}}}\n"
                        f"  scheduler: {{name: {scheduler}}}\n"
                        "  stop: {training_iteration: 9}\n  max_concurrent_trials: 100\n"
                        "parameters:\n  x: {type: uniform, low: 0, high: 1, differentiable: true}\n"
                        "  y: {type: grid, values: [1, 2]}\n")
        files.append(str(path))
    loaded = loaded_after("import contextlib, io\nfrom autometa.launch.cli import main\n"
                          "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
                          f"    assert main(['validate', *{files!r}]) == 0\n"
                          "assert out.getvalue().count(': ok (') == 8, out.getvalue()")
    assert loaded == {"ConfigSpace"}  # bohb's space is converted, as the run will


def test_cli_validate_and_convert_do_not_load_torch():
    loaded = loaded_after("from autometa.launch.cli import main\n"
                          "main(['validate', 'search_spaces/quickstart.yaml'])\n"
                          "main(['convert', 'search_spaces/tpe.yaml', '--to', 'configspace-json',"
                          " '-o', '/dev/null'])")
    assert "torch" not in loaded


@pytest.mark.parametrize("name", ["random", "grid", "tpe", "bohb"])
def test_black_box_searchers_do_not_load_torch(name):
    loaded = loaded_after(
        "from autometa.searchers import make_searcher\n"
        "from autometa.testing.spaces import full_space\n"
        f"s = make_searcher('{name}', full_space(), metric='loss', mode='min', seed=0)\n"
        "s.suggest('t1')\n"
        "import autometa.schedulers as sch; sch.make_scheduler('asha')")
    assert "torch" not in loaded and "ray" in loaded


def test_a_black_box_run_from_the_command_line_loads_no_torch(tmp_path):
    """Tune's TensorBoard logger imports torch (through tensorboardX) in the driver, about 3 s
    a run on two cores: `autometa run` names Tune's loggers and leaves it out unless the file
    asks (experiment.tensorboard), still writing each trial's result.json and progress.csv."""
    file = tmp_path / "q.yaml"
    file.write_text(f"experiment: {{name: q, trainable: quadratic, metric: loss, searcher: grid, "
                    f"num_samples: 1, storage_path: {tmp_path}}}\n"
                    "parameters: {x: {type: grid, values: [0.1, 0.2]}, iterations: 2}\n")
    loaded = loaded_after("import contextlib, io\nfrom autometa.launch.cli import main\n"
                          "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
                          f"    assert main(['run', {str(file)!r}, '--quiet']) == 0\n"
                          "assert 'Trials: 2 of 2 planned finished.' in out.getvalue()\n"
                          "import ray\n"
                          "assert not ray.is_initialized()  # stopped before the summary")
    assert "torch" not in loaded and "ray" in loaded
    trials = [d for d in (tmp_path / "q").iterdir() if d.is_dir() and d.name[0] != "."]
    assert len(trials) == 2
    for trial in trials:
        assert [json.loads(line)["iteration"] for line in open(trial / "result.json")] == [1, 2]
        assert len((trial / "progress.csv").read_text().splitlines()) == 3
        assert not list(trial.glob("events.out.tfevents.*"))


def test_finding_wrong_labels_loads_neither_torch_nor_ray():
    loaded = loaded_after(
        "import numpy as np\n"
        "from autometa.data.label_issues import find_label_issues, label_quality_scores\n"
        "x = np.random.default_rng(0).normal(size=(60, 3)); y = (x[:, 0] > 0).astype(int)\n"
        "assert find_label_issues(y, features=x).shape == (60,)\n"
        "label_quality_scores(y, features=x)")
    assert "torch" not in loaded and "ray" not in loaded


def test_hypergradient_engine_never_imports_ray():
    loaded = loaded_after("import autometa.hypergrad, autometa.hypergrad.loop, "
                          "autometa.hypergrad.online, "
                          "autometa.hypergrad.families, autometa.trial")
    assert "torch" in loaded and "ray" not in loaded


def test_policy_files_load_without_torch_and_augmentation_never_imports_ray():
    loaded = loaded_after("from autometa.augment import load_policy, PolicyDefinition\n"
                          "import autometa.augment.policy_file")
    assert "torch" not in loaded and "ray" not in loaded
    loaded = loaded_after("import autometa.augment.ops, autometa.augment.policy, "
                          "autometa.augment.transform")
    assert "torch" in loaded and "ray" not in loaded

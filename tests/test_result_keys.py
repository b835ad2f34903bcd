"""The result-key contract: one finite-number reader, one module spelling the keys."""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest
import torch

from autometa.launch.stopper import ExperimentStopper
from autometa.searchers import make_searcher
from autometa.space import space_from_dict
from autometa.trial import keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("value,expected", [
    (1, 1.0), (2.5, 2.5), (np.float32(0.25), 0.25), (np.float64(-3.0), -3.0), (np.int64(4), 4.0),
    (torch.tensor(0.5), 0.5), (math.nan, None), (np.float32("nan"), None), (np.inf, None),
    (torch.tensor(math.inf), None), (True, None), ("0.5", None), (None, None), ([1.0], None),
])
def test_finite_number_reads_python_numpy_and_torch_scalars(value, expected):
    assert keys.finite_number(value) == expected


def test_nonfinite_number_only_for_numbers():
    assert keys.nonfinite_number(np.float32("nan")) and keys.nonfinite_number(-math.inf)
    assert not keys.nonfinite_number(1.0) and not keys.nonfinite_number("nan")
    assert not keys.nonfinite_number(None)
    # an integer beyond a float's range (a 400-digit literal in a file) is no finite number
    assert keys.finite_number(10 ** 400) is None and keys.nonfinite_number(-(10 ** 400))
    assert keys.finite_number(2 ** 60) == float(2 ** 60)


def test_a_numpy_nan_metric_stops_the_trial_and_a_numpy_float_does_not():
    stopper = ExperimentStopper({}, "loss")
    assert stopper("a", {"loss": np.float32("nan")})
    assert not stopper("b", {"loss": np.float32(0.3)})


def test_a_searcher_learns_from_numpy_metrics_and_hypergradients():
    space = space_from_dict({"parameters": {"lam": {"type": "loguniform", "low": 1e-4,
                                                    "high": 10.0, "differentiable": True}}})
    searcher = make_searcher("hypergradient", space=space, metric="loss", mode="min", seed=0)
    config = searcher.suggest("t1")
    searcher.on_trial_complete("t1", {"loss": np.float32(1.0), "config": config,
                                      keys.hypergrad_key("lam"): np.float32(2.0)})
    assert searcher.suggest("t2")["lam"] < config["lam"]  # the float32 derivative was used


def test_no_module_spells_a_result_key_prefix_but_the_contract():
    pattern = re.compile(r"""["'](hypergrad/|hparams/|hypergrad_converged|hyperstep_skipped)""")
    offenders = []
    for folder, _, files in os.walk(os.path.join(ROOT, "autometa")):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or path.endswith(os.path.join("trial", "keys.py")):
                continue
            with open(path) as f:
                for number, line in enumerate(f, 1):
                    code = line.split("#")[0]
                    if pattern.search(code):
                        offenders.append(f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)

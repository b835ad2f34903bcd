"""The examples run as they are."""

from __future__ import annotations

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_existing_tune_script_with_autometa_space_and_searcher(ray_session, storage):
    spec = importlib.util.spec_from_file_location(
        "tune_existing", os.path.join(ROOT, "examples", "tune_existing.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    space = module.autometa.load_space(os.path.join(ROOT, "examples", "sgd_space.yaml"))
    results = module.main(num_samples=4, storage_path=storage)
    assert len(results) == 4 and not results.errors
    for result in results:  # the condition of l1_ratio holds in every trial
        assert not space.problems(result.config), result.config
        assert (result.config["l1_ratio"] is None) == (result.config["penalty"] != "elasticnet")

"""Cluster launch: the launcher files pass Ray's own schema; a real multi-node Ray runs trials
where their resources are, and a search survives losing a worker node."""

from __future__ import annotations

import copy
import os
import textwrap

import pytest
import yaml
from ray import tune

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_FILES = ["cluster.yaml", "cluster-local.yaml"]


def _ray_checked(config: dict) -> dict:
    """What ``ray up`` does to a file before it starts anything: fill defaults, validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(config))
    validate_config(config)
    return config


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_file_passes_rays_schema(name):
    raw = yaml.safe_load(open(os.path.join(ROOT, name)))
    config = _ray_checked(raw)
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head  # the dashboard is reached through SSH only
    assert any("autometa" in c and "pip install" in c for c in config["setup_commands"])
    assert "." in config["file_mounts"].values()  # the repository, with search_spaces/
    if raw["provider"]["type"] == "aws":
        rules = raw["provider"]["security_group"]["IpPermissions"]
        assert [(r["FromPort"], r["ToPort"]) for r in rules] == [(22, 22)]  # SSH, nothing else
        gpu = config["available_node_types"]["gpu_worker"]
        assert gpu["resources"]["GPU"] >= 1 and gpu["max_workers"] > gpu["min_workers"]
        assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}


def test_a_broken_cluster_file_fails_rays_schema():
    import jsonschema

    raw = yaml.safe_load(open(os.path.join(ROOT, "cluster.yaml")))
    raw["available_node_types"]["gpu_worker"]["resources"] = {"GPU": 0.5}
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'integer'"):
        _ray_checked(raw)
    raw = yaml.safe_load(open(os.path.join(ROOT, "cluster.yaml")))
    raw["head_node_type"] = "nope"
    with pytest.raises(ValueError, match="head_node_type"):
        _ray_checked(raw)


@pytest.fixture(scope="module")
def cluster():
    """A real 3-node Ray: a head with 1 CPU, a node with 2 CPUs and 2 (logical) GPUs, a node
    with 2 CPUs and a custom resource. The session's local Ray is put back afterwards."""
    import ray
    from ray.cluster_utils import Cluster

    had_ray = ray.is_initialized()
    ray.shutdown()
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    gpu = nodes.add_node(num_cpus=2, num_gpus=2)
    special = nodes.add_node(num_cpus=2, resources={"special": 2})
    ray.init(address=nodes.address, log_to_driver=False)
    nodes.wait_for_nodes()
    yield nodes, {"gpu": gpu.node_id, "special": special.node_id}
    ray.shutdown()
    nodes.shutdown()
    if had_ray:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)


def _search(tmp_path, name, resources, extra="", num_samples=4, iterations=2):
    from autometa.launch.run import run_experiment
    from autometa.space import load_space

    file = tmp_path / f"{name}.yaml"
    file.write_text(textwrap.dedent(f"""\
        experiment:
          name: {name}
          trainable: quadratic
          metric: loss
          searcher: random
          num_samples: {num_samples}
          max_concurrent_trials: {num_samples}
          resources_per_trial: {resources}
          storage_path: {tmp_path / "results"}
          seed: 0
        {extra}parameters:
          x: {{type: uniform, low: 0, high: 1}}
          iterations: {iterations}
          sleep: 0.5
          checkpoint: true
          report_placement: true
        """))
    results, _ = run_experiment(load_space(str(file)), address="auto", verbose=0)
    assert results.num_errors == 0 and results.num_terminated == num_samples
    return [r.metrics for r in results]


def test_trials_spread_over_nodes_and_get_their_resources(cluster, tmp_path):
    _, ids = cluster
    cpu_only = _search(tmp_path, "cpu", "{cpu: 1}", num_samples=5)
    assert len({m["node_id"] for m in cpu_only}) >= 2  # 5 one-CPU trials need 3 nodes' CPUs
    assert all(m["assigned_cpu"] == 1 and m["assigned_gpu"] == 0 for m in cpu_only)

    half_gpu = _search(tmp_path, "gpu", "{cpu: 0.5, gpu: 0.5}")
    assert {m["node_id"] for m in half_gpu} == {ids["gpu"]}
    for m in half_gpu:
        assert m["assigned_gpu"] == 0.5 and len(m["gpu_ids"]) == 1
        assert m["cuda_visible_devices"] == m["gpu_ids"][0]  # what torch will see as cuda:0
    assert len({m["gpu_ids"][0] for m in half_gpu}) == 2  # 4 half-GPU trials: both GPUs used

    custom = _search(tmp_path, "special", "{cpu: 1, special: 1}", num_samples=2)
    assert {m["node_id"] for m in custom} == {ids["special"]}
    assert all(m["assigned_custom"] == {"special": 1.0} for m in custom)


_DOOMED: dict = {}  # module level: Tune pickles callbacks, a Cluster does not pickle


class KillNodeMidTrial(tune.Callback):
    """Removes ``_DOOMED["node"]`` once a trial on it has reported twice."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        node = _DOOMED["node"]
        if not _DOOMED["killed"] and result.get("node_id") == node.node_id \
                and result["iteration"] >= 2:
            _DOOMED["killed"] = True
            _DOOMED["cluster"].remove_node(node, allow_graceful=False)


def test_search_survives_losing_a_worker_node(cluster, tmp_path):
    """A node dies while trials run on it: they restart from their checkpoints elsewhere."""
    nodes, ids = cluster
    doomed = next(n for n in nodes.worker_nodes if n.node_id == ids["special"])

    _DOOMED.update(cluster=nodes, node=doomed, killed=False)
    from autometa.launch.plan import plan_experiment
    from autometa.launch.run import build_tuner
    from autometa.space import space_from_dict

    space = space_from_dict({
        "experiment": {"name": "survive", "trainable": "quadratic", "metric": "loss",
                       "num_samples": 5, "max_concurrent_trials": 5, "max_failures": 3,
                       "resources_per_trial": {"cpu": 1}, "storage_path": str(tmp_path),
                       "seed": 0},
        "parameters": {"x": {"type": "uniform", "low": 0, "high": 1}, "iterations": 6,
                       "sleep": 0.5, "checkpoint": True, "report_placement": True}})
    results = build_tuner(space, plan_experiment(space), verbose=0, callbacks=[KillNodeMidTrial()]).fit()
    assert _DOOMED["killed"]
    assert results.num_errors == 0 and len(results) == 5
    assert all(r.metrics["iteration"] == 6 for r in results)  # every trial completed
    moved = [r for r in results if r.metrics["resumed_from"] > 0]
    assert moved, "a trial of the lost node should have resumed from its checkpoint"
    assert all(r.metrics["node_id"] != doomed.node_id for r in moved)

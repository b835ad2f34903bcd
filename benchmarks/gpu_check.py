"""GPU check (issue 8): a small search whose trials share GPUs, hypergradients on CUDA.

Run by hand on a machine with a CUDA GPU (it refuses to run without one):

    python benchmarks/gpu_check.py [--trials 4] [--gpu 0.5] [--epochs 6]

It runs ``search_spaces/digits_cnn_pbt.yaml`` (the digits CNN with one weight decay per layer,
``hypergradient_pbt``; each trial computes ``hypergrad/decay.<layer>`` every epoch with the
hypergradient engine) through ``autometa``'s launcher on local Ray with ``gpu: --gpu`` per
trial (the trainable puts its model on the GPU Ray assigned), checks that every trial reported its
hypergradients, and prints the wall time of the search and the mean time per trial epoch.
Then the same trials once on CPU (``gpu: 0``) for the ratio. Record the output in
benchmarks/README.md with the machine and date.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def search(gpu: float, trials: int, epochs: int, storage: str) -> tuple[float, list[dict]]:
    import yaml

    from autometa.launch.run import run_experiment
    from autometa.space import space_from_dict

    doc = yaml.safe_load(open(os.path.join(ROOT, "search_spaces", "digits_cnn_pbt.yaml")))
    doc["experiment"].update(num_samples=trials, max_concurrent_trials=trials, name=f"gpu{gpu}",
                             storage_path=storage,
                             resources_per_trial={"cpu": 1, "gpu": gpu} if gpu else {"cpu": 1})
    doc["parameters"]["epochs"] = epochs
    start = time.perf_counter()
    results, _ = run_experiment(space_from_dict(doc), verbose=0)
    return time.perf_counter() - start, [r.metrics for r in results]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--gpu", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    import ray
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA GPU here; nothing was run")
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}, Ray {ray.__version__}, "
          f"{time.strftime('%Y-%m-%d')}")
    ray.init(num_cpus=os.cpu_count(), num_gpus=torch.cuda.device_count(),
             include_dashboard=False)
    with tempfile.TemporaryDirectory() as storage:
        for gpu in (args.gpu, 0.0):
            wall, metrics = search(gpu, args.trials, args.epochs, storage)
            bad = [m for m in metrics if "hypergrad/decay.fc" not in m]
            assert not bad, "a trial reported no hypergradient"
            per_epoch = sum(m["time_total_s"] / m["training_iteration"] for m in metrics)
            print(f"gpu per trial {gpu}: {len(metrics)} trials, search {wall:.1f} s, "
                  f"{per_epoch / len(metrics):.2f} s per trial epoch (hypergradient included)")


if __name__ == "__main__":
    main()

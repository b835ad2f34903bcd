"""Cost of one hypergradient per method, as a multiple of one training step of the same model.

Models (batch of 128 random digit-sized inputs, 10 classes): an MLP (64-256-256-10), the
digits CNN (``hidden=32``) and a wider CNN with more than one million weights. The
hyperparameters are one log weight decay *per weight* (as many hyperparameters as weights).
Each method gets K = 10 Hessian-vector products (``cg`` maxiter=10 tol=0, ``neumann`` terms=10,
``fixed_point`` maxiter=10 tol=0); ``exact`` is run only where the dense Hessian is small.

Time: median of repeated runs, in one process. Peak memory: each measurement runs in a fresh
subprocess that polls its resident set size every millisecond; reported is the peak minus the
resident size just before the operation (on CUDA: ``torch.cuda.max_memory_allocated``).

    python benchmarks/hypergrad_cost.py [--device cpu|cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

import torch
from torch import nn
from torch.func import functional_call

K = 10
METHODS = {"cg": {"maxiter": K, "tol": 0.0}, "neumann": {"alpha": 0.01, "terms": K},
           "fixed_point": {"alpha": 0.01, "maxiter": K, "tol": 0.0}, "exact": {}}


def build(name: str) -> nn.Module:
    from autometa.trainables.digits import build_cnn

    if name == "mlp":
        return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                             nn.Linear(256, 10))
    if name == "cnn":
        return build_cnn({"hidden": 32}).eval()
    if name == "cnn_1m":
        ch = 256
        return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, ch, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(ch, 2 * ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(2 * ch, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(4 * ch, 10))
    raise ValueError(name)


def setup(name: str, device: str):
    torch.manual_seed(0)
    model = build(name).to(device)
    x = torch.randn(128, 64, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    params = {n: p.detach() for n, p in model.named_parameters()}
    hparams = {n: torch.full_like(p, -6.0) for n, p in params.items()}   # log decay per weight

    def train(p, h):
        out = functional_call(model, p, (x,))
        penalty = sum(0.5 * (torch.exp(h[n]) * p[n] ** 2).sum() for n in p)
        return nn.functional.cross_entropy(out, y) + penalty

    def val(p, h):
        return nn.functional.cross_entropy(functional_call(model, p, (x,)), y)

    return model, params, hparams, train, val


def operation(name: str, method: str, device: str):
    from autometa.hypergrad import hypergradient

    model, params, hparams, train, val = setup(name, device)
    if method == "step":
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        leaves = {n: p for n, p in model.named_parameters()}

        def run():
            opt.zero_grad()
            train(leaves, hparams).backward()
            opt.step()
        return run
    return lambda: hypergradient(train, val, params, hparams, method=method, check=False,
                                 **METHODS[method])


def measure_time(name: str, method: str, device: str, repeats: int) -> float:
    run = operation(name, method, device)
    run()  # warm-up
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_memory(name: str, method: str, device: str) -> int:
    """Run in a fresh process (see main): peak bytes above the level before the operation."""
    run = operation(name, method, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    before, peak, stop = _rss(), [0], threading.Event()

    def poll():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    thread = threading.Thread(target=poll)
    thread.start()
    run()
    stop.set()
    thread.join()
    return max(peak[0], _rss()) - before


def memory_in_subprocess(name: str, method: str, device: str) -> int:
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            f"import hypergrad_cost as b; print(b.measure_memory({name!r}, {method!r}, {device!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="mlp,cnn,cnn_1m")
    args = parser.parse_args()
    print(f"# {platform.node()}, device {args.device}"
          f"{' (' + torch.cuda.get_device_name() + ')' if args.device == 'cuda' else ''}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, {time.strftime('%Y-%m-%d')}")
    print("| model | weights | method | time (ms) | x train step | peak memory (MiB) | "
          "x train step |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for name in args.models.split(","):
        n = sum(p.numel() for p in build(name).parameters())
        step_t = measure_time(name, "step", args.device, args.repeats)
        step_m = memory_in_subprocess(name, "step", args.device)
        print(f"| {name} | {n:,} | train step | {step_t * 1e3:.2f} | 1 | {step_m / 2**20:.1f} | 1 |",
              flush=True)
        for method in METHODS:
            if method == "exact" and n > 3000:
                continue
            t = measure_time(name, method, args.device, args.repeats)
            m = memory_in_subprocess(name, method, args.device)
            results.append({"model": name, "method": method, "time_ratio": t / step_t,
                            "memory_ratio": m / max(step_m, 1)})
            print(f"| {name} | {n:,} | {method} (K={K}) | {t * 1e3:.2f} | {t / step_t:.1f} | "
                  f"{m / 2**20:.1f} | {m / max(step_m, 1):.1f} |", flush=True)
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()

"""Label-error detection and curation: autometa's leave-one-out detector against cleanlab (issue 23).

A share (10 %, 20 %, 40 %) of the training labels is flipped to another class uniformly at random;
the test labels stay clean. Every detector ranks the training samples (AUROC for the flipped
ones; precision among the top ``rate`` share) and flags a set, which is removed before the same
model is trained again (test accuracy).

Tables (``--part tables``): digits pixels, breast_cancer, wine and iris (scikit-learn), 70/30
stratified split, standardized columns; the model is logistic regression (scikit-learn,
``max_iter=2000``).
  * ``autometa``: ``find_label_issues(labels, features=X)``, exact leave-one-out ridge
    probabilities with the ridge of lowest leave-one-out error (no model trained); ranked by
    normalized margin, flags the samples predicted as another class; ``autometa_cl``: the same
    ranking, flagged by ``filter_by="confident_learning"``;
  * ``cleanlab``: ``cleanlab.filter.find_label_issues`` and ``get_label_quality_scores`` on
    5-fold out-of-fold probabilities of the model (cleanlab's recipe);
  * ``loss``: in-sample cross-entropy of the model trained on the noisy labels (the usual
    baseline; flags the top ``rate`` share: the flip rate is given to it);
  * ``derivative``: the leave-one-out dataset derivative (DIVA; ranking only).

Digits with a network (``--part mlp``): ``load_digits_splits`` (1,079 / 359 / 359), the MLP of
``curation_digits.py`` (64-64-10, Adam, 40 epochs, label smoothing 0.1).
  * ``autometa``: the same call on the penultimate activations of the network trained on the
    noisy labels (one training);
  * ``cleanlab``: 5-fold out-of-fold probabilities of the MLP (five more trainings on 4/5);
  * ``loss``: training loss under the network trained on the noisy labels;
  * ``l2rw``: Learning to Reweight against 50 clean validation samples (share of epochs at
    weight 0; ranking only).
Accuracy: the MLP retrained on the samples each detector keeps (``loss`` keeps all but the
``rate`` share); cost: seconds of detection, as a multiple of one training.

    python benchmarks/curation_cleanlab.py [--part tables mlp] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import torch
from intervals import interval  # (benchmarks/intervals.py)
from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
from sklearn.preprocessing import StandardScaler

from autometa.data.curation import dataset_derivative
from autometa.data.label_issues import (
    find_label_issues,
    label_quality_scores,
    loo_pred_probs,
    standardize,
)
from autometa.launch.curate import flip_labels


def _cleanlab():
    from cleanlab.filter import find_label_issues as cl_find
    from cleanlab.rank import get_label_quality_scores

    return cl_find, get_label_quality_scores


def precision_at_rate(score: np.ndarray, flipped: np.ndarray) -> float:
    top = np.argsort(-score, kind="stable")[:int(flipped.sum())]
    return float(flipped[top].mean())


def detection(score: np.ndarray, flipped: np.ndarray, mask: np.ndarray | None) -> dict:
    out = {"auroc": roc_auc_score(flipped, score), "prec": precision_at_rate(score, flipped)}
    if mask is not None:
        out["flags"] = mask.sum() / flipped.sum()
        out["f1"] = 2 * (mask & flipped).sum() / (mask.sum() + flipped.sum())
    return out


def top_share(score: np.ndarray, share: float) -> np.ndarray:
    mask = np.zeros(len(score), dtype=bool)
    mask[np.argsort(-score, kind="stable")[:int(round(share * len(score)))]] = True
    return mask


def run_table(name: str, rate: float, seed: int) -> dict:
    cl_find, cl_scores = _cleanlab()
    data = getattr(datasets, f"load_{name}")()
    xtr, xte, ytr, yte = train_test_split(data.data.astype(float), data.target, test_size=0.3,
                                          random_state=seed, stratify=data.target)
    scaler = StandardScaler().fit(xtr)
    xtr, xte = scaler.transform(xtr), scaler.transform(xte)
    noisy, flipped = flip_labels(ytr, rate, seed)
    rows = np.arange(len(noisy))

    def model():
        return LogisticRegression(max_iter=2000)

    def accuracy(keep, labels=noisy):
        return model().fit(xtr[keep], labels[keep]).score(xte, yte)

    start = time.perf_counter()
    base = model().fit(xtr, noisy)
    one = time.perf_counter() - start
    out = {"acc_noisy": base.score(xte, yte), "acc_clean": accuracy(np.ones(len(ytr), bool), ytr)}

    start = time.perf_counter()
    probs = loo_pred_probs(xtr, noisy).pred_probs  # once, for the score and both filters
    ours = -label_quality_scores(noisy, probs, method="normalized_margin")
    mask = find_label_issues(noisy, probs)
    out["cost_autometa"] = (time.perf_counter() - start) / one
    out.update({f"{k}_autometa": v for k, v in detection(ours, flipped, mask).items()})
    out["acc_autometa"] = accuracy(~mask)
    confident = find_label_issues(noisy, probs, filter_by="confident_learning")
    out.update({f"{k}_autometa_cl": v for k, v in detection(ours, flipped, confident).items()})
    out["acc_autometa_cl"] = accuracy(~confident)

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oof = cross_val_predict(model(), xtr, noisy, cv=5, method="predict_proba")
        cl_mask = cl_find(noisy, oof)
    cl = -cl_scores(noisy, oof)
    out["cost_cleanlab"] = (time.perf_counter() - start) / one
    out.update({f"{k}_cleanlab": v for k, v in detection(cl, flipped, cl_mask).items()})
    out["acc_cleanlab"] = accuracy(~cl_mask)

    loss = -np.log(np.clip(base.predict_proba(xtr)[rows, noisy], 1e-12, None))
    loss_mask = top_share(loss, rate)
    out.update({f"{k}_loss": v for k, v in detection(loss, flipped, loss_mask).items()})
    out["acc_loss"] = accuracy(~loss_mask)

    _, grad = dataset_derivative(torch.as_tensor(standardize(xtr)), torch.as_tensor(noisy),
                                 ridge=1.0)
    out.update({f"{k}_derivative": v for k, v in detection(grad.numpy(), flipped, None).items()})
    return out


def run_mlp(rate: float, seed: int) -> dict:
    from curation_digits import accuracy, l2rw_scores, train

    from autometa.data.digits import load_digits_splits

    cl_find, cl_scores = _cleanlab()
    d = load_digits_splits(seed=0)
    x, xt = torch.as_tensor(d.x_train), torch.as_tensor(d.x_test)
    clean, yt = torch.as_tensor(d.y_train), torch.as_tensor(d.y_test)
    noisy_np, flipped = flip_labels(d.y_train, rate, seed)
    noisy = torch.as_tensor(noisy_np)
    out = {}
    net = train(x, noisy, seed)
    out["acc_noisy"] = accuracy(net, xt, yt)
    start = time.perf_counter()  # (the second training: the first one warms torch up)
    out["acc_clean"] = accuracy(train(x, clean, seed), xt, yt)
    one = time.perf_counter() - start

    def retrained(mask):
        keep = torch.as_tensor(~mask)
        return accuracy(train(x[keep], noisy[keep], seed), xt, yt)

    start = time.perf_counter()
    with torch.no_grad():
        feats = net[:2](x).double().numpy()
    probs = loo_pred_probs(feats, noisy_np).pred_probs
    ours = -label_quality_scores(noisy_np, probs, method="normalized_margin")
    mask = find_label_issues(noisy_np, probs)
    out["cost_autometa"] = (time.perf_counter() - start) / one + 1.0  # + the network's training
    out.update({f"{k}_autometa": v for k, v in detection(ours, flipped, mask).items()})
    out["acc_autometa"] = retrained(mask)
    confident = find_label_issues(noisy_np, probs, filter_by="confident_learning")
    out.update({f"{k}_autometa_cl": v for k, v in detection(ours, flipped, confident).items()})
    out["acc_autometa_cl"] = retrained(confident)

    start = time.perf_counter()
    oof = np.zeros((len(noisy_np), 10))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    for fit, held in folds.split(d.x_train, noisy_np):
        fold_net = train(x[fit], noisy[fit], seed)
        with torch.no_grad():
            oof[held] = fold_net(x[held]).softmax(dim=1).double().numpy()
    cl_mask = cl_find(noisy_np, oof)
    cl = -cl_scores(noisy_np, oof)
    out["cost_cleanlab"] = (time.perf_counter() - start) / one
    out.update({f"{k}_cleanlab": v for k, v in detection(cl, flipped, cl_mask).items()})
    out["acc_cleanlab"] = retrained(cl_mask)

    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(net(x), noisy, reduction="none").numpy()
    loss_mask = top_share(loss, rate)
    out.update({f"{k}_loss": v for k, v in detection(loss, flipped, loss_mask).items()})
    out["acc_loss"] = retrained(loss_mask)

    start = time.perf_counter()
    xv, yv = torch.as_tensor(d.x_val[:50]), torch.as_tensor(d.y_val[:50])
    _, zeroed = l2rw_scores(x, noisy, xv, yv, seed)
    out["cost_l2rw"] = (time.perf_counter() - start) / one
    out.update({f"{k}_l2rw": v for k, v in detection(zeroed.numpy(), flipped, None).items()})
    return out


def table(rows: list[dict], arms: list[str], label: str) -> None:
    def cell(key):
        values = [r[key] for r in rows if key in r]
        if not values:
            return "-"
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}"

    print(f"\n{label}")
    print("| detector | AUROC | precision at rate | flagged / flipped | F1 of flags | "
          "test accuracy after removal | cost (x one training) |")
    print("|---|---|---|---|---|---|---|")
    for arm in arms:
        cost = f"{np.mean([r[f'cost_{arm}'] for r in rows]):.2f}" \
            if f"cost_{arm}" in rows[0] else "-"
        print(f"| {arm} | {cell(f'auroc_{arm}')} | {cell(f'prec_{arm}')} | "
              f"{cell(f'flags_{arm}')} | {cell(f'f1_{arm}')} | {cell(f'acc_{arm}')} | {cost} |")
    print(f"| (no curation / clean labels) | | | | | {cell('acc_noisy')} / {cell('acc_clean')} | |")
    parts = []
    for key in ("auroc", "prec", "acc"):
        d = [r[f"{key}_autometa"] - r[f"{key}_cleanlab"] for r in rows]
        parts.append(f"{key} {interval(d)} (behind in {sum(x < 0 for x in d)} of {len(d)} "
                     f"seeds, worst {min(d):+.4f})")
    print("autometa - cleanlab, paired over seeds (mean [95 % t interval]): " + "; ".join(parts),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", nargs="+", default=["tables", "mlp"], choices=["tables", "mlp"])
    parser.add_argument("--datasets", nargs="+",
                        default=["digits", "breast_cancer", "wine", "iris"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.2, 0.4])
    args = parser.parse_args()
    torch.set_num_threads(1)
    import cleanlab

    loo_pred_probs(np.eye(3), [0, 1, 2])  # (torch's import and first calls: not in the costs)

    print(f"# {platform.node()}, torch {torch.__version__} CPU (1 thread), cleanlab "
          f"{cleanlab.__version__}, {time.strftime('%Y-%m-%d')}; mean ± std over seeds "
          f"{args.seeds}")
    if "tables" in args.part:
        for name in args.datasets:
            for rate in args.rates:
                rows = [run_table(name, rate, s) for s in args.seeds]
                table(rows, ["autometa", "autometa_cl", "cleanlab", "loss", "derivative"],
                      f"### {name} (logistic regression), {rate:.0%} flipped")
    if "mlp" in args.part:
        for rate in args.rates:
            rows = [run_mlp(rate, s) for s in args.seeds]
            table(rows, ["autometa", "autometa_cl", "cleanlab", "loss", "l2rw"],
                  f"### digits MLP, {rate:.0%} flipped")


if __name__ == "__main__":
    main()

r"""The statistics of a race: which candidates are significantly worse than the best.

All functions take a results matrix ``x`` of shape (n instances, k candidates), to be
*minimized*, where every candidate has been evaluated on the same n instances (blocks).
Non-finite values (a failed or diverged evaluation) rank last within their block.

* Friedman test (``scipy.stats.friedmanchisquare``): do the candidates differ at all?
* Post-hoc, each candidate against the best one (smallest rank sum), Holm-corrected:

  - ``"friedman"`` (the default; the Friedman + Conover scheme of F-race, though not irace's
    exact rule: irace compares each candidate with the best against a two-sided critical
    value with no multiplicity correction, this module takes one-sided p-values,
    Holm-corrected over the k-1 comparisons, so the two can drop different candidates):
    Conover's test on the within-block ranks :math:`R_{ij}`. With
    :math:`R_j = \sum_i R_{ij}`, :math:`A = \sum_{ij} R_{ij}^2`,
    the statistic for candidates :math:`j, l` is
    :math:`t = |R_j - R_l| \big/ \sqrt{2 (nA - \sum_j R_j^2) / ((n-1)(k-1))}`,
    Student-t with :math:`(n-1)(k-1)` degrees of freedom (Conover 1999, ch. 5.8). When every
    candidate holds the same rank in every block the denominator is zero; the exact permutation
    p-value of the rank-sum difference is used instead (:func:`rank_difference_p`), so that
    three identical rankings of eight candidates do not drop the second one.
  - ``"wilcoxon"``: the paired Wilcoxon signed-rank test (``scipy.stats.wilcoxon``), one-sided.
  - ``"t"``: the paired t-test (``scipy.stats.ttest_rel``), one-sided.

* Two candidates left: the paired test alone (Wilcoxon for ``"friedman"`` and
  ``"wilcoxon"``, the t-test for ``"t"``), one-sided against the better one.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

TESTS = ("friedman", "wilcoxon", "t")


def block_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks within each row (1 = best; ties share their mean rank; non-finite rank last)."""
    x = np.where(np.isfinite(x), x, np.inf)
    return stats.rankdata(x, axis=1)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values: :math:`\\tilde p_{(i)} = \\max_{j \\le i}
    \\min(1, (m - j + 1) p_{(j)})` over the p-values sorted ascending."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def friedman_p(x: np.ndarray) -> float:
    """p-value of the Friedman test on ranks (1.0 when every block is a complete tie)."""
    r = block_ranks(x)
    if np.all(r == r[:, :1]):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = stats.friedmanchisquare(*r.T).pvalue
    return float(p) if math.isfinite(p) else 1.0


def rank_difference_p(observed: float, n: int, k: int) -> float:
    r"""Exact :math:`P(\sum_i (R_{ij} - R_{il}) \ge observed)` when every block ranks at random.

    Per block the ranks of two candidates are a uniform ordered pair of distinct ranks, so
    :math:`d = R_j - R_l` has :math:`P(d) = (k - |d|) / (k (k - 1))` for :math:`d \ne 0`;
    the sum over n blocks is its n-fold convolution.
    """
    d = np.arange(-(k - 1), k)
    pmf = np.where(d == 0, 0.0, (k - np.abs(d)) / (k * (k - 1)))
    total = np.array([1.0])
    for _ in range(n):
        total = np.convolve(total, pmf)
    values = np.arange(len(total)) - n * (k - 1)
    return float(min(1.0, total[values >= observed - 1e-9].sum()))


def conover_p(x: np.ndarray, best: int) -> np.ndarray:
    """One p-value per candidate: Conover's post-hoc test against candidate ``best``."""
    r = block_ranks(x)
    n, k = r.shape
    sums = r.sum(axis=0)
    a = float((r ** 2).sum())
    scale = 2.0 * (n * a - float((sums ** 2).sum())) / ((n - 1) * (k - 1))
    if scale <= 0:  # every candidate holds the same rank in every block: t is infinite
        return np.array([1.0 if j == best else rank_difference_p(sums[j] - sums[best], n, k)
                         for j in range(k)])
    t = (sums - sums[best]) / math.sqrt(scale)
    p = stats.t.sf(t, (n - 1) * (k - 1))  # one-sided: is j worse than the best?
    p[best] = 1.0
    return p


def paired_p(worse: np.ndarray, better: np.ndarray, test: str) -> float:
    """One-sided p-value that ``worse`` is larger than ``better`` (paired by instance)."""
    finite = np.isfinite(worse) & np.isfinite(better)
    if not finite.all():  # a failure is worse than anything: compare ranks instead
        r = block_ranks(np.stack([worse, better], axis=1))
        worse, better = r[:, 0], r[:, 1]
    d = worse - better
    if np.all(d == 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if test == "t":
            p = stats.ttest_rel(worse, better, alternative="greater").pvalue
        else:
            p = stats.wilcoxon(worse, better, alternative="greater", zero_method="zsplit").pvalue
    return float(p) if math.isfinite(p) else 1.0


def worse_than_best(x: np.ndarray, alpha: float = 0.05, test: str = "friedman") -> list[int]:
    """Columns of ``x`` significantly worse than the best one, at level ``alpha``.

    Raises:
        ValueError: an unknown ``test``.
    """
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    x = np.asarray(x, dtype=float)
    n, k = x.shape
    if k < 2 or n < 2:
        return []
    sums = block_ranks(x).sum(axis=0)
    best = int(np.argmin(sums))
    if k == 2:
        other = 1 - best
        return [other] if paired_p(x[:, other], x[:, best], test) < alpha else []
    if friedman_p(x) >= alpha:
        return []
    if test == "friedman":
        p = conover_p(x, best)
    else:
        p = np.array([1.0 if j == best else paired_p(x[:, j], x[:, best], test)
                      for j in range(k)])
    others = [j for j in range(k) if j != best]
    adjusted = holm(p[others])
    return [j for j, q in zip(others, adjusted, strict=True) if q < alpha and sums[j] > sums[best]]

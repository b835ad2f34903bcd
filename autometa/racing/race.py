"""One race: candidates evaluated instance after instance, the significantly worse dropped.

Pure Python (numpy, scipy): it knows nothing about Ray. The searchers in
:mod:`autometa.searchers.racing` turn its ``(candidate, instance)`` pairs into Tune trials.

Blocks stay aligned: the race hands out the pairs of the first instance that some alive
candidate still lacks, and nothing beyond it, so that every test compares the alive
candidates on the same instances. After ``min_instances`` complete blocks, and after every
further one, :func:`autometa.racing.stats.worse_than_best` decides which candidates to drop.
The race ends when one candidate is left, when the alive ones have all ``max_instances``, or
when ``budget`` evaluations have been handed out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from autometa.racing.stats import TESTS, block_ranks, worse_than_best


@dataclass
class RaceSettings:
    """Options of a race (see the module docstring)."""

    min_instances: int = 5
    max_instances: int = 10
    alpha: float = 0.05
    test: str = "friedman"

    def __post_init__(self) -> None:
        if self.min_instances < 2:
            raise ValueError(f"min_instances must be >= 2, got {self.min_instances}")
        if self.max_instances < self.min_instances:
            raise ValueError(f"max_instances ({self.max_instances}) must be >= min_instances "
                             f"({self.min_instances})")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.test not in TESTS:
            raise ValueError(f"test must be one of {TESTS}, got {self.test!r}")


@dataclass
class Race:
    """A race among ``n_candidates`` candidates (indices 0..n-1), to minimize.

    ``results[c][k]`` is candidate c's value on instance k (``inf`` for a failed evaluation).
    Candidates may arrive with results already (elites of an earlier race).
    """

    n_candidates: int
    settings: RaceSettings = field(default_factory=RaceSettings)
    budget: int | None = None
    results: list[dict[int, float]] = field(default_factory=list)
    alive: list[int] = field(default_factory=list)
    eliminated: dict[int, int] = field(default_factory=dict)  # candidate -> instances seen
    pending: set[tuple[int, int]] = field(default_factory=set)
    handed_out: int = 0
    tested: int = 0  # complete blocks at the last test

    def __post_init__(self) -> None:
        if self.n_candidates < 1:
            raise ValueError("a race needs at least one candidate")
        if not self.results:
            self.results = [{} for _ in range(self.n_candidates)]
        if not self.alive:
            self.alive = list(range(self.n_candidates))

    # ------------------------------------------------------------------ state
    def complete_blocks(self) -> int:
        """Instances on which every alive candidate has a result."""
        k = 0
        while k < self.settings.max_instances and all(k in self.results[c] for c in self.alive):
            k += 1
        return k

    @property
    def finished(self) -> bool:
        if len(self.alive) <= 1 and not self.pending:
            return True
        if self.complete_blocks() >= self.settings.max_instances:
            return True
        out_of_budget = self.budget is not None and self.handed_out >= self.budget
        return out_of_budget and not self.pending

    def next_pair(self) -> tuple[int, int] | None:
        """The next ``(candidate, instance)`` to evaluate, or None (wait, or finished)."""
        if self.finished or (self.budget is not None and self.handed_out >= self.budget):
            return None
        if len(self.alive) <= 1:
            return None
        k = self.complete_blocks()
        for c in self.alive:
            if k not in self.results[c] and (c, k) not in self.pending:
                self.pending.add((c, k))
                self.handed_out += 1
                return c, k
        return None  # the block is handed out: wait for its results

    def record(self, candidate: int, instance: int, value: float | None) -> None:
        """A result (None or non-finite for a failure); tests once a block completes."""
        self.pending.discard((candidate, instance))
        ok = value is not None and np.isfinite(value)
        self.results[candidate][instance] = float(value) if ok else np.inf
        self._maybe_test()

    def cancel(self, candidate: int, instance: int) -> None:
        """A pair that will not be evaluated after all: hand it out again later."""
        if (candidate, instance) in self.pending:
            self.pending.discard((candidate, instance))
            self.handed_out -= 1

    def _maybe_test(self) -> None:
        n = self.complete_blocks()
        if n < self.settings.min_instances or n <= self.tested or len(self.alive) < 2:
            return
        self.tested = n
        matrix = self.matrix(self.alive, n)
        for j in worse_than_best(matrix, self.settings.alpha, self.settings.test):
            self.eliminated[self.alive[j]] = n
        self.alive = [c for c in self.alive if c not in self.eliminated]

    def matrix(self, candidates: list[int], n: int) -> np.ndarray:
        """Results of ``candidates`` on instances 0..n-1 (n x len(candidates))."""
        return np.array([[self.results[c][k] for c in candidates] for k in range(n)])

    # ---------------------------------------------------------------- outcome
    def ranking(self) -> list[int]:
        """Alive candidates, best first: mean result on their shared instances (what
        evaluating everything would compare), then mean rank (a failure makes the mean inf)."""
        n = self.complete_blocks()
        if n == 0 or len(self.alive) == 1:
            return list(self.alive)
        x = self.matrix(self.alive, n)
        ranks = block_ranks(x).mean(axis=0)
        means = np.where(np.isfinite(x), x, np.inf).mean(axis=0)
        order = sorted(range(len(self.alive)), key=lambda j: (means[j], ranks[j]))
        return [self.alive[j] for j in order]

    def best(self) -> int:
        """The winner so far."""
        return self.ranking()[0]

    @property
    def end_reason(self) -> str | None:
        """Why the race ended, in words (None while it runs)."""
        if not self.finished:
            return None
        if len(self.alive) <= 1:
            return "one candidate was left"
        if self.complete_blocks() >= self.settings.max_instances:
            return (f"the {len(self.alive)} survivors had run all {self.settings.max_instances} "
                    f"instances (max_instances)")
        return f"its budget of {self.budget} evaluations was spent"

    def evaluations(self) -> int:
        """Results recorded so far."""
        return sum(len(r) for r in self.results)


def replay_race(values: list[dict[int, float]], settings: RaceSettings,
                budget: int | None = None) -> Race:
    """The race that ``values`` (per candidate: instance -> result, to minimize; a failure
    None or non-finite) came from, replayed block by block: the same tests on the same complete
    blocks drop the same candidates, so its ``alive``, ``eliminated`` and ``end_reason`` are
    the original race's (what a results folder can say about a race after the run)."""
    race = Race(len(values), settings, budget=budget)
    for k in range(settings.max_instances):
        for c in list(race.alive):
            if k in values[c]:
                race.record(c, k, values[c][k])
    race.handed_out = race.evaluations()
    return race

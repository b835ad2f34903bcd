"""How a run ended, counted against what it planned: the line every summary prints and the
exit status of ``autometa run``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

EXIT_OK = 0
EXIT_TRIALS_LOST = 1


@dataclass(frozen=True)
class Outcome:
    """Trials of a run by how they ended.

    Attributes:
        planned: Trials a complete run finishes (``num_samples``; the grid's size), or None
            when the searcher decides as it goes (a race).
        finished: Trials that ended normally (TERMINATED: their iterations done, or stopped
            early by the scheduler or a stop rule).
        failed: Trials that ended in ERROR (after their retries).
        unfinished: Trials left PENDING, RUNNING or PAUSED (an interrupted run; a synchronous
            Hyperband bracket that never filled).
        budget_s: The experiment's time budget, when it has one: a run stopped by it plans
            no more trials than it started.
        stopped_early, diverged: Of the finished trials, those the scheduler or a stop rule
            stopped before the longest trial's length, and those whose metric became NaN or
            infinite (stopped at once).
    """

    planned: int | None
    finished: int
    failed: int = 0
    unfinished: int = 0
    budget_s: float | None = None
    stopped_early: int = 0
    diverged: int = 0

    @property
    def started(self) -> int:
        return self.finished + self.failed + self.unfinished

    @property
    def never_started(self) -> int:
        """Planned trials that the run did not start (0 when a time budget ended it)."""
        if self.planned is None or self.budget_s is not None:
            return 0
        return max(0, self.planned - self.started)

    @property
    def lost(self) -> int:
        """Trials that should have finished and did not."""
        return self.failed + self.unfinished + self.never_started

    @property
    def exit_code(self) -> int:
        return EXIT_TRIALS_LOST if self.lost else EXIT_OK

    def line(self) -> str:
        """``Trials: 8 of 8 planned finished.`` and, when some are lost, what happened."""
        if self.planned is None:
            head = f"Trials: {self.finished} finished (the race decides how many)"
        else:
            head = f"Trials: {self.finished} of {self.planned} planned finished"
        ended = [f"{n} {what}" for n, what in ((self.stopped_early, "stopped early"),
                                                (self.diverged, "diverged")) if n]
        if ended:
            head += (", " if self.planned is None else " (") + ", ".join(ended) + \
                ("" if self.planned is None else ")")
        parts = []
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.unfinished:
            parts.append(f"{self.unfinished} did not finish")
        if self.never_started:
            parts.append(f"{self.never_started} never started")
        if self.planned is not None and self.budget_s is not None and \
                self.started < self.planned:
            parts.append(f"{self.planned - self.started} not started within the time budget "
                         f"of {self.budget_s:g} s")
        return head + (f"; {', '.join(parts)}." if parts else ".")


def count_outcome(statuses: Iterable[str], planned: int | None,
                  budget_s: float | None = None, stopped_early: int = 0,
                  diverged: int = 0) -> Outcome:
    """The :class:`Outcome` of trials with Tune's ``statuses`` ("TERMINATED", "ERROR", ...)."""
    counts = Counter(str(s) for s in statuses)
    unfinished = sum(n for s, n in counts.items() if s not in ("TERMINATED", "ERROR"))
    return Outcome(planned, counts["TERMINATED"], counts["ERROR"], unfinished, budget_s,
                   stopped_early, diverged)


def error_line(error_file: str | None) -> str | None:
    """The last line of a failed trial's ``error.txt``: the exception and its message (None
    when the file is missing or empty)."""
    try:
        with open(error_file) as handle:  # type: ignore[arg-type]
            lines = [line.strip() for line in handle if line.strip()]
    except (OSError, TypeError):
        return None
    return lines[-1][:300] if lines else None

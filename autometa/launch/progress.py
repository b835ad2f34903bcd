"""The console of ``autometa run`` at its default verbosity: one line per trial that ends and
a status line now and then, instead of Tune's boxes per trial (``--verbosity 2`` shows those).

    autometa: [3/16] 9ab05a0c finished: val_loss 0.1234 after 15 iterations; best 0.1012 (4884...)
    autometa: [4/16] 1c2d3e4f failed: RuntimeError: CUDA out of memory ...
    autometa: 18:38:30  2 running, 4 finished, 1 failed of 16 planned; best val_loss 0.1012
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

from autometa.launch.outcome import error_line
from autometa.trial.keys import finite_number

ENDED = ("TERMINATED", "ERROR")


class ConsoleProgress(Callback):
    """Prints what a person watching the run wants to know, and nothing else.

    Args:
        metric, mode: The searched metric (trials are compared at their last report, as the
            final summary ranks them).
        planned: Trials the run plans (None: the searcher decides, as a race does).
        every_s: Seconds between status lines while trials run.
    """

    def __init__(self, metric: str, mode: str, planned: int | None = None,
                 every_s: float = 30.0) -> None:
        self.metric, self.mode, self.planned, self.every_s = metric, mode, planned, every_s
        self._last = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "_last"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._last = time.monotonic()

    def _value(self, trial: Any) -> float | None:
        return finite_number((trial.last_result or {}).get(self.metric))

    def _best(self, trials: list, also: Any = None) -> tuple[float, str] | None:
        """Best last value over the trials that ended (and ``also``)."""
        scored = [(v, t.trial_id) for t in trials
                  if (str(t.status) in ENDED or t is also) and (v := self._value(t)) is not None]
        if not scored:
            return None
        return min(scored) if self.mode == "min" else max(scored)

    def _count(self, trials: list, ending: Any) -> str:
        """``[ended/planned]``, counting ``ending`` (Tune calls before it sets its status)."""
        ended = sum(str(t.status) in ENDED or t is ending for t in trials)
        return f"[{ended}/{self.planned if self.planned is not None else '?'}]"

    def _say(self, text: str) -> None:
        print(f"autometa: {text}", flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        value = self._value(trial)
        raw = result.get(self.metric)
        shown = (f"{self.metric} {value:.6g}" if value is not None else
                 f"{self.metric} {raw!r} (not a number)" if isinstance(raw, str) else
                 f"{self.metric} {raw} (diverged)" if raw is not None else
                 f"no {self.metric} reported")
        best = self._best(trials, also=trial)
        note = f"; best {best[0]:.6g} ({best[1]})" if best else ""
        steps = result.get("training_iteration")
        after = f" after {steps} iterations" if steps else ""
        self._say(f"{self._count(trials, trial)} {trial.trial_id} finished: {shown}{after}{note}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = error_line(getattr(trial, "error_file", None)) or "see its error.txt"
        self._say(f"{self._count(trials, trial)} {trial.trial_id} failed: {error}")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self._last < self.every_s:
            return
        self._last = time.monotonic()
        counts = {s: sum(str(t.status) == s for t in trials)
                  for s in ("RUNNING", "PENDING", "PAUSED", "TERMINATED", "ERROR")}
        parts = [f"{counts['RUNNING']} running", f"{counts['TERMINATED']} finished"]
        parts += [f"{counts[s]} {s.lower()}" for s in ("PENDING", "PAUSED") if counts[s]]
        if counts["ERROR"]:
            parts.append(f"{counts['ERROR']} failed")
        plan = f" of {self.planned} planned" if self.planned is not None else ""
        best = self._best(trials)
        shown = f"; best {self.metric} {best[0]:.6g} ({best[1]})" if best else ""
        self._say(f"{time.strftime('%H:%M:%S')}  {', '.join(parts)}{plan}{shown}")



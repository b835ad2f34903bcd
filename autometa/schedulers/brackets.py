"""Bracket sizes of Tune's synchronous Hyperband (``hyperband`` and ``bohb`` schedulers).

Tune's ``HyperBandScheduler`` (and ``HyperBandForBOHB``) adds a new trial to the current
bracket until that bracket holds ``n`` *live* trials at once; a trial that finishes leaves the
live set. So when fewer than ``n`` trials may run or wait at a time (``max_concurrent_trials``,
a ``ConcurrencyLimiter``), the first bracket, whose milestone is ``max_t``, never fills: every
trial lands in it and none is ever stopped. A bracket's trials also stay in flight (paused at a
milestone) until its rung completes, so the next, larger bracket fills only when the whole
band (every bracket of one Hyperband iteration) may be in flight. The launcher therefore lets a
band's worth of trials be in flight (trials beyond the free CPUs wait; paused ones resume from
their checkpoints). No Ray import here.
"""

from __future__ import annotations

import math


def hyperband_bracket_sizes(max_t: float, reduction_factor: float) -> list[int]:
    """Trials per bracket, in the order Tune fills them.

    With ``eta = reduction_factor`` and ``B = round(log(max_t) / log(eta)) + 1`` brackets,
    bracket ``s`` holds ``n_s = ceil(B / (s + 1) * eta^s)`` trials that start with
    ``r_s = floor(max_t * eta^-s)`` iterations; Tune skips brackets with ``r_s = 0``.

    Raises:
        ValueError: for ``max_t < 1`` or ``reduction_factor <= 1``.
    """
    if not max_t >= 1 or not reduction_factor > 1:
        raise ValueError(f"need max_t >= 1 and reduction_factor > 1, got {max_t} and "
                         f"{reduction_factor}")
    brackets = int(round(math.log(max_t) / math.log(reduction_factor))) + 1
    return [math.ceil(brackets / (s + 1) * reduction_factor**s) for s in range(brackets)
            if int(max_t * reduction_factor ** (-s)) > 0]


def trials_in_flight_needed(max_t: float, reduction_factor: float) -> int:
    """Trials to allow in flight so that every bracket fills: one band, ``sum_s n_s``."""
    return sum(hyperband_bracket_sizes(max_t, reduction_factor))

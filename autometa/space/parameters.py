"""Parameters of a search space: what values each one can take and how it is drawn.

Every parameter is one frozen :class:`Parameter`. Its ``dist`` is one of

========== ===================================================================
``uniform``   float in [low, high]; ``log`` draws log-uniformly; ``q`` rounds to
              multiples of q: ``round(x / q) * q`` (Tune's and hyperopt's rule)
``normal``    float ~ N(mu, sigma); optional ``low``/``high`` truncate; optional ``q``
``randint``   integer in [low, high], **both bounds inclusive**; ``log`` draws
              ``floor(exp(U(log low, log(high + 1))))``
``choice``    one of ``values`` (drawn uniformly)
``grid``      one of ``values``; the ``grid`` searcher enumerates all of them
``constant``  always ``value``
========== ===================================================================

Nested choices and conditional parameters are both expressed with
:class:`Condition`: a parameter is *active* only when every condition holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DISTRIBUTIONS = ("uniform", "normal", "randint", "choice", "grid", "constant")
_REL_TOL = 1e-9


@dataclass(frozen=True)
class Condition:
    """``parent`` must take one of ``values`` for the owning parameter to be active.

    Attributes:
        parent: Key of the parent parameter (a ``choice``, ``grid`` or ``randint``).
        values: Allowed parent values.
        structural: True when the condition comes from a nested choice (the child
            lives inside a branch and is absent, not ``None``, when inactive).
    """

    parent: str
    values: tuple
    structural: bool = False


@dataclass(frozen=True)
class Parameter:
    """One hyperparameter.

    Attributes:
        key: Unique name in the space: the dotted path (``model.width``); inside a
            nested-choice branch the branch is named in brackets
            (``optimizer[sgd].momentum``).
        path: Where the value lands in the trial's config (``("optimizer", "momentum")``).
        dist: One of :data:`DISTRIBUTIONS`.
        low, high: Bounds (inclusive). Optional for ``normal``.
        q: Quantization step for float parameters.
        log: Log-scale drawing (``uniform`` and ``randint``).
        mu, sigma: Mean and standard deviation of ``normal``.
        values: Candidates of ``choice`` and ``grid``.
        value: The value of ``constant``.
        differentiable: A trial can report a hypergradient for it.
        conditions: All must hold for the parameter to be active.
    """

    key: str
    path: tuple[str, ...]
    dist: str
    low: float | None = None
    high: float | None = None
    q: float | None = None
    log: bool = False
    mu: float | None = None
    sigma: float | None = None
    values: tuple = ()
    value: Any = None
    differentiable: bool = False
    conditions: tuple[Condition, ...] = field(default=())

    @property
    def is_numeric(self) -> bool:
        return self.dist in ("uniform", "normal", "randint")

    @property
    def is_discrete(self) -> bool:
        """Whether the parameter has a finite list of values (usable as a parent)."""
        return self.dist in ("choice", "grid", "randint", "constant")

    @property
    def structural_conditions(self) -> tuple[Condition, ...]:
        return tuple(c for c in self.conditions if c.structural)

    def candidates(self) -> tuple:
        """All values of a discrete parameter."""
        if self.dist in ("choice", "grid"):
            return self.values
        if self.dist == "randint":
            return tuple(range(int(self.low), int(self.high) + 1))
        if self.dist == "constant":
            return (self.value,)
        raise TypeError(f"{self.key} ({self.dist}) has no finite list of values")

    # ------------------------------------------------------------------ drawing
    def sample(self, rng: np.random.Generator) -> Any:
        """Draw one value (plain Python type) from the parameter's distribution."""
        if self.dist == "constant":
            return self.value
        if self.dist in ("choice", "grid"):
            return self.values[int(rng.integers(len(self.values)))]
        if self.dist == "randint":
            if self.log:
                # floor(exp(U(log low, log(high + 1)))), as Tune's lograndint
                x = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
                return int(min(max(math.floor(x), self.low), self.high))
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.dist == "uniform":
            if self.log:
                x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
            else:
                x = rng.uniform(self.low, self.high)
            return self.snap(x)
        if self.dist == "normal":
            for _ in range(10_000):  # truncation by rejection: exact truncated normal
                x = self.snap(rng.normal(self.mu, self.sigma))
                if self.in_bounds(x):
                    return x
            raise RuntimeError(f"{self.key}: could not draw a normal value inside its bounds")
        raise ValueError(f"unknown distribution {self.dist!r}")

    def snap(self, x: float) -> float:
        """Apply quantization ``round(x / q) * q`` and return a plain float."""
        x = float(x)
        if self.q:
            x = round(x / self.q) * self.q
            # Kill representation noise such as 0.30000000000000004.
            x = float(np.round(x, max(0, 12 - int(math.floor(math.log10(abs(self.q)))))))
        if self.dist == "uniform":
            x = min(max(x, self.low), self.high)
        return x

    def in_bounds(self, x: float) -> bool:
        lo = -math.inf if self.low is None else self.low
        hi = math.inf if self.high is None else self.high
        scale = [abs(b) for b in (lo, hi) if math.isfinite(b)]
        tol = _REL_TOL * max([1.0, *scale])
        return lo - tol <= x <= hi + tol

    # --------------------------------------------------------------- checking
    def problem_with(self, x: Any) -> str | None:
        """Return why ``x`` is not a valid value of this parameter, or None if it is."""
        if self.dist == "constant":
            return None if _same(x, self.value) else f"expected the constant {self.value!r}"
        if self.dist in ("choice", "grid"):
            if any(_same(x, v) for v in self.values):
                return None
            return f"{x!r} is not one of {list(self.values)!r}"
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return f"expected a number, got {type(x).__name__}"
        if self.dist == "randint" and not isinstance(x, int):
            return f"expected an int, got {type(x).__name__}"
        if not math.isfinite(x):
            return f"{x!r} is not finite"
        if not self.in_bounds(x):
            return f"{x!r} is outside [{self.low}, {self.high}]"
        if self.q and not _is_multiple(x, self.q):
            return f"{x!r} is not a multiple of q={self.q}"
        return None


def _is_multiple(x: float, q: float) -> bool:
    k = x / q
    return abs(k - round(k)) <= 1e-6 * max(1.0, abs(k))


def _same(a: Any, b: Any) -> bool:
    """Equality that does not confuse ``True`` with ``1``."""
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b) and (type(a) is type(b) or _both_numbers(a, b))
    except Exception:  # noqa: BLE001 - exotic values compare unequal
        return False


def _both_numbers(a: Any, b: Any) -> bool:
    return isinstance(a, (int, float)) and isinstance(b, (int, float))


def to_plain(x: Any) -> Any:
    """Convert numpy scalars (and containers of them) to plain Python types."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {k: to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(to_plain(v) for v in x)
    return x

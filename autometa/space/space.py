"""The in-memory search space: parameters, conditions, forbidden combinations.

A *flat* configuration maps parameter keys to values (what searchers work with);
a *config* is the nested dict a trial receives (what users see). :meth:`Space.assemble`
turns the first into the second, :meth:`Space.flatten` goes back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autometa.space.errors import ConstraintViolation
from autometa.space.parameters import Condition, Parameter, _same, to_plain

_MISSING = object()


@dataclass(frozen=True)
class Forbidden:
    """A forbidden combination: rejected when every clause ``key in values`` holds."""

    clauses: tuple[tuple[str, tuple], ...]

    def matches(self, flat: dict[str, Any]) -> bool:
        for key, values in self.clauses:
            if key not in flat or flat[key] is None:
                return False
            if not any(_same(flat[key], v) for v in values):
                return False
        return True

    def describe(self) -> str:
        return " and ".join(
            f"{k} == {v[0]!r}" if len(v) == 1 else f"{k} in {list(v)!r}" for k, v in self.clauses
        )


@dataclass
class Space:
    """A search space: an ordered list of parameters (parents before children).

    Build one with :func:`autometa.load_space` (from a file) or
    :func:`autometa.space.space_from_dict`.

    Attributes:
        parameters: Parameters, parents before the parameters they condition.
        forbidden: Forbidden combinations.
        experiment: The ``experiment`` section of the file, if any.
        source: The file the space was read from, if any.
    """

    parameters: list[Parameter]
    forbidden: list[Forbidden] = field(default_factory=list)
    experiment: Any = None
    source: str | None = None
    lines: dict[tuple, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_key = {p.key: p for p in self.parameters}

    def error(self, problem: str, *key_path: str | int) -> Exception:
        """A :class:`SpaceError` about ``key_path`` of this space's file, with its line."""
        from autometa.space.errors import SpaceError

        return SpaceError(problem, key_path=key_path).located(self.source, self.lines)

    # ------------------------------------------------------------- access
    def __getitem__(self, key: str) -> Parameter:
        return self._by_key[key]

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self.parameters)

    def __len__(self) -> int:
        return len(self.parameters)

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.parameters]

    def searchable(self) -> list[Parameter]:
        """Parameters that a searcher must choose (everything but constants)."""
        return [p for p in self.parameters if p.dist != "constant"]

    def differentiable(self) -> list[Parameter]:
        """Parameters marked ``differentiable: true``."""
        return [p for p in self.parameters if p.differentiable]

    @property
    def has_conditions(self) -> bool:
        return any(p.conditions for p in self.parameters)

    # ------------------------------------------------------- activity
    def is_active(self, param: Parameter, flat: dict[str, Any]) -> bool:
        """Whether every condition of ``param`` holds in ``flat``."""
        for cond in param.conditions:
            parent = self._by_key[cond.parent]
            if not self.is_active(parent, flat):
                return False
            value = flat.get(cond.parent, _MISSING)
            if value is _MISSING or not any(_same(value, v) for v in cond.values):
                return False
        return True

    # ------------------------------------------------- flat <-> nested config
    def assemble(self, flat: dict[str, Any]) -> dict[str, Any]:
        """Build the trial config from flat values.

        Constants are filled in. An inactive parameter of a nested-choice branch
        is absent; an inactive conditional parameter is ``None``.

        Raises:
            ConstraintViolation: an active parameter has no value in ``flat``.
        """
        config: dict[str, Any] = {}
        for p in self.parameters:
            if not self.is_active(p, flat):
                if any(not self.is_active(self._by_key[c.parent], flat) or not _cond_holds(c, flat)
                       for c in p.structural_conditions):
                    continue
                _put(config, p.path, None)
                continue
            if p.dist == "constant":
                value = p.value
            elif p.key in flat:
                value = to_plain(flat[p.key])
            else:
                raise ConstraintViolation(f"no value for active parameter {p.key!r}")
            _put(config, p.path, value)
        return config

    def flatten(self, config: dict[str, Any]) -> dict[str, Any]:
        """Inverse of :meth:`assemble`: the flat values of the active parameters."""
        flat: dict[str, Any] = {}
        for p in self.parameters:
            if not self.is_active(p, flat):
                continue
            value = _get(config, p.path)
            if value is not _MISSING:
                flat[p.key] = value
        return flat

    # ------------------------------------------------------------ checking
    def problems(self, config: dict[str, Any]) -> list[str]:
        """Everything that makes ``config`` fall outside the space (empty if it is inside)."""
        out: list[str] = []
        flat = self.flatten(config)
        for p in self.parameters:
            active = self.is_active(p, flat)
            value = _get(config, p.path)
            if not active:
                if value not in (_MISSING, None) and not p.structural_conditions:
                    out.append(f"{p.key}: inactive (its condition does not hold) but set to {value!r}")
                continue
            if value is _MISSING:
                out.append(f"{p.key}: missing")
                continue
            problem = p.problem_with(value)
            if problem:
                out.append(f"{p.key}: {problem}")
        for rule in self.forbidden:
            if rule.matches(flat):
                out.append(f"forbidden combination: {rule.describe()}")
        return out

    def checked_point(self, point: dict, where: str = "point",
                      rng: np.random.Generator | None = None) -> dict[str, Any]:
        """Flat values of a user's config (nested, or flat with dotted keys), checked.

        With ``rng``, parameters it leaves out are drawn; without, they must all be there.

        Raises:
            ValueError: ``"<where>: <problem>"``, for an unknown key, a missing value or a
                value outside the space.
        """
        if not isinstance(point, dict):
            raise ValueError(f"{where}: a config must be a dict, got {type(point).__name__}")
        heads = {p.path[0] for p in self} | set(self.keys)
        unknown = [k for k in point if k not in heads]
        if unknown:
            raise ValueError(f"{where}: unknown parameter(s) {unknown}; the space has "
                             f"{self.keys}")
        flat = self.flatten(point)
        flat.update({k: v for k, v in point.items() if k in self and not isinstance(v, dict)})
        if rng is not None:
            flat = self.sample_flat(rng, fixed=flat)
        try:
            problems = self.problems(self.assemble(flat))
        except ConstraintViolation as err:
            problems = [str(err)]
        if problems:
            raise ValueError(f"{where}: {'; '.join(problems)}")
        return self.flatten(self.assemble(flat))

    def validate(self, config: dict[str, Any]) -> None:
        """Raise :class:`ConstraintViolation` if ``config`` is outside the space."""
        problems = self.problems(config)
        if problems:
            raise ConstraintViolation("; ".join(problems))

    def is_forbidden(self, flat: dict[str, Any]) -> bool:
        return any(rule.matches(flat) for rule in self.forbidden)

    # ------------------------------------------------------------- drawing
    def sample_flat(self, rng: np.random.Generator, fixed: dict[str, Any] | None = None,
                    max_tries: int = 1000) -> dict[str, Any]:
        """Draw flat values of the active parameters, rejecting forbidden combinations.

        Args:
            rng: Random generator.
            fixed: Values to keep (e.g. a grid point); the rest are drawn.
            max_tries: Give up after this many forbidden draws.
        """
        fixed = fixed or {}
        for _ in range(max_tries):
            flat: dict[str, Any] = {}
            for p in self.parameters:
                if self.is_active(p, flat):
                    flat[p.key] = fixed[p.key] if p.key in fixed else p.sample(rng)
            if not self.is_forbidden(flat):
                return flat
        raise ConstraintViolation(
            f"{max_tries} draws in a row hit a forbidden combination: the forbidden clauses "
            "exclude (almost) the whole space"
        )

    def sample(self, rng: np.random.Generator | int | None = None) -> dict[str, Any]:
        """Draw one trial config. ``rng`` may be a seed."""
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        return self.assemble(self.sample_flat(rng))


def _cond_holds(cond: Condition, flat: dict[str, Any]) -> bool:
    value = flat.get(cond.parent, _MISSING)
    return value is not _MISSING and any(_same(value, v) for v in cond.values)


def _put(config: dict[str, Any], path: Iterable[str], value: Any) -> None:
    *head, last = tuple(path)
    node = config
    for part in head:
        node = node.setdefault(part, {})
    node[last] = value


def _get(config: dict[str, Any], path: Iterable[str]) -> Any:
    node: Any = config
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node

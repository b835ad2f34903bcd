"""Declared options: what a registered searcher or scheduler accepts and can do, known
without importing it (pure: no Ray).

Each registry line names a :class:`Declared` class (``autometa.searchers.specs``,
``autometa.schedulers.specs``): the options its implementation takes, with their types,
ranges and defaults, and its capabilities (a race, a population scheduler, ...). ``autometa
validate`` checks a file against these declarations alone, so it never imports Ray; the
implementation is imported when the search is built. For Ray's own schedulers the
declaration restates the asserts of their constructors, and the conformance tests check it
against them (every value declared valid builds, every value Ray refuses is refused here).
"""

from __future__ import annotations

import importlib
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from autometa.space.errors import shown_value
from autometa.trial.keys import finite_number

KINDS = ("int", "number", "bool", "str", "list", "dict", "callable", "any")
_KIND_WORDS = {"int": "an integer", "number": "a number", "bool": "true or false",
               "str": "a string", "list": "a list", "dict": "a mapping",
               "callable": "a Python function (given in code, not in a file)", "any": "a value"}


class OptionError(ValueError):
    """An option's value (or an unknown option): ``key`` names it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key


@dataclass(frozen=True)
class Option:
    """One option: its name, kind (one of :data:`KINDS`), default and accepted range.

    ``low``/``high`` bound an ``int`` or ``number`` (``*_open``: the bound itself is refused;
    integers beyond 64 bits are refused always: NumPy and Ray cannot take them);
    ``choices`` lists the accepted values; ``optional``: None is accepted (and means the
    default behaviour); ``length``: the exact length of a ``list``; ``fields``: the keys a
    ``dict`` may have, each an option of its own.
    """

    name: str
    kind: str = "any"
    default: Any = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    optional: bool = False
    length: int | None = None
    fields: tuple[Option, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name!r}: kind must be one of {KINDS}")

    def describe(self) -> str:
        """What a value must be, as the end of "``<name>`` must be ...": "an integer >= 1"."""
        if self.choices:
            return f"one of {list(self.choices)}"
        words = _KIND_WORDS[self.kind]
        if self.kind == "list" and self.length is not None:
            words = f"a list of {self.length} numbers"
        if self.kind == "dict" and self.fields:
            words += f" with keys among {[f.name for f in self.fields]}"
        lo = None if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        hi = None if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        if lo and hi:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            words += f" in {left}{self.low:g}, {self.high:g}{right}"
        elif lo or hi:
            words += f" {lo or hi}"
        return words + (" (or null)" if self.optional else "")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is refused ("must be an integer >= 1, got 0"), None if it is fine."""
        if value is None:
            return None if self.optional else f"must be {self.describe()}, got null"
        if self.choices:
            ok = any(value == c and type(value) is type(c) for c in self.choices)
            return None if ok else f"must be {self.describe()}, got {value!r}"
        if not self._kind_ok(value):
            return f"must be {self.describe()}, got {shown_value(value)}"
        if self.kind in ("int", "number") and not self._in_range(value):
            return f"must be {self.describe()}, got {shown_value(value)}"
        if self.kind == "list" and self.length is not None:
            if len(value) != self.length or any(
                    isinstance(v, bool) or finite_number(v) is None for v in value):
                return f"must be {self.describe()}, got {shown_value(value)}"
        if self.kind == "dict" and self.fields:
            declared = {f.name: f for f in self.fields}
            for key, item in value.items():
                if key not in declared:
                    return f"has an unknown key {key!r}; accepted: {list(declared)}"
                problem = declared[key].problem(item)
                if problem:
                    return f"key {key} {problem}"
        return None

    def _kind_ok(self, value: Any) -> bool:
        if self.kind == "int":  # (NumPy's integers too)
            return isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if self.kind == "number":
            return not isinstance(value, bool) and isinstance(value, numbers.Real) \
                and finite_number(value) is not None
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str) and bool(value)
        if self.kind == "list":
            return isinstance(value, (list, tuple))
        if self.kind == "dict":
            return isinstance(value, dict)
        if self.kind == "callable":
            return callable(value)
        return True

    def _in_range(self, value: float) -> bool:
        v = finite_number(value)
        if v is None or (isinstance(value, numbers.Integral) and not -2**63 <= value < 2**63):
            return False
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            return False
        return not (self.high is not None
                    and (v > self.high or (self.high_open and v == self.high)))


class Declared:
    """A registry entry: the options an implementation takes and what it can do.

    Subclasses set :attr:`implementation` and :attr:`options` (a subclass adds to its
    parent's: ``options = Parent.options + (...)``) and override :meth:`together` for checks
    that involve several options.
    """

    implementation: ClassVar[str] = ""
    """``"module:Class"`` of what this entry builds (imported by :meth:`load` only)."""
    options: ClassVar[tuple[Option, ...]] = ()
    """Every option the implementation accepts from a file or ``make_*(**options)``."""

    @classmethod
    def load(cls) -> type:
        """The implementation class (imports its module: for Ray's classes, Ray)."""
        module, attr = cls.implementation.split(":")
        return getattr(importlib.import_module(module), attr)

    @classmethod
    def class_name(cls) -> str:
        """The implementation's class name, without importing it."""
        return cls.implementation.rsplit(":", 1)[1]

    @classmethod
    def option(cls, name: str) -> Option:
        """The declared option ``name`` (KeyError if there is none)."""
        for o in cls.options:
            if o.name == name:
                return o
        raise KeyError(name)

    @classmethod
    def option_names(cls) -> list[str]:
        return [o.name for o in cls.options]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Each option's default, as the implementation's signature has it."""
        return {o.name: o.default for o in cls.options}

    @classmethod
    def check(cls, given: Mapping[str, Any], what: str = "") -> dict[str, Any]:
        """Every option of ``given`` checked; the values with the defaults filled in.

        Args:
            what: How messages name the owner (``"scheduler 'asha'"``) for an unknown option.

        Raises:
            OptionError: naming the first option that is unknown or wrong.
        """
        declared = {o.name: o for o in cls.options}
        for key, value in given.items():
            if key not in declared:
                raise OptionError(key, f"unknown option {key!r}{' for ' + what if what else ''}; "
                                       f"accepted: {list(declared)}")
            problem = declared[key].problem(value)
            if problem:
                raise OptionError(key, f"{key} {problem}")
        values = {**cls.defaults(), **given}
        found = cls.together(values)
        if found:
            raise OptionError(*found)
        return values

    @classmethod
    def together(cls, values: dict[str, Any]) -> tuple[str, str] | None:
        """A problem among several options (key, message), None if there is none.

        ``values``: every option, with the defaults filled in, each already checked alone.
        """
        return None

    @classmethod
    def against_space(cls, values: dict[str, Any], space: Any) -> tuple[str, str] | None:
        """A problem of the checked ``values`` with the search space (key, message), None if
        there is none (e.g. a parameter name that is not in it)."""
        return None


def differentiable_against_space(values: dict[str, Any], space: Any) -> tuple[str, str] | None:
    """The ``against_space`` check of a ``differentiable`` option (names of continuous
    parameters of the space), for the classes that take one."""
    if values.get("differentiable") is not None:
        from autometa.space import unconstrained

        try:
            unconstrained.continuous(space, values["differentiable"])
        except ValueError as err:
            return "differentiable", f"differentiable: {err}"
    return None


__all__ = ["KINDS", "Declared", "Option", "OptionError", "differentiable_against_space"]

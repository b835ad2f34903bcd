"""Reading a search-space file into plain data, with line numbers, safely.

YAML is read with ``yaml.SafeLoader`` node by node so that every key keeps its
line; JSON with :mod:`json`. Nothing from a file is ever evaluated as code, and the reading
is bounded: a key given twice is an error naming both lines (YAML and JSON would keep the
last silently), aliases may not expand past :data:`MAX_VALUES` values nor refer to
themselves, nesting stops at :data:`MAX_DEPTH`, and an over-long number is an error.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

import yaml

from autometa.space.errors import SpaceError

Lines = dict[tuple, int]
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
MAX_VALUES = 1_000_000
"""Most values (mapping entries, list items, scalars) a file may expand to."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading numbers as YAML 1.2 does: ``1e-3`` and ``1.0e308`` are
    floats (YAML 1.1 wants a dot and a signed exponent, and reads them as text otherwise)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


class _Problem(Exception):
    """A problem of the document itself, at a line."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def read_document(path: str | os.PathLike) -> tuple[Any, Lines]:
    """Read a YAML or JSON file.

    Returns:
        The parsed data and a map from key paths to 1-based line numbers.

    Raises:
        SpaceError: the file is missing, binary, empty or not valid YAML/JSON.
    """
    file = os.fspath(path)
    try:
        with open(file, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise SpaceError("file not found", file=file) from None
    except IsADirectoryError:
        raise SpaceError("is a directory, expected a YAML or JSON file", file=file) from None
    except OSError as err:
        raise SpaceError(f"cannot read the file: {err.strerror}", file=file) from None
    if b"\x00" in raw:
        raise SpaceError("binary file: expected a YAML or JSON text file", file=file)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpaceError("not UTF-8 text: expected a YAML or JSON text file", file=file) from None
    return parse_text(text, file=file)


def parse_text(text: str, *, file: str | None = None) -> tuple[Any, Lines]:
    """Parse YAML or JSON text (JSON when ``file`` ends in ``.json``)."""
    if not text.strip():
        raise SpaceError("the file is empty: expected a mapping with a 'parameters' key", file=file)
    try:
        return _parse(text, file)
    except _Problem as err:
        raise SpaceError(str(err), file=file, line=err.line) from None
    except RecursionError:
        raise SpaceError(f"nested too deeply (more than {MAX_DEPTH} levels of mappings and "
                         "lists)", file=file) from None


def _parse(text: str, file: str | None) -> tuple[Any, Lines]:
    if file and file.lower().endswith(".json"):
        try:  # JSON is YAML: its reading gives the lines (and finds duplicates with them)
            _, lines = _yaml_with_lines(text)
        except yaml.YAMLError:
            lines = {}
        try:
            data = json.loads(text, object_pairs_hook=_unique_pairs)
        except json.JSONDecodeError as err:
            raise SpaceError(f"JSON syntax error: {err.msg} (column {err.colno})", file=file,
                             line=err.lineno) from None
        except ValueError as err:  # an over-long number
            raise _Problem(_number_problem(err), None) from None
        _depth(data, 0)
        return data, lines
    try:
        return _yaml_with_lines(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err)
        raise SpaceError(f"YAML syntax error: {problem}", file=file, line=line) from None


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Problem(f"duplicate key {key!r} (a key given twice would silently keep the "
                           "last)", None)
        out[key] = value
    return out


def _depth(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _Problem(f"nested too deeply (more than {MAX_DEPTH} levels of mappings and "
                       "lists)", None)
    if isinstance(value, dict):
        for item in value.values():
            _depth(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _depth(item, depth + 1)


def _yaml_with_lines(text: str) -> tuple[Any, Lines]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        lines: Lines = {}
        budget = {"values": 0, "open": set()}
        data = _construct(loader, node, (), lines, budget) if node is not None else None
    finally:
        loader.dispose()
    return data, lines


def _construct(loader: _Loader, node: yaml.Node, path: tuple, lines: Lines,
               budget: dict) -> Any:
    line = node.start_mark.line + 1
    budget["values"] += 1
    if budget["values"] > MAX_VALUES:
        raise _Problem(f"the file expands to more than {MAX_VALUES} values (YAML aliases "
                       "referring to aliases?)", line)
    if len(path) > MAX_DEPTH:
        raise _Problem(f"nested too deeply (more than {MAX_DEPTH} levels of mappings and "
                       "lists)", line)
    if id(node) in budget["open"]:
        raise _Problem("a YAML alias refers to the value that contains it (a recursive alias)",
                       lines.get(path[:-1], line))  # where the alias is used
    lines.setdefault(path, line)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        budget["open"].add(id(node))
        try:
            return _construct_collection(loader, node, path, lines, budget)
        finally:
            budget["open"].discard(id(node))
    try:
        return loader.construct_object(node, deep=True)
    except ValueError as err:  # e.g. an integer of thousands of digits
        raise _Problem(_number_problem(err), line) from None


def _number_problem(err: ValueError) -> str:
    if "integer string conversion" in str(err):
        return (f"a number with more than {sys.get_int_max_str_digits()} digits (no "
                "parameter needs one)")
    return f"cannot read the value: {err}"


def _construct_collection(loader: _Loader, node: yaml.Node, path: tuple,
                          lines: Lines, budget: dict) -> Any:
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        raise yaml.constructor.ConstructorError(
            None, None, f"unsupported tag {node.tag!r} (only plain YAML is read)", node.start_mark)
    if isinstance(node, yaml.MappingNode):
        local = sum(k.tag != "tag:yaml.org,2002:merge" for k, _ in node.value)
        loader.flatten_mapping(node)  # resolve YAML merge keys (<<)
        merged = len(node.value) - local  # they come first; a local key may override them
        out: dict[Any, Any] = {}
        inherited: set = set()
        for index, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a scalar", key_node.start_mark)
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in out and key not in inherited:
                raise _Problem(f"duplicate key {key!r}, first at line {lines[path + (key,)]} "
                               "(a key given twice would silently keep the last)", line)
            if index < merged:
                inherited.add(key)
            else:
                inherited.discard(key)
            lines[path + (key,)] = line
            out[key] = _construct(loader, value_node, path + (key,), lines, budget)
        return out
    return [_construct(loader, item, path + (i,), lines, budget)
            for i, item in enumerate(node.value)]

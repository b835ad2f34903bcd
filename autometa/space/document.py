"""Reading a search-space file into plain data, with line numbers, safely.

YAML is read with ``yaml.SafeLoader`` node by node so that every key keeps its
line; JSON with :mod:`json`. Nothing from a file is ever evaluated as code.
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml

from autometa.space.errors import SpaceError

Lines = dict[tuple, int]
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


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
    if file and file.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpaceError(f"JSON syntax error: {err.msg} (column {err.colno})", file=file,
                             line=err.lineno) from None
        try:
            _, lines = _yaml_with_lines(text)  # JSON is YAML: reuse it for line numbers
        except yaml.YAMLError:
            lines = {}
        return data, lines
    try:
        return _yaml_with_lines(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err)
        raise SpaceError(f"YAML syntax error: {problem}", file=file, line=line) from None


def _yaml_with_lines(text: str) -> tuple[Any, Lines]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: Lines = {}
        data = _construct(loader, node, (), lines) if node is not None else None
    finally:
        loader.dispose()
    return data, lines


def _construct(loader: yaml.SafeLoader, node: yaml.Node, path: tuple, lines: Lines) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        raise yaml.constructor.ConstructorError(
            None, None, f"unsupported tag {node.tag!r} (only plain YAML is read)", node.start_mark)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolve YAML merge keys (<<)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a scalar", key_node.start_mark)
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _construct(loader, value_node, path + (key,), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, path + (i,), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)

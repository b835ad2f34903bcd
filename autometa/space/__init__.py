"""Search spaces: the file format, loading, validation and sampling (pure Python).

Importing this package loads neither Ray nor torch.

Example:
    >>> from autometa.space import space_from_dict
    >>> space = space_from_dict({"parameters": {"lr": {"type": "loguniform",
    ...                                                "low": 1e-4, "high": 1e-1}}})
    >>> 1e-4 <= space.sample(0)["lr"] <= 1e-1
    True
"""

from __future__ import annotations

import os
import warnings

from autometa.space.document import parse_text, read_document
from autometa.space.errors import ConstraintViolation, SpaceError, SpaceWarning
from autometa.space.experiment import Component, Experiment
from autometa.space.nni import is_nni_document, nni_to_document
from autometa.space.parameters import Condition, Parameter
from autometa.space.parse import space_from_dict
from autometa.space.space import Forbidden, Space

__all__ = [
    "Component", "Condition", "ConstraintViolation", "Experiment", "Forbidden", "Parameter",
    "Space", "SpaceError", "SpaceWarning", "load_space", "space_from_dict", "space_from_text",
]


def load_space(path: str | os.PathLike) -> Space:
    """Load a search-space file: autometa YAML/JSON, or an NNI ``search_space.json``.

    Args:
        path: The file.

    Returns:
        The space; ``space.experiment`` holds the ``experiment`` section if present.

    Raises:
        SpaceError: naming the file, key path, line and what is expected.
    """
    data, lines = read_document(path)
    return _from_document(data, lines, os.fspath(path))


def space_from_text(text: str, *, file: str | None = None) -> Space:
    """Like :func:`load_space` on text (JSON if ``file`` ends in ``.json``, else YAML)."""
    data, lines = parse_text(text, file=file)
    return _from_document(data, lines, file)


def _from_document(data: object, lines: dict, file: str | None) -> Space:
    if is_nni_document(data) and "parameters" not in data:  # type: ignore[operator]
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always", SpaceWarning)
            try:
                data = nni_to_document(data)  # type: ignore[arg-type]
            except SpaceError as err:
                raise err.located(file, lines) from None
        for record in said:  # what the reading changed, with the file and line it is at
            message = record.message
            if isinstance(message, SpaceWarning):
                message = message.located(file, lines)
            warnings.warn(message, stacklevel=3)
        lines = {("parameters",) + k: v for k, v in lines.items()}
    return space_from_dict(data, file=file, lines=lines)

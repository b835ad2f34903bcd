"""Errors raised for bad search-space files and bad configurations."""

from __future__ import annotations

from collections.abc import Sequence


def format_key_path(path: Sequence[str | int]) -> str:
    """Render a key path such as ``("parameters", "lr", "low")`` as ``parameters.lr.low``.

    List indices are rendered in brackets: ``forbidden[0].optimizer``.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def shown_value(value: object) -> str:
    """A value for a message: its ``repr``, an integer of thousands of digits by its length."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10 ** 30:
        return f"an integer of {len(str(abs(value)))} digits"
    return repr(value)


class SpaceError(ValueError):
    """A search-space file (or dict) is malformed.

    The message always names the file (when there is one), the key path, the
    line (when the YAML parser gave one) and what is expected, so the CLI can
    print it as is and exit with status 2.

    Attributes:
        problem: What is wrong and what is expected.
        file: The file the space came from, if any.
        key_path: Where in the document the problem is.
        line: 1-based line number, if known.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        key_path: Sequence[str | int] = (),
        line: int | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.key_path = tuple(key_path)
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.file or "<search space>"
        if self.line is not None:
            where += f":{self.line}"
        if not self.key_path:
            return f"{where}: {self.problem}"
        return f"{where}: {format_key_path(self.key_path)}: {self.problem}"

    def located(self, file: str | None, lines: dict[tuple, int] | None) -> SpaceError:
        """Return a copy that names ``file`` and the line of the closest known key."""
        line = self.line
        if line is None and lines:
            path = self.key_path
            while path and path not in lines:
                path = path[:-1]
            line = lines.get(path)
        return type(self)(self.problem, file=file or self.file, key_path=self.key_path,
                          line=line)


class SpaceWarning(SpaceError, UserWarning):
    """A file was read with a change that it states (``warnings.warn``-ed, never raised):
    e.g. an NNI ``quniform`` whose bounds are not multiples of ``q``. Its message names the
    file, line and key path as :class:`SpaceError`'s do."""


class ConstraintViolation(ValueError):
    """A configuration does not satisfy its space (bounds, conditions, forbidden clauses)."""

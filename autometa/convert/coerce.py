"""What a user may pass where a search space is expected, made an autometa :class:`Space`.

Pure: a Tune ``param_space`` loads :mod:`autometa.convert.tune` (and so Ray) only when one is
given, so an engine that takes a space stays free of Ray for files and Spaces.
"""

from __future__ import annotations

from typing import Any

from autometa.space import Space


def as_space(space: Any) -> Space | None:
    """An autometa :class:`Space` from a Space, a Tune ``param_space`` dict
    (``tune.loguniform(...)`` values) or a space document (a dict with ``parameters``); None
    stays None.

    Raises:
        TypeError: anything else.
    """
    if space is None or isinstance(space, Space):
        return space
    if isinstance(space, dict):
        if is_document(space):
            from autometa.space import space_from_dict

            return space_from_dict(space)
        from autometa.convert.tune import from_tune

        return from_tune(space)
    raise TypeError(f"space must be an autometa Space, a Tune param_space dict or a space "
                    f"document with 'parameters', got {type(space).__name__}")


def is_document(space: dict) -> bool:
    """Whether a dict is a space document (``parameters``, optionally ``experiment``), not a
    Tune ``param_space``."""
    return "parameters" in space


def continuous_part(param_space: dict) -> Space:
    """The continuous parameters of a Tune ``param_space`` as a :class:`Space`, the rest left
    out: for a reader that needs only those (a trial's hypergradient engine), where another
    entry is one autometa cannot read (a ``tune.sample_from`` of the user's own function)."""
    from ray.tune.search.sample import Float

    from autometa.convert.tune import from_tune

    def keep(node: dict) -> dict:
        out = {}
        for key, value in node.items():
            if isinstance(value, dict):
                if inner := keep(value):
                    out[key] = inner
            elif isinstance(value, Float):
                out[key] = value
        return out

    return from_tune(keep(param_space))

"""Built-in trainables, by name. The registry below is the only list of their names.

A search-space file's ``experiment.trainable`` is either one of these names or
an import path ``package.module:function`` to a Tune function trainable.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

TRAINABLES: dict[str, str] = {
    "digits_mlp": "autometa.trainables.digits:train_digits_mlp",
    "digits_augment": "autometa.trainables.digits_augment:train_digits_augment",
    "digits_cnn": "autometa.trainables.digits:train_digits_cnn",
    "digits_cnn_decay": "autometa.trainables.digits_cnn_decay:train_digits_cnn_decay",
    "digits_cnn_online": "autometa.trainables.digits_cnn_online:train_digits_cnn_online",
    "digits_group_weights": "autometa.trainables.digits_groups:digits_group_weights",
    "digits_logreg": "autometa.trainables.digits_logreg:train_digits_logreg",
    "quadratic": "autometa.trainables.synthetic:quadratic",
}
"""Built-in trainable names and the functions behind them."""


def resolve_trainable(spec: str, near: Sequence[str] = ()) -> Callable:
    """Return the trainable named ``spec`` (a built-in name or ``module:function``).

    A ``module:function`` is imported with the folders ``near`` (the search-space file's) and
    the working directory importable; they are appended to ``sys.path``, which Ray passes on
    to the trial workers, so an installed module of the same name still wins.

    Raises:
        ValueError: unknown name, unimportable module or missing function, with the fix.
    """
    target = TRAINABLES.get(spec, spec)
    if ":" not in target:
        raise ValueError(f"unknown trainable {spec!r}: use a built-in name "
                         f"({', '.join(sorted(TRAINABLES))}) or an import path 'module:function'")
    module_name, _, attr = target.partition(":")
    if target is spec:  # a user's module: where they keep it is importable
        for folder in [*near, os.getcwd()]:
            if folder and folder not in sys.path:
                sys.path.append(folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import {module_name!r} for trainable {spec!r}: {err}") from None
    except Exception as err:  # noqa: BLE001 - the user's module failed while importing
        raise ValueError(f"importing {module_name!r} for trainable {spec!r} raised "
                         f"{type(err).__name__}: {err}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"module {module_name!r} has no callable {attr!r}")
    if not isinstance(fn, type):  # a class is a Tune Trainable; a function takes the config
        _check_function_trainable(fn, spec)
    return fn


def _check_function_trainable(fn: Callable, spec: str) -> None:
    import inspect

    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to check
    try:
        signature.bind({})
    except TypeError:
        raise ValueError(f"trainable {spec!r} has the signature {signature}: a Tune function "
                         "trainable takes one argument, the config dict") from None

"""A trial's training thread finishes before its worker process does.

Tune runs a function trainable in a daemon thread of its actor. To stop a trial, Tune wakes
that thread, which raises ``SystemExit`` at its next report, and the actor process exits. If
Python finalizes the process while the thread is still freeing its frames (a model's
tensors), the thread is cut off inside a PyTorch destructor and the worker aborts ("Fatal
Python error: Aborted", a C++ stack trace in the driver's output): nothing is lost, but a
user reads a crash. Joining the thread at exit, for a bounded time, lets it finish first.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

JOIN_AT_EXIT_S = 2.0
"""Longest wait at process exit for the training threads (as Tune waits to reuse an actor)."""

_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def finish_before_exit(train: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Tune function trainable so its process waits for it at exit (see module doc).

    The wrapper keeps the function's name and signature, which Tune reads. Anything but a
    plain function (a ``tune.Trainable`` class, a partial) is returned as it is.
    """
    if not inspect.isfunction(train):
        return train

    @functools.wraps(train)
    def trainable(*args: Any, **kwargs: Any) -> Any:
        _remember(threading.current_thread())
        return train(*args, **kwargs)

    return trainable


def _remember(thread: threading.Thread) -> None:
    # A module function: the wrapper, pickled by value to the worker, imports this module
    # there (and so registers the exit handler) by calling it.
    if thread is not threading.main_thread():  # called by Tune, not directly
        _threads.add(thread)


@atexit.register
def join_training_threads(timeout: float = JOIN_AT_EXIT_S) -> None:
    """Wait up to ``timeout`` seconds in all for the remembered threads still running."""
    deadline = time.monotonic() + timeout
    for thread in list(_threads):
        if thread is not threading.current_thread() and thread.is_alive():
            thread.join(max(0.0, deadline - time.monotonic()))

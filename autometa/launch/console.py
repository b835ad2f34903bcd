"""What the command line prints besides its own lines: where log records go, Python warnings
as one line each, and the Ray and Tune messages dropped at the default verbosity (the
progress line and the summary say the same, once)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is now (basicConfig binds the stream
    of the first call: a replaced or closed one in an embedding program, or a test)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


@contextlib.contextmanager
def warnings_as_log_lines(verbosity: int = 1) -> Iterator[None]:
    """Python warnings raised while a command runs become one log line each (``WARNING
    py.warnings: RuntimeWarning: ...``, no source line), through the console's handler; below
    ``--verbosity 2`` only autometa's own (its warning classes, or raised from its code) are
    kept: NumPy's "All-NaN slice" from inside a Tune scheduler is not the user's to act on."""
    import warnings

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    log = logging.getLogger("py.warnings")

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        ours = (category.__module__.split(".")[0] == "autometa"
                or os.path.abspath(filename).startswith(package + os.sep))
        if ours or verbosity >= 2:
            log.warning("%s: %s", category.__name__, message)

    previous = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


@contextlib.contextmanager
def workers_warn_once(verbosity: int = 1) -> Iterator[None]:
    """Below ``--verbosity 2``, the local workers Ray starts meanwhile print an unconverged
    hypergradient's warning once per process (``autometa.trial.keys.WARNINGS_ENV``) instead
    of at the 1st, 2nd, 4th... call of each engine: with several trials that was a screen of
    near-identical warnings, which the run's summary counts anyway. Workers inherit the
    driver's environment when it starts Ray; a user's own setting is kept, and the driver's
    environment is put back after (an embedding program's later engines are not affected)."""
    from autometa.trial.keys import WARNINGS_ENV

    if verbosity >= 2 or WARNINGS_ENV in os.environ:
        yield
        return
    os.environ[WARNINGS_ENV] = "first"
    try:
        yield
    finally:
        os.environ.pop(WARNINGS_ENV, None)


def log_to_stderr() -> None:
    """Warnings go to the console (as ``logging.basicConfig`` would: not where the program
    configured logging itself), to the ``sys.stderr`` of now: Ray's own handler keeps the
    stream of the time Ray was imported, which an embedding program may have closed since."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(_CurrentStderr())
        root.setLevel(logging.WARNING)
    for handler in logging.getLogger("ray").handlers:
        if type(handler).__name__ == "PlainRayHandler" and handler.stream is not sys.stderr:
            handler.stream = sys.stderr  # (setStream would flush the old, closed one)


def _no_trial_traceback(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not message.startswith(("Trial task failed for trial", "Trials did not complete"))


def _no_token_notice(record: logging.LogRecord) -> bool:
    """Drop Ray's "Token authentication is enabled" notice that opens every run."""
    return "Token authentication is enabled" not in record.getMessage()


def _no_tuner_restore_hint(record: logging.LogRecord) -> bool:
    """Drop Tune's "Resume experiment with: Tuner.restore(...)": Python, not a command."""
    return "Tuner.restore(" not in record.getMessage()


def quiet_ray_logs() -> None:
    """Below ``--verbosity 2``: drop what the progress line and the summary already say."""
    # a failed trial's traceback (in its error.txt) and Tune's list of failed trials: the
    # progress line and the summary say which failed, with the error's last line
    logging.getLogger("ray.tune.execution.tune_controller").addFilter(_no_trial_traceback)
    logging.getLogger("ray.tune.tune").addFilter(_no_trial_traceback)
    # (the README's "Network" says what the notice means)
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        _no_token_notice)
    # a trial stopped (Ctrl-C) before its first results reached the folder: the summary
    # counts it with 0 iterations; Tune's "Failed to fetch metrics" list says no more
    from autometa.launch.show import MissingResults

    logging.getLogger("ray.tune.analysis.experiment_analysis").addFilter(MissingResults())


def no_tuner_restore_hint() -> None:
    """Tune's hint to resume is Python; the command line prints the command instead."""
    logging.getLogger("ray.tune.tune").addFilter(_no_tuner_restore_hint)

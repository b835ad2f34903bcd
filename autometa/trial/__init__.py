"""The trial side's contract with searchers and schedulers: result keys, and reporting to Tune.

Result keys a trial reports (any trainable may report them; :mod:`autometa.trial.keys` is the
one place they are spelled, and :func:`hypergrad_metrics` writes them):

============================== ===============================================================
key                            meaning
============================== ===============================================================
``hparams/<name>``             current value of hyperparameter ``<name>`` (dotted space key)
``hypergrad/<name>``           d metric / d value, in the value's own units
``hypergrad_converged``        1.0 when every check met its stated tolerance
``hypergrad_residual``         relative residual of the linear solve
``hypergrad_inner_gap``        how much the validation loss would still change (first order)
                               if training went on to the optimum
``hypergrad_inner_grad_norm``  norm of the training loss's gradient at the weights
``hypergrad_damping``          damping added to the Hessian
``hyperstep_skipped``          1.0 when a non-finite loss or hypergradient skipped the step
============================== ===============================================================

A tensor-valued hyperparameter ``<name>`` is reported element by element as
``<name>.<i>`` (flattened index).

:func:`finish_before_exit` wraps a function trainable that holds PyTorch tensors so that its
worker does not abort when Tune stops it (``autometa run`` wraps every trainable).
"""

from autometa.trial.exit import finish_before_exit
from autometa.trial.keys import (
    HPARAM_PREFIX,
    HYPERGRAD_PREFIX,
    finite_number,
    hypergrad_metrics,
    hyperstep_metrics,
)

__all__ = ["HPARAM_PREFIX", "HYPERGRAD_PREFIX", "finish_before_exit", "finite_number",
           "hypergrad_metrics", "hyperstep_metrics", "report_hypergradients", "restore_state"]


def __getattr__(name: str):
    # the Tune reporters import Ray and torch: only when asked for
    if name in ("report_hypergradients", "restore_state", "report_hyperstep", "restore_trainer"):
        from autometa.trial import tune as _tune

        return getattr(_tune, name)
    raise AttributeError(f"module 'autometa.trial' has no attribute {name!r}")

"""The trial side's contract with searchers and schedulers: result keys, and reporting to Tune.

Result keys a trial reports (any trainable may report them, not only autometa's helpers):

=========================== ==================================================================
key                         meaning
=========================== ==================================================================
``hparams/<name>``          current value of hyperparameter ``<name>`` (dotted space key)
``hypergrad/<name>``        d metric / d value, in the value's own units
``hypergrad_converged``     1.0 when the inner optimum and linear solve met their tolerances
``hyperstep_skipped``       1.0 when a non-finite loss or hypergradient skipped the step
=========================== ==================================================================

A tensor-valued hyperparameter ``<name>`` is reported element by element as
``<name>.<i>`` (flattened index).

:func:`finish_before_exit` wraps a function trainable that holds PyTorch tensors so that its
worker does not abort when Tune stops it (``autometa run`` wraps every trainable).
"""

from autometa.trial.exit import finish_before_exit
from autometa.trial.keys import HPARAM_PREFIX, HYPERGRAD_PREFIX, hyperstep_metrics

__all__ = ["HPARAM_PREFIX", "HYPERGRAD_PREFIX", "finish_before_exit", "hyperstep_metrics"]

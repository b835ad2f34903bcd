"""Hyperparameter families: bounded user-facing values over unconstrained tensors.

Each family is a small module of pure loss terms, differentiable in the hyperparameter's
*value*; the value itself is computed from an unconstrained tensor by a
:mod:`~autometa.hypergrad.families.transforms` transform, so gradient steps can never leave
the bounds. A trial reports ``hypergrad/<name>`` in the value's own units:
``dL/dvalue = (dL/du) / (dvalue/du)`` (:meth:`Transform.value_grad`).

=========================== ========================================== ===============
family                      loss term                                  transform
=========================== ========================================== ===============
``weight_decay``            ``0.5 * sum_k lambda_k * ||w_k||^2``       log
``label_smoothing``         cross-entropy on smoothed targets          logit to [0, 1)
``class_balance``           per-class weights, additive logit shifts   log / identity
``sample_weights``          weighted mean of per-sample losses         log or logit
``augmentation``            probability and magnitude of an operation  logit
=========================== ========================================== ===============
"""

from autometa.hypergrad.families.augmentation import augmentation_values
from autometa.hypergrad.families.class_balance import balanced_cross_entropy
from autometa.hypergrad.families.label_smoothing import smoothed_cross_entropy
from autometa.hypergrad.families.sample_weights import weighted_mean
from autometa.hypergrad.families.transforms import (
                                                    Hyperparameter,
                                                    IdentityTransform,
                                                    LogitTransform,
                                                    LogTransform,
                                                    Transform,
)
from autometa.hypergrad.families.weight_decay import l2_penalty

__all__ = ["Hyperparameter", "IdentityTransform", "LogTransform", "LogitTransform", "Transform",
           "augmentation_values", "balanced_cross_entropy", "l2_penalty", "smoothed_cross_entropy",
           "weighted_mean"]

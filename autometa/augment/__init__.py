"""Learned augmentation: differentiable image operations, policies (sub-policies learned by the
implicit engine; a choice of one operation per image learned by look-ahead hypergradients:
:class:`ChoicePolicy`, :class:`PolicyLearner`), policy files and their torchvision transform.

The operations and policies need torch, torchvision and kornia (the ``torch`` extra); policy
files (:mod:`autometa.augment.policy_file`) are read without them. Nothing here imports Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"OPS": "ops", "apply_op": "ops", "physical_value": "ops", "torchvision_apply": "ops",
         "AugmentationPolicy": "policy", "PolicyNoise": "policy", "apply_policy": "policy",
         "sample_noise": "policy", "PolicyDefinition": "policy_file", "PolicyOp": "policy_file",
         "load_policy": "policy_file", "save_policy": "policy_file",
         "LearnedAugment": "transform", "ChoicePolicy": "choice", "ChoiceDraw": "choice",
         "PolicyLearner": "learner", "PolicyStepResult": "learner",
         "PolicyHypergradient": "lookahead", "policy_hypergradient": "lookahead",
         "ChoiceDefinition": "policy_file", "ChoiceOp": "policy_file"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:  # torch only when an operation or a policy is used
    if name not in _LAZY:
        raise AttributeError(f"module 'autometa.augment' has no attribute {name!r}")
    return getattr(importlib.import_module(f"autometa.augment.{_LAZY[name]}"), name)

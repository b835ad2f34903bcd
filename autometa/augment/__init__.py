"""Learned augmentation: differentiable image operations and policies (export: to come).

Needs torch, torchvision and kornia (the ``torch`` extra); nothing here imports Ray.
"""

from autometa.augment.ops import OPS, apply_op, physical_value, torchvision_apply
from autometa.augment.policy import AugmentationPolicy, PolicyNoise, apply_policy, sample_noise

__all__ = ["OPS", "AugmentationPolicy", "PolicyNoise", "apply_op", "apply_policy",
           "physical_value", "sample_noise", "torchvision_apply"]

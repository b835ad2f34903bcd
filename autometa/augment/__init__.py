"""Learned augmentation: differentiable image operations (and, to come, policies and export).

Needs torch, torchvision and kornia (the ``torch`` extra); nothing here imports Ray.
"""

from autometa.augment.ops import OPS, apply_op, physical_value, torchvision_apply

__all__ = ["OPS", "apply_op", "physical_value", "torchvision_apply"]

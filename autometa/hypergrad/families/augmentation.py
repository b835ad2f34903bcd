r"""Augmentation parameters: an operation's probability in (0, 1) and magnitude in (a, b).

Both are logit-transformed, so a hyperstep keeps them in range; the differentiable
operations that consume them live in the augmentation package.
"""

from __future__ import annotations

import torch

from autometa.hypergrad.families.transforms import LogitTransform


def augmentation_values(raw_probability: torch.Tensor, raw_magnitude: torch.Tensor,
                        magnitude_range: tuple[float, float] = (0.0, 1.0)
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probability, magnitude)`` from their unconstrained tensors."""
    probability = LogitTransform(0.0, 1.0).forward(raw_probability)
    magnitude = LogitTransform(*magnitude_range).forward(raw_magnitude)
    return probability, magnitude

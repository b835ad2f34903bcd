r"""Per-sample weights: :math:`\tfrac1N \sum_i \alpha_i \ell_i`.

Used by dataset derivatives and example reweighting. Positive weights use the log
transform; weights in a box :math:`[0, b]` use logit.
"""

from __future__ import annotations

import torch


def weighted_mean(per_sample_losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """:math:`\\tfrac1N \\sum_i \\alpha_i \\ell_i` (shapes must match)."""
    if per_sample_losses.shape != weights.shape:
        raise ValueError(f"losses {tuple(per_sample_losses.shape)} and weights "
                         f"{tuple(weights.shape)} differ in shape")
    return (weights * per_sample_losses).mean()

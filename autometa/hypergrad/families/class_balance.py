r"""Class imbalance: per-class loss weights and additive logit adjustments (as in AutoBalance).

:math:`\ell_i = \omega_{y_i} \cdot \big(-\log \mathrm{softmax}(z_i + \Delta)_{y_i}\big)`, averaged
over the batch; :math:`\omega > 0` (log transform) scales each class's loss, :math:`\Delta`
(identity transform) shifts its logit (the logit-adjustment loss uses
:math:`\Delta_c = \tau \log \pi_c`).
"""

from __future__ import annotations

import torch


def balanced_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                           class_weights: torch.Tensor | None = None,
                           logit_adjustment: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of the weighted, logit-adjusted cross-entropy."""
    if logit_adjustment is not None:
        logits = logits + logit_adjustment
    nll = -torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if class_weights is not None:
        nll = class_weights[targets] * nll
    return nll.mean()

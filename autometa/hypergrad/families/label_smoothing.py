r"""Cross-entropy with label smoothing :math:`\varepsilon \in [0, 1)` as a hyperparameter.

:math:`\ell = (1 - \varepsilon)\,(-\log p_y) + \varepsilon \cdot \tfrac1C \sum_c (-\log p_c)`,
the same as ``torch.nn.functional.cross_entropy(..., label_smoothing=eps)`` but differentiable
in :math:`\varepsilon`. Natural transform: logit to (0, 1).
"""

from __future__ import annotations

import torch


def smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                           smoothing: torch.Tensor | float,
                           class_weights: torch.Tensor | None = None) -> torch.Tensor:
    r"""Mean over the batch of the label-smoothed cross-entropy; with ``class_weights``
    :math:`\omega` (C,), each sample's loss is scaled by its class's weight,
    :math:`	frac1N \sum_i \omega_{y_i} \ell_i` (the AutoBalance case:
    :mod:`~autometa.hypergrad.families.class_balance`)."""
    log_p = torch.log_softmax(logits, dim=-1)
    nll = -log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)   # -log p_y
    uniform = -log_p.mean(dim=-1)                                # (1/C) sum_c -log p_c
    per_sample = (1 - smoothing) * nll + smoothing * uniform
    if class_weights is not None:
        per_sample = class_weights[targets] * per_sample
    return per_sample.mean()

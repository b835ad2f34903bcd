r"""Weight decay per parameter group or per weight: :math:`\tfrac12 \sum_k \lambda_k \|w_k\|^2`.

A decay :math:`\lambda_k` is a scalar (one per group of parameters) or a tensor of the
parameter's shape (one per weight); it is positive, so its natural transform is log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def l2_penalty(params: Mapping[str, torch.Tensor], decay: Mapping[str, torch.Tensor],
               groups: Mapping[str, Sequence[str]] | None = None) -> torch.Tensor:
    """:math:`\\tfrac12 \\sum_k \\sum_{i \\in group_k} \\lambda_k \\odot w_i^2`.

    Args:
        params: Weights by name.
        decay: Decay values by group name: scalars, or tensors broadcastable to every
            parameter of the group (per-weight decay).
        groups: Group name -> parameter names. Default: each decay names one parameter.

    Raises:
        KeyError: a group names an unknown parameter.
    """
    groups = groups or {name: [name] for name in decay}
    total = None
    for group, names in groups.items():
        lam = decay[group]
        for name in names:
            if name not in params:
                raise KeyError(f"weight-decay group {group!r} names unknown parameter {name!r}")
            term = 0.5 * (lam * params[name] ** 2).sum()
            total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total

"""Flattening dicts of tensors to one vector and back (solvers work on vectors)."""

from __future__ import annotations

import torch

Tensors = dict[str, torch.Tensor]


def flatten(tensors: Tensors | list[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors (a dict in insertion order, or a list) into one 1-D tensor."""
    parts = tensors.values() if isinstance(tensors, dict) else tensors
    return torch.cat([t.reshape(-1) for t in parts])


def unflatten(vector: torch.Tensor, like: Tensors) -> Tensors:
    """Split a 1-D tensor into tensors shaped as ``like`` (same keys and order)."""
    out, start = {}, 0
    for name, ref in like.items():
        out[name] = vector[start:start + ref.numel()].view_as(ref)
        start += ref.numel()
    if start != vector.numel():
        raise ValueError(f"vector has {vector.numel()} entries, the tensors {start}")
    return out


def leaves(tensors: Tensors, requires_grad: bool = True) -> Tensors:
    """Autograd leaves sharing storage with ``tensors`` (no copy; nothing writes to them)."""
    return {k: v.detach().requires_grad_(requires_grad) for k, v in tensors.items()}

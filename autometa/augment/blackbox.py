"""Policies searched the classic way: a trial's ``augment`` config as a torchvision transform.

A search-space file describes the policy space as a nested group under ``augment``, and any
searcher (``random``, ``tpe``, ``bohb``) or scheduler searches it; the trial applies
torchvision's own implementations:

* ``{kind: randaugment, num_ops: N, magnitude: M}``: ``v2.RandAugment(N, M)`` (M in 0..30);
* ``{kind: trivialaugment}``: ``v2.TrivialAugmentWide()``;
* ``{kind: autoaugment, s0: {op0: NAME, p0: P, m0: M, op1: ..., p1: ..., m1: ...}, s1: ...}``:
  AutoAugment-style sub-policies (operation, probability, normalized magnitude per slot, see
  :mod:`autometa.augment.ops`) applied by :class:`~autometa.augment.transform.LearnedAugment`;
* ``{kind: none}``: no augmentation.

:func:`augment_batch` applies one draw per image to a float batch (N, C, H, W) in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from autometa.augment.policy_file import PolicyDefinition, policy_from_dict
from autometa.space.errors import SpaceError

KINDS = ("none", "randaugment", "trivialaugment", "autoaugment")


def autoaugment_policy(spec: dict[str, Any]) -> PolicyDefinition:
    """Sub-policies ``s0, s1, ...`` with slots ``op<k>, p<k>, m<k>`` as a policy definition."""
    subs = sorted((k for k in spec if k.startswith("s") and k[1:].isdigit()), key=lambda k: int(k[1:]))
    if not subs:
        raise ValueError("augment: an autoaugment policy needs sub-policies s0, s1, ... "
                         "each with op0, p0, m0, op1, p1, m1, ...")
    doc = []
    for name in subs:
        slots = spec[name]
        count = len([k for k in slots if k.startswith("op")])
        doc.append([{"op": slots.get(f"op{k}"), "probability": slots.get(f"p{k}"),
                     "magnitude": slots.get(f"m{k}")} for k in range(count)])
    try:
        return policy_from_dict({"policy": {"sub_policies": doc}})
    except SpaceError as err:  # told with the config's keys: s<i>.op<k>, p<k>, m<k>
        path = err.key_path
        where = "augment"
        if len(path) >= 4:
            slot = {"op": "op", "probability": "p", "magnitude": "m"}.get(
                path[4] if len(path) > 4 else "op", "op")
            where = f"augment.{subs[path[2]]}.{slot}{path[3]}"
        raise ValueError(f"{where}: {err.problem}") from None


def make_transform(spec: dict[str, Any] | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The torchvision transform of one image for ``spec`` (None: no augmentation)."""
    from torchvision.transforms import v2

    kind = (spec or {}).get("kind", "none")
    if kind not in KINDS:
        raise ValueError(f"augment.kind must be one of {list(KINDS)}, got {kind!r}")
    if kind == "none":
        return None
    if kind == "randaugment":
        num_ops, magnitude = int(spec.get("num_ops", 2)), int(spec.get("magnitude", 9))
        if num_ops < 0 or not 0 <= magnitude <= 30:
            raise ValueError(f"augment: randaugment needs num_ops >= 0 and magnitude in 0..30, "
                             f"got {num_ops} and {magnitude}")
        return v2.RandAugment(num_ops=num_ops, magnitude=magnitude)
    if kind == "trivialaugment":
        return v2.TrivialAugmentWide()
    from autometa.augment.transform import LearnedAugment

    return LearnedAugment(autoaugment_policy(spec))


def augment_batch(images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None
                  ) -> torch.Tensor:
    """Each image of ``images`` (N, C, H, W, floats in [0, 1]) through ``transform`` (as uint8
    for torchvision's RandAugment and TrivialAugment, which quantize like PIL images)."""
    if transform is None:
        return images
    from autometa.augment.transform import LearnedAugment

    if isinstance(transform, LearnedAugment):
        return torch.stack([transform(image) for image in images])
    as_bytes = (images * 255).round().to(torch.uint8)
    return torch.stack([transform(image) for image in as_bytes]).to(images.dtype) / 255

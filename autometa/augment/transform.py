"""A learned policy as a ``torchvision.transforms.v2`` transform.

    from torchvision.transforms import v2
    from autometa.augment import LearnedAugment

    pipeline = v2.Compose([LearnedAugment.from_file("policy.yaml"), v2.ToImage(),
                           v2.ToDtype(torch.float32, scale=True)])

Each call draws a sub-policy uniformly, applies each of its operations with its probability
(signed operations in a random direction, cutout at a random centre); a choice policy draws
one operation by weight at a magnitude uniform below its ceiling. Both go through torchvision's
own functions (:func:`autometa.augment.ops.torchvision_apply`), so it reproduces the
distribution the policy learned with the differentiable operations. PIL images and uint8
tensors are converted to floats in [0, 1] and back; float tensors stay floats; one image or a
batch (one draw for the batch, as torchvision's transforms do). Only images are changed:
bounding boxes and masks pass through unchanged, so use it for classification pipelines.
"""

from __future__ import annotations

import os
from typing import Any

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as tvf

from autometa.augment.ops import OPS, torchvision_apply
from autometa.augment.policy_file import ChoiceDefinition, PolicyDefinition, load_policy


class LearnedAugment(v2.Transform):
    """Apply a :class:`~autometa.augment.policy_file.PolicyDefinition` or
    :class:`~autometa.augment.policy_file.ChoiceDefinition` (see the module doc)."""

    _transformed_types = (PIL.Image.Image, tv_tensors.Image, torch.Tensor)

    def __init__(self, policy: PolicyDefinition | ChoiceDefinition) -> None:
        super().__init__()
        self.policy = policy

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> LearnedAugment:
        """Load a policy file (clear errors for a bad one: see ``load_policy``)."""
        return cls(load_policy(path))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if isinstance(self.policy, ChoiceDefinition):
            return {"steps": self._choice_steps()}
        index = int(torch.randint(len(self.policy.sub_policies), ()))
        steps = []
        for o in self.policy.sub_policies[index]:
            if float(torch.rand(())) < o.probability:
                sign = 1.0 if not OPS[o.op].signed or float(torch.rand(())) < 0.5 else -1.0
                centre = tuple(float(c) for c in torch.rand(2))
                steps.append((o.op, o.magnitude, sign, centre))
        return {"steps": steps}

    def _choice_steps(self) -> list[tuple]:
        weights = torch.tensor([c.weight for c in self.policy.choices], dtype=torch.float64)
        choice = self.policy.choices[int(torch.multinomial(weights, 1))]
        if choice.op == "identity":
            return []
        magnitude = float(torch.rand(())) * choice.max_magnitude
        sign = 1.0 if not OPS[choice.op].signed or float(torch.rand(())) < 0.5 else -1.0
        return [(choice.op, magnitude, sign, tuple(float(c) for c in torch.rand(2)))]

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["steps"]:
            return inpt
        if isinstance(inpt, PIL.Image.Image):
            image = tvf.to_dtype(tvf.to_image(inpt), torch.float32, scale=True)
            return tvf.to_pil_image(tvf.to_dtype(self._apply(image, params), torch.uint8,
                                                 scale=True), mode=inpt.mode)
        if not inpt.is_floating_point():
            image = tvf.to_dtype(inpt.as_subclass(torch.Tensor), torch.float32, scale=True)
            out = tvf.to_dtype(self._apply(image, params), inpt.dtype, scale=True)
        else:
            out = self._apply(inpt.as_subclass(torch.Tensor), params)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out

    @staticmethod
    def _apply(image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        for op, magnitude, sign, centre in params["steps"]:
            image = torchvision_apply(op, image, magnitude, sign, centre)
        return image

    def extra_repr(self) -> str:
        return self.policy.describe().replace("\n", "; ")

r"""Augmentation policies whose probabilities and magnitudes are learned by hypergradient.

A policy is S sub-policies of K operations each (AutoAugment's shape: K = 2). Each image
draws one sub-policy uniformly; each of its operations k applies with probability
:math:`p_{sk}` and normalized magnitude :math:`m_{sk} \in [0, 1]`
(:mod:`autometa.augment.ops`), in order. Randomness is drawn once per batch
(:func:`sample_noise`: the sub-policy, a uniform :math:`u` per operation, signs, cutout
centres) so the same draws can be replayed while a hypergradient is computed.

Training (relaxed, DADA-style): with logistic noise :math:`\ell = \log u - \log(1 - u)` the
gate :math:`b = \sigma((\mathrm{logit}\, p + \ell) / \tau)` mixes
:math:`x \leftarrow b\, \mathrm{op}(x; m) + (1 - b)\, x`, so gradients reach :math:`p` through
:math:`b` and :math:`m` through the operation. Evaluation (exact): :math:`b = [\mathrm{logit}\,
p + \ell > 0]`, an exact Bernoulli(p) draw and the limit :math:`\tau \to 0` of the relaxed gate.
Probabilities and magnitudes are logit-transformed parameters, so any step keeps them in (0, 1).
Pure torch; no Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from autometa.augment.ops import OPS, apply_op


@dataclass(frozen=True)
class PolicyNoise:
    """The random draws of one batch: ``sub_policy`` (N,), ``uniform`` (N, K) in (0, 1),
    ``sign`` (N, K) of +-1, ``centres`` (N, K, 2) in [0, 1]."""

    sub_policy: torch.Tensor
    uniform: torch.Tensor
    sign: torch.Tensor
    centres: torch.Tensor


def check_sub_policies(sub_policies: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    """The sub-policies as tuples, checked: at least one, equal lengths, known operations."""
    out = tuple(tuple(s) for s in sub_policies)
    if not out or not out[0]:
        raise ValueError("a policy needs at least one sub-policy of at least one operation")
    if len({len(s) for s in out}) != 1:
        raise ValueError(f"every sub-policy needs the same number of operations, got "
                         f"{[len(s) for s in out]}")
    for i, s in enumerate(out):
        for op in s:
            if op not in OPS:
                raise ValueError(f"sub-policy {i}: unknown operation {op!r}; expected one of "
                                 f"{sorted(OPS)}")
    return out


def sample_noise(n: int, sub_policies: int, ops_per_sub_policy: int,
                 generator: torch.Generator | None = None, device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32) -> PolicyNoise:
    """Draws for ``n`` images (on the CPU generator, then moved: the same seed gives the same
    draws on every device)."""
    k = ops_per_sub_policy
    sub = torch.randint(sub_policies, (n,), generator=generator)
    uniform = torch.rand(n, k, generator=generator, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    sign = torch.randint(2, (n, k), generator=generator) * 2 - 1
    centres = torch.rand(n, k, 2, generator=generator, dtype=torch.float64)
    return PolicyNoise(sub.to(device), uniform.to(device, dtype), sign.to(device, dtype),
                       centres.to(device, dtype))


def gates(probability: torch.Tensor, uniform: torch.Tensor, temperature: float | None
          ) -> torch.Tensor:
    """:math:`b = \\sigma((\\mathrm{logit}\\,p + \\log u - \\log(1-u))/\\tau)`; hard
    (``temperature=None``): :math:`[\\mathrm{logit}\\,p + \\log u - \\log(1-u) > 0]`."""
    score = torch.logit(probability) + torch.log(uniform) - torch.log1p(-uniform)
    return (score > 0).to(uniform.dtype) if temperature is None else torch.sigmoid(score / temperature)


def apply_policy(images: torch.Tensor, sub_policies: Sequence[Sequence[str]],
                 probability: torch.Tensor, magnitude: torch.Tensor, noise: PolicyNoise,
                 temperature: float | None = None) -> torch.Tensor:
    """Augment ``images`` (N, C, H, W) with the policy (``probability``, ``magnitude``: (S, K))
    and the draws ``noise``; relaxed when ``temperature`` is given, exact otherwise."""
    subs = check_sub_policies(sub_policies)
    if probability.shape != (len(subs), len(subs[0])) or magnitude.shape != probability.shape:
        raise ValueError(f"probability and magnitude must be {(len(subs), len(subs[0]))}, got "
                         f"{tuple(probability.shape)} and {tuple(magnitude.shape)}")
    out = images.clone()
    for s, ops in enumerate(subs):
        rows = (noise.sub_policy == s).nonzero().flatten()
        if len(rows) == 0:
            continue
        x = images[rows]
        for k, name in enumerate(ops):
            changed = apply_op(name, x, magnitude[s, k].expand(len(rows)), noise.sign[rows, k],
                               noise.centres[rows, k])
            b = gates(probability[s, k].to(x.dtype), noise.uniform[rows, k], temperature)
            b = b.reshape(-1, 1, 1, 1)
            x = b * changed + (1 - b) * x
        out[rows] = x
    return out


class AugmentationPolicy(nn.Module):
    """A policy as a module: relaxed in training mode, exact in evaluation mode.

    Args:
        sub_policies: Operation names, e.g. ``[["rotate", "contrast"], ["cutout", "shear_x"]]``.
        probability: Initial probability of every operation (in (0, 1)).
        magnitude: Initial normalized magnitude of every operation (in (0, 1)).
        temperature: Of the relaxed gates in training mode.
        seed: Seed of the policy's own generator (draws are then reproducible).
    """

    def __init__(self, sub_policies: Sequence[Sequence[str]], probability: float = 0.5,
                 magnitude: float = 0.3, temperature: float = 0.5, seed: int | None = None
                 ) -> None:
        super().__init__()
        self.sub_policies = check_sub_policies(sub_policies)
        for label, value in (("probability", probability), ("magnitude", magnitude)):
            if not 0 < value < 1:
                raise ValueError(f"{label} must be in (0, 1), got {value}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        shape = (len(self.sub_policies), len(self.sub_policies[0]))
        self.raw_probability = nn.Parameter(torch.full(shape, probability).logit())
        self.raw_magnitude = nn.Parameter(torch.full(shape, magnitude).logit())
        self.temperature = temperature
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(seed)

    def probability(self) -> torch.Tensor:
        return torch.sigmoid(self.raw_probability)

    def magnitude(self) -> torch.Tensor:
        return torch.sigmoid(self.raw_magnitude)

    def sample_noise(self, images: torch.Tensor) -> PolicyNoise:
        return sample_noise(len(images), *self.raw_probability.shape, self.generator,
                            images.device, images.dtype)

    def forward(self, images: torch.Tensor, noise: PolicyNoise | None = None) -> torch.Tensor:
        noise = self.sample_noise(images) if noise is None else noise
        return apply_policy(images, self.sub_policies, self.probability(), self.magnitude(),
                            noise, self.temperature if self.training else None)

    # ------------------------------------------------- learning by hypergradient
    def hyperparameters(self, prefix: str = "augment") -> list:
        """The probabilities and magnitudes as :class:`~autometa.hypergrad.families.transforms.
        Hyperparameter` s (``<prefix>.probability``, ``<prefix>.magnitude``, logit scale) for
        :class:`~autometa.hypergrad.loop.HyperTrainer`; read them back with :meth:`load_values`.
        """
        from autometa.hypergrad.families.transforms import Hyperparameter, LogitTransform

        unit = LogitTransform(0.0, 1.0)
        return [Hyperparameter(f"{prefix}.probability", self.raw_probability.detach().clone(),
                               unit),
                Hyperparameter(f"{prefix}.magnitude", self.raw_magnitude.detach().clone(), unit)]

    def train_images(self, images: torch.Tensor, noise: PolicyNoise, values: dict,
                     prefix: str = "augment") -> torch.Tensor:
        """Relaxed augmentation with the hyperparameter ``values`` of a training loss
        (``train_loss(view, batch, values)`` in the in-trial loop)."""
        return apply_policy(images, self.sub_policies, values[f"{prefix}.probability"],
                            values[f"{prefix}.magnitude"], noise, self.temperature)

    def load_values(self, probability: torch.Tensor, magnitude: torch.Tensor) -> None:
        """Set the policy to these probabilities and magnitudes (e.g. learned ones)."""
        with torch.no_grad():
            self.raw_probability.copy_(probability.clamp(1e-6, 1 - 1e-6).logit())
            self.raw_magnitude.copy_(magnitude.clamp(1e-6, 1 - 1e-6).logit())

    def to_definition(self):
        """The policy as plain numbers (:class:`~autometa.augment.policy_file.PolicyDefinition`),
        to save as a policy file or to apply with torchvision (``LearnedAugment``)."""
        from autometa.augment.policy_file import PolicyDefinition, PolicyOp

        p, m = self.probability().detach().tolist(), self.magnitude().detach().tolist()
        return PolicyDefinition(tuple(
            tuple(PolicyOp(name, float(p[s][k]), float(m[s][k])) for k, name in enumerate(ops))
            for s, ops in enumerate(self.sub_policies)))

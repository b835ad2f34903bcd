r"""A policy that applies one operation per image, chosen by learned weights: TrivialAugment's
family, with "no augmentation" in it.

Each image draws one operation :math:`k` from :math:`\pi = \mathrm{softmax}(\theta)` over
``identity`` and the operations of :mod:`autometa.augment.ops`, and a normalized magnitude
:math:`m = u\, c_k` with :math:`u \sim U(0, 1)` under the operation's learned ceiling
:math:`c_k = \sigma(\rho_k) \in (0, 1)` (signed operations in a random direction, cutout at a
random centre). TrivialAugment is the point :math:`\pi` uniform, :math:`c = 1`; no
augmentation is :math:`\pi_{identity} = 1`. The draw of an operation is discrete, so its
weights get gradients from a score-function estimator
(:func:`autometa.augment.lookahead.policy_hypergradient`); the magnitude is reparameterized, so
its ceilings get pathwise gradients through the differentiable operations. Pure torch; no Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from autometa.augment.ops import OPS, apply_op

IDENTITY = "identity"
DEFAULT_OPERATIONS = ("brightness", "contrast", "sharpness", "rotate", "translate_x",
                      "translate_y", "scale", "shear_x", "shear_y", "solarize", "posterize",
                      "cutout")
"""Every operation of :mod:`autometa.augment.ops` (TrivialAugment's list, less the colour ones)."""


@dataclass(frozen=True)
class ChoiceDraw:
    """The random draws of one batch: ``op`` (N,) indices into ``[identity, *operations]``,
    ``uniform`` (N,) in (0, 1) (the magnitude's fraction of its ceiling), ``sign`` (N,) of +-1,
    ``centres`` (N, 2) in [0, 1]."""

    op: torch.Tensor
    uniform: torch.Tensor
    sign: torch.Tensor
    centres: torch.Tensor


def check_operations(operations: Sequence[str]) -> tuple[str, ...]:
    """The operations as a tuple, checked: known, distinct, at least one (``identity`` is
    always there and is not listed)."""
    out = tuple(operations)
    if not out:
        raise ValueError("a choice policy needs at least one operation besides identity")
    unknown = [op for op in out if op not in OPS]
    if unknown:
        raise ValueError(f"unknown operation(s) {unknown}; expected some of {sorted(OPS)} "
                         f"(identity is always included)")
    if len(set(out)) != len(out):
        raise ValueError(f"operations listed twice: {sorted({o for o in out if out.count(o) > 1})}")
    return out


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """:math:`H(\\pi) = -\\sum_k \\pi_k \\log \\pi_k` (nats)."""
    p = probabilities.clamp_min(1e-12)
    return -(probabilities * p.log()).sum()


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """:math:`\\mathrm{TV}(p, q) = \\tfrac12 \\sum_k |p_k - q_k|`."""
    return 0.5 * (p - q).abs().sum()


def choice_magnitudes(draw: ChoiceDraw, ceilings: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Per image :math:`m_i = u_i c_{k_i}` (identity, :math:`k_i = 0`, has :math:`c_0 = 1`),
    differentiable in ``ceilings``."""
    padded = torch.cat([ceilings.new_ones(1), ceilings]).to(draw.uniform.device)
    return draw.uniform.to(dtype) * padded.to(dtype)[draw.op]


def apply_choice(images: torch.Tensor, operations: Sequence[str], ceilings: torch.Tensor | None,
                 draw: ChoiceDraw, magnitudes: torch.Tensor | None = None) -> torch.Tensor:
    """Augment ``images`` (N, C, H, W): image i gets operation ``draw.op[i]`` (0: identity) at
    magnitude ``draw.uniform[i] * ceilings[op - 1]`` (differentiable in ``ceilings``), or at
    ``magnitudes[i]`` when given (differentiable in those)."""
    if magnitudes is None:
        magnitudes = choice_magnitudes(draw, ceilings, images.dtype)
    out = images.clone()
    for k, name in enumerate(operations, start=1):
        rows = (draw.op == k).nonzero().flatten()
        if len(rows) == 0:
            continue
        out[rows] = apply_op(name, images[rows], magnitudes[rows].to(images.dtype),
                             draw.sign[rows], draw.centres[rows])
    return out


class ChoicePolicy(nn.Module):
    """One operation per image from learned weights (see the module doc).

    Args:
        operations: Operation names (``identity`` is added first).
        identity: Starting probability of ``identity``; the others share the rest equally
            (``1 / (len(operations) + 1)``, the default, is TrivialAugment's uniform choice).
        ceiling: Starting ceiling of every magnitude, in (0, 1).
        seed: Seed of the policy's own generator (draws are then reproducible).
    """

    def __init__(self, operations: Sequence[str] = DEFAULT_OPERATIONS,
                 identity: float | None = None, ceiling: float = 0.5,
                 seed: int | None = None) -> None:
        super().__init__()
        self.operations = check_operations(operations)
        k = len(self.operations)
        identity = 1.0 / (k + 1) if identity is None else float(identity)
        if not 0 < identity < 1:
            raise ValueError(f"identity must be a probability in (0, 1), got {identity}")
        if not 0 < ceiling < 1:
            raise ValueError(f"ceiling must be in (0, 1), got {ceiling}")
        # softmax(theta) = [identity, (1 - identity) / k, ...]: theta = log of those
        start = torch.tensor([identity] + [(1 - identity) / k] * k, dtype=torch.float64).log()
        self.logits = nn.Parameter((start - start.mean()).float())
        self.raw_ceiling = nn.Parameter(torch.full((k,), ceiling).logit())
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(seed)

    @property
    def names(self) -> tuple[str, ...]:
        """``identity`` and the operations, in the order of :meth:`probabilities`."""
        return (IDENTITY, *self.operations)

    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)

    def ceilings(self) -> torch.Tensor:
        return torch.sigmoid(self.raw_ceiling)

    def entropy(self) -> float:
        """Of the choice of operation, in nats (:math:`\\log(K + 1)` for TrivialAugment)."""
        return float(entropy(self.probabilities().detach()))

    def sample(self, n: int, device: torch.device | None = None) -> ChoiceDraw:
        """Draws for ``n`` images, on the policy's CPU generator (then moved: the same seed
        gives the same draws on every device)."""
        g = self.generator
        op = torch.multinomial(self.probabilities().detach().double().cpu(), n, replacement=True,
                               generator=g)
        uniform = torch.rand(n, generator=g, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
        sign = (torch.randint(2, (n,), generator=g) * 2 - 1).double()
        centres = torch.rand(n, 2, generator=g, dtype=torch.float64)
        return ChoiceDraw(op.to(device), uniform.to(device), sign.to(device), centres.to(device))

    def apply(self, images: torch.Tensor, draw: ChoiceDraw) -> torch.Tensor:
        """``images`` augmented by ``draw``, differentiable in the ceilings."""
        return apply_choice(images, self.operations, self.ceilings(), draw)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Augment a batch (N, C, H, W) in [0, 1] with fresh draws (no gradient to the policy:
        the training step; the hyperstep uses :meth:`apply`)."""
        with torch.no_grad():
            return self.apply(images, self.sample(len(images), images.device))

    def log_prob(self, op: torch.Tensor) -> torch.Tensor:
        """:math:`\\log \\pi_{k_i}` per image (N,)."""
        return torch.log_softmax(self.logits, dim=0)[op]

    def load_values(self, probabilities: Sequence[float] | torch.Tensor,
                    ceilings: Sequence[float] | torch.Tensor) -> None:
        """Set the weights (``identity`` first) and ceilings."""
        p = torch.as_tensor(probabilities, dtype=torch.float64).clamp_min(1e-12)
        c = torch.as_tensor(ceilings, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
        if p.shape != self.logits.shape or c.shape != self.raw_ceiling.shape:
            raise ValueError(f"expected {len(self.names)} probabilities and "
                             f"{len(self.operations)} ceilings, got {len(p)} and {len(c)}")
        with torch.no_grad():
            theta = p.log()
            self.logits.copy_(theta - theta.mean())
            self.raw_ceiling.copy_(c.logit())

    def to_definition(self):
        """The policy as plain numbers (:class:`~autometa.augment.policy_file.ChoiceDefinition`),
        to save as a policy file or to apply with torchvision (``LearnedAugment``)."""
        from autometa.augment.policy_file import ChoiceDefinition, ChoiceOp

        p = self.probabilities().detach().double().tolist()
        c = [1.0] + self.ceilings().detach().double().tolist()  # identity has no magnitude
        return ChoiceDefinition(tuple(ChoiceOp(name, float(w), float(m))
                                      for name, w, m in zip(self.names, p, c, strict=True)))


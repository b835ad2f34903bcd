r"""Maps between a bounded value :math:`x` and an unconstrained tensor :math:`u`.

==================== ============================================ ===============================
transform            :math:`x(u)`                                  :math:`dx/du`
==================== ============================================ ===============================
identity             :math:`u`                                     :math:`1`
log                  :math:`e^u`  (x > 0)                          :math:`x`
logit(a, b)          :math:`a + (b - a)\,\sigma(u)`  (a < x < b)   :math:`(x - a)(b - x)/(b - a)`
==================== ============================================ ===============================

Chain rule: :math:`\partial L/\partial x = (\partial L/\partial u) / (dx/du)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


class Transform:
    """A bijection from unconstrained :math:`u` to a value :math:`x`."""

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`x(u)`."""
        raise NotImplementedError

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`u(x)`."""
        raise NotImplementedError

    def derivative(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`dx/du` (elementwise)."""
        raise NotImplementedError

    def value_grad(self, u: torch.Tensor, grad_u: torch.Tensor) -> torch.Tensor:
        """:math:`\\partial L/\\partial x` from :math:`\\partial L/\\partial u`."""
        return grad_u / self.derivative(u)


class IdentityTransform(Transform):
    """:math:`x = u` (unbounded values, e.g. logit adjustments)."""

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def derivative(self, u: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(u)


class LogTransform(Transform):
    """:math:`x = e^u` for positive values (penalties, weights)."""

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return torch.exp(u)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        if torch.any(x <= 0):
            raise ValueError("a log-scale value must be > 0")
        return torch.log(x)

    def derivative(self, u: torch.Tensor) -> torch.Tensor:
        return torch.exp(u)                               # dx/du = x


@dataclass
class LogitTransform(Transform):
    """:math:`x = a + (b - a)\\sigma(u)` for values strictly inside :math:`(a, b)`."""

    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(u)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        if torch.any(x <= self.low) or torch.any(x >= self.high):
            raise ValueError(f"a logit-scale value must lie strictly inside ({self.low}, {self.high})")
        p = (x - self.low) / (self.high - self.low)
        return torch.log(p) - torch.log1p(-p)

    def derivative(self, u: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(u)
        return (self.high - self.low) * s * (1 - s)       # = (x - a)(b - x)/(b - a)


@dataclass
class Hyperparameter:
    """A named hyperparameter: an unconstrained tensor and the transform to its value.

    Example:
        >>> import torch
        >>> decay = Hyperparameter.from_value("decay", torch.tensor(1e-3), LogTransform())
        >>> round(float(decay.value()), 9)
        0.001
    """

    name: str
    raw: torch.Tensor
    transform: Transform = field(default_factory=IdentityTransform)
    low: float | None = None
    high: float | None = None

    @classmethod
    def from_value(cls, name: str, value: torch.Tensor | float, transform: Transform,
                   low: float | None = None, high: float | None = None) -> Hyperparameter:
        """Start at ``value``; ``low``/``high`` bound the value after every update."""
        raw = transform.inverse(torch.as_tensor(value, dtype=torch.get_default_dtype())
                                if not isinstance(value, torch.Tensor) else value)
        return cls(name, raw.detach().clone(), transform, low, high)

    def clip_(self) -> None:
        """Put the value back inside ``[low, high]`` (in place, on ``raw``)."""
        if self.low is None and self.high is None:
            return
        with torch.no_grad():
            value = self.transform.forward(self.raw)
            clipped = value.clamp(min=self.low, max=self.high)
            if not torch.equal(clipped, value):
                inside = self.inside(clipped)
                self.raw.copy_(self.transform.inverse(inside))

    def inside(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` moved just inside what the transform can represent (a logit transform
        cannot reach its own bounds, a log transform not 0)."""
        t = self.transform
        if isinstance(t, LogitTransform):
            span = (t.high - t.low) * 1e-6
            value = value.clamp(min=t.low + span, max=t.high - span)
        if isinstance(t, LogTransform):
            value = value.clamp(min=torch.finfo(value.dtype).tiny)
        return value

    def value(self, raw: torch.Tensor | None = None) -> torch.Tensor:
        """The user-facing value (of ``raw`` if given, e.g. a tensor carrying a graph)."""
        return self.transform.forward(self.raw if raw is None else raw)

    def value_grad(self, grad_raw: torch.Tensor) -> torch.Tensor:
        """:math:`\\partial L/\\partial x` from the gradient with respect to the raw tensor."""
        return self.transform.value_grad(self.raw, grad_raw)

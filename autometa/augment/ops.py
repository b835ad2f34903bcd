r"""Image operations whose magnitude is differentiable, on batches (N, C, H, W) in [0, 1].

Every operation takes a *normalized* magnitude :math:`m \in [0, 1]` per image (a tensor of
shape (N,) or a scalar) and, for the signed ones, a direction :math:`s \in \{-1, +1\}` per
image; the physical value is :math:`v = s \, m \, v_{max}`, on the scales of torchvision's
RandAugment (``v_max`` below). Magnitude 0 is the identity. Each operation is written to
agree with its torchvision counterpart (:func:`torchvision_apply`, used by the exported
policies) on float tensors:

==============  =====================================  ==================  =================
operation       effect at value v                      differentiable by   torchvision
==============  =====================================  ==================  =================
brightness      blend with black, factor 1 + v         closed form         adjust_brightness
contrast        blend with the grey mean, factor 1+v   closed form         adjust_contrast
sharpness       blend with a 3x3 smoothing, 1 + v      kornia              adjust_sharpness
rotate          rotation by v degrees                  kornia              rotate
translate_x/y   shift by v x width / height            kornia              affine
scale           zoom by 1 + v about the centre         kornia              affine
shear_x/y       shear atan(v) about the centre         closed form (grid)  affine
solarize        invert pixels >= 1 - m                 straight-through    solarize
posterize       keep 8 - round(4m) bits                straight-through    posterize
cutout          grey square of side m/2 x image side   soft (antialiased)  autometa Cutout
==============  =====================================  ==================  =================

Geometric operations sample bilinearly with zero padding and ``align_corners=False``, as
torchvision does on tensors (its default interpolation is nearest: the exported transforms ask
for bilinear). Solarize and posterize are step functions of their magnitude: the forward pass
is exact and the backward pass uses a smooth surrogate (a sigmoid threshold; the mean shift
:math:`-1/(2L)` of quantizing to :math:`L` levels). Kornia's shear turns about the image
corner, torchvision's about the centre, so shear samples its own grid; brightness and contrast
are one-line blends (kornia's brightness adds instead of multiplying). Pure torch and kornia;
no Ray.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf

_GREY = 0.5  # cutout fill
_SOLARIZE_TEMPERATURE = 0.05


@dataclass(frozen=True)
class OpSpec:
    """An operation: its function ``fn(images, value)`` (value: (N,) physical), the largest
    value ``v_max`` and whether it takes a sign."""

    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    v_max: float
    signed: bool


def _per_image(value: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return value.to(images.dtype).reshape(-1, 1, 1, 1)


def _brightness(images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    # x' = clamp((1 + v) x, 0, 1)
    return (images * (1 + _per_image(value, images))).clamp(0, 1)


def _contrast(images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    # x' = clamp((1 + v) x + (-v) mean(grey(x)), 0, 1), grey = 0.2989 R + 0.587 G + 0.114 B
    if images.shape[1] == 3:
        weights = images.new_tensor([0.2989, 0.587, 0.114]).reshape(1, 3, 1, 1)
        grey = (images * weights).sum(dim=1, keepdim=True)
    else:
        grey = images
    mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    factor = 1 + _per_image(value, images)
    return (factor * images + (1 - factor) * mean).clamp(0, 1)


def _sharpness(images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    import kornia

    return kornia.enhance.sharpness(images, 1 + value.to(images.dtype))


def _rotate(images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    import kornia

    return kornia.geometry.transform.rotate(images, value.to(images.dtype), align_corners=False)


def _translate(axis: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def translate(images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        import kornia

        size = images.shape[3] if axis == 0 else images.shape[2]
        shift = torch.zeros(len(images), 2, dtype=images.dtype, device=images.device)
        shift = shift.index_put((torch.arange(len(images)), torch.full((len(images),), axis)),
                                value.to(images.dtype) * size)
        return kornia.geometry.transform.translate(images, shift, align_corners=False)

    return translate


def _scale(images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    import kornia

    factor = (1 + value.to(images.dtype)).reshape(-1, 1).expand(-1, 2)
    return kornia.geometry.transform.scale(images, factor, align_corners=False)


def sample_inverse_affine(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp by ``theta`` (N, 2, 3): output pixel p (centred pixel coordinates) takes the input
    at ``theta @ [p, 1]``, sampled as torchvision samples its affine transforms."""
    n, _, h, w = images.shape
    xs = torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, w, dtype=images.dtype, device=images.device)
    ys = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, h, dtype=images.dtype, device=images.device)
    base = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones_like(
        xs.expand(h, w))], dim=-1).reshape(1, h * w, 3)
    normalize = images.new_tensor([0.5 * w, 0.5 * h])
    grid = base.expand(n, -1, -1).bmm(theta.transpose(1, 2) / normalize)
    return nnf.grid_sample(images, grid.reshape(n, h, w, 2), mode="bilinear",
                           padding_mode="zeros", align_corners=False)


def _shear(axis: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def shear(images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        # torchvision's inverse matrix for shear angle atan(v): x_in = x + v y (or y_in = v x + y)
        v = value.to(images.dtype)
        one, zero = torch.ones_like(v), torch.zeros_like(v)
        rows = ([one, v, zero], [zero, one, zero]) if axis == 0 else \
            ([one, zero, zero], [v, one, zero])
        theta = torch.stack([torch.stack(rows[0], -1), torch.stack(rows[1], -1)], dim=1)
        return sample_inverse_affine(images, theta)

    return shear


def _solarize(images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    # x' = 1 - x where x >= t, t = 1 - m (m = 0: the identity); backward through a sigmoid step
    m = _per_image(value, images)
    threshold = 1 - m
    hard = torch.where((images >= threshold) & (m > 0), 1 - images, images)
    soft = images + torch.sigmoid((images - threshold) / _SOLARIZE_TEMPERATURE) * (1 - 2 * images)
    return hard + (soft - soft.detach())


def posterize_bits(value: torch.Tensor) -> torch.Tensor:
    """Bits kept for magnitude m: ``8 - round(4 m)`` (8: the identity)."""
    return 8 - torch.round(4 * value)


def _posterize(images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    # x' = floor(x L) / L (clamped to L - 1 levels), L = 2^bits; surrogate x - 1 / (2 L(m))
    m = _per_image(value, images)
    levels = 2 ** posterize_bits(m)
    quantized = (images * levels).floor().clamp(max=levels - 1) / levels
    hard = torch.where(levels >= 256, images, quantized)
    soft = images - 0.5 / 2 ** (8 - 4 * m)
    return hard + (soft - soft.detach())


def cutout_mask(shape: torch.Size, value: torch.Tensor, centres: torch.Tensor,
                dtype: torch.dtype = torch.float32, device: torch.device | None = None
                ) -> torch.Tensor:
    """Coverage (N, 1, H, W) of squares of side ``value * min(H, W)`` centred at ``centres``
    (N, 2; x and y as fractions of width and height), antialiased over one pixel."""
    n, _, h, w = shape
    half = (value.to(dtype).to(device) * min(h, w) / 2).reshape(n, 1, 1)
    xs = torch.arange(w, dtype=dtype, device=device) + 0.5
    ys = torch.arange(h, dtype=dtype, device=device) + 0.5
    cx = (centres[:, 0].to(dtype).to(device) * w).reshape(n, 1, 1)
    cy = (centres[:, 1].to(dtype).to(device) * h).reshape(n, 1, 1)
    inside_x = (half - (xs.reshape(1, 1, w) - cx).abs()).clamp(0, 1)
    inside_y = (half - (ys.reshape(1, h, 1) - cy).abs()).clamp(0, 1)
    return (inside_x * inside_y).unsqueeze(1)


def cutout(images: torch.Tensor, value: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``images`` with grey squares (see :func:`cutout_mask`)."""
    mask = cutout_mask(images.shape, value, centres, images.dtype, images.device)
    return images * (1 - mask) + _GREY * mask


OPS: dict[str, OpSpec] = {
    "brightness": OpSpec(_brightness, 0.9, True),
    "contrast": OpSpec(_contrast, 0.9, True),
    "sharpness": OpSpec(_sharpness, 0.9, True),
    "rotate": OpSpec(_rotate, 30.0, True),
    "translate_x": OpSpec(_translate(0), 0.45, True),
    "translate_y": OpSpec(_translate(1), 0.45, True),
    "scale": OpSpec(_scale, 0.3, True),
    "shear_x": OpSpec(_shear(0), 0.3, True),
    "shear_y": OpSpec(_shear(1), 0.3, True),
    "solarize": OpSpec(_solarize, 1.0, False),
    "posterize": OpSpec(_posterize, 1.0, False),
    "cutout": OpSpec(cutout, 0.5, False),  # takes centres too: see apply_op
}
"""The operations by name."""


def physical_value(name: str, magnitude: torch.Tensor, sign: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """:math:`v = s\\, m\\, v_{max}` (unsigned operations ignore ``sign``)."""
    spec = _spec(name)
    value = magnitude * spec.v_max
    return value * sign if spec.signed and sign is not None else value


def apply_op(name: str, images: torch.Tensor, magnitude: torch.Tensor | float,
             sign: torch.Tensor | None = None, centres: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Apply operation ``name`` with normalized ``magnitude`` (N,) or scalar in [0, 1].

    Args:
        images: (N, C, H, W) floats in [0, 1].
        magnitude: In [0, 1]; 0 is the identity. Gradients flow to it.
        sign: (N,) of +-1 for the signed operations (default +1).
        centres: For ``cutout``: (N, 2) square centres as fractions of width and height
            (default: the image centre).
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    magnitude = torch.as_tensor(magnitude, dtype=images.dtype, device=images.device)
    magnitude = magnitude.expand(len(images)) if magnitude.dim() == 0 else magnitude
    value = physical_value(name, magnitude, sign)
    if name == "cutout":
        if centres is None:
            centres = images.new_full((len(images), 2), 0.5)
        return cutout(images, value, centres)
    return OPS[name].fn(images, value)


def _spec(name: str) -> OpSpec:
    if name not in OPS:
        raise ValueError(f"unknown augmentation operation {name!r}; expected one of {sorted(OPS)}")
    return OPS[name]


def torchvision_apply(name: str, image: torch.Tensor, magnitude: float, sign: float = 1.0,
                      centre: tuple[float, float] = (0.5, 0.5)) -> torch.Tensor:
    """The same operation through ``torchvision.transforms.v2.functional`` (one image or a
    batch, float tensors; cutout through :func:`cutout`)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    v = float(physical_value(name, torch.tensor(float(magnitude)), torch.tensor(float(sign))))
    bilinear = InterpolationMode.BILINEAR
    if magnitude == 0:
        return image
    if name in ("brightness", "contrast", "sharpness"):
        adjust = {"brightness": tvf.adjust_brightness, "contrast": tvf.adjust_contrast,
                  "sharpness": tvf.adjust_sharpness}[name]
        return adjust(image, 1 + v)
    if name == "rotate":
        return tvf.rotate(image, v, interpolation=bilinear)
    if name in ("translate_x", "translate_y", "scale", "shear_x", "shear_y"):
        h, w = image.shape[-2:]
        translate = [v * w, 0.0] if name == "translate_x" else \
            [0.0, v * h] if name == "translate_y" else [0.0, 0.0]
        shear = [math.degrees(math.atan(v)), 0.0] if name == "shear_x" else \
            [0.0, math.degrees(math.atan(v))] if name == "shear_y" else [0.0, 0.0]
        return tvf.affine(image, angle=0.0, translate=translate,
                          scale=1 + v if name == "scale" else 1.0, shear=shear,
                          interpolation=bilinear)
    if name == "solarize":
        return tvf.solarize(image, 1 - v)
    if name == "posterize":
        bits = int(posterize_bits(torch.tensor(v)))
        return image if bits >= 8 else tvf.posterize(image, bits)
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    out = cutout(batch, torch.full((len(batch),), v, dtype=batch.dtype),
                 batch.new_tensor([centre] * len(batch)))
    return out if image.dim() == 4 else out[0]

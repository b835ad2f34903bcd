"""Differentiable augmentation operations: shapes and ranges, identity at magnitude 0,
gradients to the magnitude (float64 gradcheck where the operation is smooth), and agreement
with torchvision's implementation of the same operation."""

from __future__ import annotations

import pytest
import torch

from autometa.augment import OPS, apply_op, torchvision_apply

SMOOTH = ["brightness", "contrast", "sharpness", "rotate", "translate_x", "translate_y",
          "scale", "shear_x", "shear_y", "cutout"]
STRAIGHT_THROUGH = ["solarize", "posterize"]


def images(dtype=torch.float32, n=3, channels=3, seed=0):
    """Smooth random images (a blurred noise field), so interpolation differences stay small."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, 20, 24, generator=g, dtype=dtype)
    kernel = torch.ones(channels, 1, 3, 3, dtype=dtype) / 9
    return torch.nn.functional.conv2d(x, kernel, padding=1, groups=channels).clamp(0, 1)


def test_every_operation_is_covered():
    assert set(SMOOTH + STRAIGHT_THROUGH) == set(OPS)
    assert len(OPS) >= 10


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_range_and_identity_at_zero(name, channels):
    x = images(channels=channels)
    for magnitude in (0.0, 0.4, 1.0):
        for sign in (1.0, -1.0):
            out = apply_op(name, x, torch.full((3,), magnitude), torch.full((3,), sign))
            assert out.shape == x.shape and out.dtype == x.dtype
            assert out.min() >= 0 and out.max() <= 1
    assert torch.allclose(apply_op(name, x, 0.0), x, atol=1e-5)
    assert not torch.allclose(apply_op(name, x, 1.0), x, atol=1e-3)  # it does something


@pytest.mark.parametrize("name", SMOOTH)
def test_gradcheck_with_respect_to_the_magnitude(name):
    x = images(torch.float64, n=2)
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64)
    magnitude = torch.tensor([0.35, 0.55], dtype=torch.float64, requires_grad=True)
    centres = torch.tensor([[0.4, 0.6], [0.55, 0.45]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda m: apply_op(name, x, m, sign, centres), (magnitude,),
                                    eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", STRAIGHT_THROUGH)
def test_straight_through_operations_pass_a_gradient(name):
    x = images(torch.float64).requires_grad_(True)
    magnitude = torch.tensor([0.3, 0.6, 0.9], dtype=torch.float64, requires_grad=True)
    apply_op(name, x, magnitude).sum().backward()
    assert torch.isfinite(magnitude.grad).all() and (magnitude.grad != 0).all()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(OPS))
def test_agrees_with_torchvision(name):
    x = images()
    centre = (0.4, 0.6)
    for magnitude, sign in ((0.25, 1.0), (0.8, -1.0), (1.0, 1.0)):
        ours = apply_op(name, x, torch.full((3,), magnitude), torch.full((3,), sign),
                        torch.tensor([centre] * 3))
        reference = torchvision_apply(name, x, magnitude, sign, centre)
        assert torch.allclose(ours, reference, atol=1e-5), (name, magnitude, sign)


def test_unknown_operation_and_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="unknown augmentation operation 'blur'"):
        apply_op("blur", images(), 0.5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        apply_op("rotate", images()[0], 0.5)

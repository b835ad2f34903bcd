"""Black-box policy spaces: a trial's ``augment`` config as torchvision's transforms."""

from __future__ import annotations

import pytest
import torch

from autometa.augment.blackbox import augment_batch, autoaugment_policy, make_transform
from autometa.augment.transform import LearnedAugment


def batch(n=6):
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.avg_pool2d(torch.rand(n, 1, 10, 10, generator=g), 3, 1, 1)


@pytest.mark.parametrize("spec", [
    {"kind": "randaugment", "num_ops": 2, "magnitude": 15},
    {"kind": "trivialaugment"},
    {"kind": "autoaugment", "s0": {"op0": "rotate", "p0": 1.0, "m0": 0.8},
     "s1": {"op0": "contrast", "p0": 1.0, "m0": 0.9}},
])
def test_each_kind_changes_images_and_keeps_their_range(spec):
    torch.manual_seed(0)
    x = batch()
    out = augment_batch(x, make_transform(spec))
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1
    assert not torch.allclose(out, x, atol=1e-3)


def test_no_augmentation_and_autoaugment_slots():
    x = batch()
    assert make_transform({"kind": "none"}) is None and augment_batch(x, None) is x
    policy = autoaugment_policy({"kind": "autoaugment",
                                 "s1": {"op0": "cutout", "p0": 0.2, "m0": 0.3, "op1": "rotate",
                                        "p1": 0.4, "m1": 0.5},
                                 "s0": {"op0": "scale", "p0": 0.6, "m0": 0.7, "op1": "shear_x",
                                        "p1": 0.8, "m1": 0.9}})
    assert [[o.op for o in s] for s in policy.sub_policies] == [["scale", "shear_x"],
                                                                 ["cutout", "rotate"]]
    assert isinstance(make_transform({"kind": "autoaugment", **{"s0": {"op0": "rotate", "p0": 0.5,
                                                                       "m0": 0.5}}}),
                      LearnedAugment)


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "autoaug"}, "augment.kind must be one of"),
    ({"kind": "randaugment", "num_ops": 2, "magnitude": 40}, "magnitude in 0..30"),
    ({"kind": "autoaugment"}, "needs sub-policies s0, s1"),
    ({"kind": "autoaugment", "s0": {"op0": "blur", "p0": 0.5, "m0": 0.5}},
     "augment.s0.op0: unknown operation 'blur'"),
    ({"kind": "autoaugment", "s0": {"op0": "rotate", "p0": 1.5, "m0": 0.5}},
     "augment.s0.p0: expected a number in [0, 1], got 1.5"),
])
def test_bad_policy_configs_are_clear_errors(spec, message):
    with pytest.raises(ValueError) as err:
        make_transform(spec)
    assert message in str(err.value)

"""Policy files and the torchvision transform of a learned policy."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from torchvision.transforms import v2

from autometa.augment import AugmentationPolicy, LearnedAugment, apply_op, load_policy, save_policy
from autometa.augment.ops import OPS
from autometa.augment.policy_file import SCALES, PolicyDefinition, PolicyOp
from autometa.space.errors import SpaceError


def image(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, 16, 16, generator=g)
    return torch.nn.functional.avg_pool2d(x, 3, 1, 1)[0].clamp(0, 1)


def test_scales_in_policy_files_agree_with_the_operations():
    assert set(SCALES) == set(OPS)
    assert all(SCALES[name][0] == OPS[name].v_max for name in OPS)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_learned_policy_round_trips_through_a_file(tmp_path, suffix):
    policy = AugmentationPolicy([["rotate", "contrast"], ["cutout", "posterize"]], seed=0)
    policy.load_values(torch.tensor([[0.2, 0.7], [0.45, 0.9]]),
                       torch.tensor([[0.3, 0.8], [0.4, 0.25]]))
    definition = policy.to_definition()
    path = save_policy(definition, tmp_path / f"policy{suffix}")
    loaded = load_policy(path)
    assert [[o.op for o in s] for s in loaded.sub_policies] == [["rotate", "contrast"],
                                                                ["cutout", "posterize"]]
    for a, b in zip(sum(loaded.sub_policies, ()), sum(definition.sub_policies, ()), strict=True):
        assert a.probability == pytest.approx(b.probability, abs=1e-6)
        assert a.magnitude == pytest.approx(b.magnitude, abs=1e-6)
    text = loaded.describe()
    assert "rotate (p=0.20, m=0.30: +-9.0 degrees)" in text and "posterize" in text


@pytest.mark.parametrize(("text", "where"), [
    ("", "the file is empty"),
    ("policy: {sub_policies: []}\n", "policy.sub_policies: expected 'sub_policies'"),
    ("policy:\n  sub_policies:\n    - [{op: blur, probability: 0.5, magnitude: 0.5}]\n",
     ":3: policy.sub_policies[0][0].op: unknown operation 'blur'"),
    ("policy:\n  sub_policies:\n    - [{op: rotate, probability: 1.5, magnitude: 0.5}]\n",
     "policy.sub_policies[0][0].probability: expected a number in [0, 1], got 1.5"),
    ("policy:\n  sub_policies:\n    - [{op: rotate, probability: 0.5, magnitude: 0.5}]\n"
     "    - [{op: rotate, probability: 0.5, magnitude: 0.5},"
     " {op: cutout, probability: 0.5, magnitude: 0.5}]\n", "same number of operations"),
    ("policy:\n  sub_policies:\n    - [{op: rotate, p: 0.5}]\n", "unknown key(s) ['p']"),
])
def test_a_bad_policy_file_names_the_file_the_key_and_the_problem(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as err:
        load_policy(path)
    assert str(path) in str(err.value) and where in str(err.value)


def _single(op, magnitude, probability=1.0):
    return LearnedAugment(PolicyDefinition(((PolicyOp(op, probability, magnitude),),)))


@pytest.mark.parametrize("op", sorted(OPS))
def test_the_transform_applies_the_differentiable_operation(op):
    """Probability 1: the torchvision transform's output is the differentiable operation's
    output for one of the signs (cutout: for its centre)."""
    x = image()
    torch.manual_seed(3)
    out = _single(op, 0.6)(x)
    torch.manual_seed(3)
    params = _single(op, 0.6).make_params([x])
    (_, _, sign, centre), = params["steps"]
    ours = apply_op(op, x.unsqueeze(0), torch.tensor([0.6]), torch.tensor([sign]),
                    torch.tensor([centre]))[0]
    assert torch.allclose(out, ours, atol=1e-5)


def test_the_transform_reproduces_the_probabilities():
    x = image()
    torch.manual_seed(0)
    transform = _single("solarize", 0.8, probability=0.3)
    changed = [not torch.equal(transform(x), x) for _ in range(2000)]
    assert abs(np.mean(changed) - 0.3) < 5 * np.sqrt(0.3 * 0.7 / 2000)


def test_the_transform_plugs_into_torchvision_pipelines_with_pil_and_uint8():
    pil = PIL.Image.fromarray((image().permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    pipeline = v2.Compose([_single("rotate", 0.5), v2.PILToTensor()])
    out = pipeline(pil)
    assert out.dtype == torch.uint8 and out.shape == (3, 16, 16)
    as_uint8 = (image() * 255).to(torch.uint8)
    rotated = _single("contrast", 0.5)(as_uint8)
    assert rotated.dtype == torch.uint8 and not torch.equal(rotated, as_uint8)
    assert "contrast (p=1.00, m=0.50" in repr(_single("contrast", 0.5))


def test_cli_policy_show(tmp_path, capsys):
    from autometa.launch.cli import main

    path = save_policy(_single("rotate", 0.5, 0.25).policy, tmp_path / "p.yaml")
    assert main(["policy", "show", path]) == 0
    assert "rotate (p=0.25, m=0.50: +-15.0 degrees)" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"policy": {"sub_policies": [[{"op": "rotate"}]]}}')
    assert main(["policy", "show", str(bad)]) == 2
    assert "policy.sub_policies[0][0].probability: expected a number" in capsys.readouterr().err

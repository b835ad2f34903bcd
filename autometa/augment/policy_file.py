"""Policy files: a learned augmentation policy as YAML or JSON, checked on load.

    policy:
      sub_policies:
        - [{op: rotate, probability: 0.42, magnitude: 0.31},
           {op: contrast, probability: 0.70, magnitude: 0.55}]
        - [{op: cutout, probability: 0.35, magnitude: 0.40},
           {op: shear_x, probability: 0.12, magnitude: 0.80}]

Each image draws one sub-policy uniformly; each operation applies with its probability and
normalized magnitude (see :mod:`autometa.augment.ops` for the scales), signed operations with
a random direction. A bad file raises :class:`~autometa.space.errors.SpaceError` naming the
file, the key path, the line and the problem (``autometa policy show`` prints it and exits 2).
No torch at import.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import yaml

from autometa.space.document import read_document
from autometa.space.errors import SpaceError

# The operations of autometa.augment.ops.OPS with their largest value and its meaning, kept
# here so that reading a file needs no torch (a test checks that the two agree).
SCALES: dict[str, tuple[float, str]] = {
    "brightness": (0.9, "factor 1 +- {v:.2f}"), "contrast": (0.9, "factor 1 +- {v:.2f}"),
    "sharpness": (0.9, "factor 1 +- {v:.2f}"), "rotate": (30.0, "+-{v:.1f} degrees"),
    "translate_x": (0.45, "+-{v:.0%} of the width"),
    "translate_y": (0.45, "+-{v:.0%} of the height"), "scale": (0.3, "zoom 1 +- {v:.2f}"),
    "shear_x": (0.3, "shear +-{v:.2f}"), "shear_y": (0.3, "shear +-{v:.2f}"),
    "solarize": (1.0, "invert above {t:.2f}"), "posterize": (1.0, "{bits} bits"),
    "cutout": (0.5, "square of {v:.0%} of the side")}
OP_NAMES = tuple(SCALES)


def describe_value(op: str, magnitude: float) -> str:
    """What normalized ``magnitude`` means for ``op``, in its own units."""
    v_max, text = SCALES[op]
    v = magnitude * v_max
    return text.format(v=v, t=1 - v, bits=8 - round(4 * magnitude))


@dataclass(frozen=True)
class PolicyOp:
    """One operation of a sub-policy."""

    op: str
    probability: float
    magnitude: float


@dataclass(frozen=True)
class PolicyDefinition:
    """A policy as plain numbers: sub-policies of :class:`PolicyOp`."""

    sub_policies: tuple[tuple[PolicyOp, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"policy": {"sub_policies": [
            [{"op": o.op, "probability": round(o.probability, 6),
              "magnitude": round(o.magnitude, 6)} for o in sub] for sub in self.sub_policies]}}

    def describe(self) -> str:
        """A readable summary (``autometa policy show``)."""
        lines = [f"{len(self.sub_policies)} sub-policies of {len(self.sub_policies[0])} "
                 f"operations; each image draws one sub-policy uniformly"]
        for i, sub in enumerate(self.sub_policies):
            parts = [f"{o.op} (p={o.probability:.2f}, m={o.magnitude:.2f}: "
                     f"{describe_value(o.op, o.magnitude)})" for o in sub]
            lines.append(f"  {i}: " + " -> ".join(parts))
        return "\n".join(lines)


def policy_from_dict(doc: Any, file: str | None = None) -> PolicyDefinition:
    """Check and convert a parsed policy document.

    Raises:
        SpaceError: with the key path of the offending entry.
    """
    if not isinstance(doc, dict) or "policy" not in doc:
        raise SpaceError("expected a mapping with a 'policy' key", file=file)
    policy = doc["policy"]
    if not isinstance(policy, dict) or not isinstance(policy.get("sub_policies"), list) \
            or not policy["sub_policies"]:
        raise SpaceError("expected 'sub_policies': a non-empty list of sub-policies", file=file,
                         key_path=("policy", "sub_policies"))
    subs = []
    for i, sub in enumerate(policy["sub_policies"]):
        at = ("policy", "sub_policies", i)
        if not isinstance(sub, list) or not sub:
            raise SpaceError("expected a non-empty list of operations", file=file, key_path=at)
        subs.append(tuple(_op(entry, at + (k,), file) for k, entry in enumerate(sub)))
    if len({len(s) for s in subs}) != 1:
        raise SpaceError(f"every sub-policy needs the same number of operations, got "
                         f"{[len(s) for s in subs]}", file=file,
                         key_path=("policy", "sub_policies"))
    return PolicyDefinition(tuple(subs))


def _op(entry: Any, at: tuple, file: str | None) -> PolicyOp:
    if not isinstance(entry, dict):
        raise SpaceError("expected {op: NAME, probability: P, magnitude: M}", file=file, key_path=at)
    unknown = set(entry) - {"op", "probability", "magnitude"}
    if unknown:
        raise SpaceError(f"unknown key(s) {sorted(unknown)}; expected op, probability, magnitude",
                         file=file, key_path=at)
    if entry.get("op") not in OP_NAMES:
        raise SpaceError(f"unknown operation {entry.get('op')!r}; expected one of "
                         f"{list(OP_NAMES)}", file=file, key_path=at + ("op",))
    values = []
    for key in ("probability", "magnitude"):
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise SpaceError(f"expected a number in [0, 1], got {value!r}", file=file,
                             key_path=at + (key,))
        values.append(float(value))
    return PolicyOp(entry["op"], *values)


def load_policy(path: str | os.PathLike) -> PolicyDefinition:
    """Read and check a policy file (YAML or JSON)."""
    file = os.fspath(path)
    try:
        doc, lines = read_document(file)
    except SpaceError as err:
        if err.problem.startswith("the file is empty"):
            raise SpaceError("the file is empty: expected a mapping with a 'policy' key",
                             file=file) from None
        raise
    try:
        return policy_from_dict(doc, file)
    except SpaceError as err:
        raise err.located(file, lines) from None


def save_policy(policy: PolicyDefinition, path: str | os.PathLike) -> str:
    """Write ``policy`` as JSON (``.json``) or YAML; return the path."""
    file = os.fspath(path)
    with open(file, "w") as handle:
        if file.lower().endswith(".json"):
            json.dump(policy.to_dict(), handle, indent=2)
        else:
            yaml.safe_dump(policy.to_dict(), handle, sort_keys=False)
    return file

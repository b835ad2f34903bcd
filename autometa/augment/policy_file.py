"""Policy files: a learned augmentation policy as YAML or JSON, checked on load.

    policy:
      sub_policies:
        - [{op: rotate, probability: 0.42, magnitude: 0.31},
           {op: contrast, probability: 0.70, magnitude: 0.55}]
        - [{op: cutout, probability: 0.35, magnitude: 0.40},
           {op: shear_x, probability: 0.12, magnitude: 0.80}]

Each image draws one sub-policy uniformly; each operation applies with its probability and
normalized magnitude (see :mod:`autometa.augment.ops` for the scales), signed operations with
a random direction. A choice policy (:class:`~autometa.augment.choice.ChoicePolicy`, the
TrivialAugment family) applies one operation per image, drawn by weight, at a magnitude drawn
uniformly below its ceiling:

    policy:
      choose_one:
        - {op: identity, weight: 0.10}
        - {op: rotate, weight: 0.25, max_magnitude: 0.62}
        - {op: translate_x, weight: 0.65, max_magnitude: 0.40}

The weights must sum to 1 (to within 1e-3; they are then normalized).

A bad file raises :class:`~autometa.space.errors.SpaceError` naming the file, the key path,
the line and the problem (``autometa policy show`` prints it and exits 2). No torch at import.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
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


@dataclass(frozen=True)
class ChoiceOp:
    """One operation of a choice policy: its weight and magnitude ceiling (identity: 1)."""

    op: str
    weight: float
    max_magnitude: float


@dataclass(frozen=True)
class ChoiceDefinition:
    """A choice policy as plain numbers: one operation per image, by weight."""

    choices: tuple[ChoiceOp, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"policy": {"choose_one": [
            {"op": c.op, "weight": round(c.weight, 6)} if c.op == "identity" else
            {"op": c.op, "weight": round(c.weight, 6), "max_magnitude": round(c.max_magnitude, 6)}
            for c in self.choices]}}

    def describe(self) -> str:
        """A readable summary (``autometa policy show``)."""
        if all(c.op == "identity" or c.weight == 0 for c in self.choices):
            return "no augmentation: every image is left as it is (identity only)"
        lines = [f"one of {len(self.choices)} operations per image, by weight; magnitude "
                 f"uniform below the ceiling"]
        for c in sorted(self.choices, key=lambda c: -c.weight):
            ceiling = "" if c.op == "identity" else \
                f", m <= {c.max_magnitude:.2f}: up to {describe_value(c.op, c.max_magnitude)}"
            lines.append(f"  {c.op}: {c.weight:.3f}{ceiling}")
        return "\n".join(lines)


NO_AUGMENTATION = ChoiceDefinition((ChoiceOp("identity", 1.0, 1.0),))
"""The policy that leaves every image as it is (what a trial without augmentation exports)."""


def policy_from_dict(doc: Any, file: str | None = None) -> PolicyDefinition | ChoiceDefinition:
    """Check and convert a parsed policy document.

    Raises:
        SpaceError: with the key path of the offending entry.
    """
    if not isinstance(doc, dict) or "policy" not in doc:
        raise SpaceError("expected a mapping with a 'policy' key", file=file)
    policy = doc["policy"]
    if isinstance(policy, dict) and "choose_one" in policy:
        return _choice_from_dict(policy, file)
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


def _choice_from_dict(policy: dict, file: str | None) -> ChoiceDefinition:
    at = ("policy", "choose_one")
    extra = set(policy) - {"choose_one"}
    if extra:
        raise SpaceError(f"unknown key(s) {sorted(extra)} beside choose_one", file=file,
                         key_path=("policy",))
    entries = policy["choose_one"]
    if not isinstance(entries, list) or not entries:
        raise SpaceError("expected a non-empty list of {op, weight, max_magnitude}", file=file,
                         key_path=at)
    choices, seen = [], set()
    for i, entry in enumerate(entries):
        where = at + (i,)
        if not isinstance(entry, dict):
            raise SpaceError("expected {op: NAME, weight: W, max_magnitude: M}", file=file,
                             key_path=where)
        op = entry.get("op")
        allowed = {"op", "weight"} | (set() if op == "identity" else {"max_magnitude"})
        unknown = set(entry) - allowed
        if unknown:
            raise SpaceError(f"unknown key(s) {sorted(unknown)}; expected {sorted(allowed)}",
                             file=file, key_path=where)
        if op != "identity" and op not in OP_NAMES:
            raise SpaceError(f"unknown operation {op!r}; expected identity or one of "
                             f"{list(OP_NAMES)}", file=file, key_path=where + ("op",))
        if op in seen:
            raise SpaceError(f"{op} is listed twice", file=file, key_path=where + ("op",))
        seen.add(op)
        weight = _unit_number(entry.get("weight"), where + ("weight",), file)
        ceiling = 1.0 if op == "identity" else \
            _unit_number(entry.get("max_magnitude"), where + ("max_magnitude",), file)
        choices.append(ChoiceOp(op, weight, ceiling))
    total = sum(c.weight for c in choices)
    if abs(total - 1) > 1e-3:
        raise SpaceError(f"the weights sum to {total:.6g}; expected 1", file=file, key_path=at)
    return ChoiceDefinition(tuple(ChoiceOp(c.op, c.weight / total, c.max_magnitude)
                                  for c in choices))


def _unit_number(value: Any, at: tuple, file: str | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise SpaceError(f"expected a number in [0, 1], got {value!r}", file=file, key_path=at)
    return float(value)


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
    return PolicyOp(entry["op"], *(_unit_number(entry.get(key), at + (key,), file)
                                   for key in ("probability", "magnitude")))


def load_policy(path: str | os.PathLike) -> PolicyDefinition | ChoiceDefinition:
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


def policy_writer(policy: PolicyDefinition | ChoiceDefinition) -> Callable[[str], None]:
    """``write(folder)`` for a trial's report (:func:`autometa.trial.tune.report_hypergradients`):
    ``policy`` as ``policy.yaml`` in the checkpoint, where ``autometa policy export`` finds it."""
    return lambda folder: save_policy(policy, os.path.join(folder, "policy.yaml"))


def save_policy(policy: PolicyDefinition | ChoiceDefinition, path: str | os.PathLike) -> str:
    """Write ``policy`` as JSON (``.json``) or YAML; return the path."""
    file = os.fspath(path)
    with open(file, "w") as handle:
        if file.lower().endswith(".json"):
            json.dump(policy.to_dict(), handle, indent=2)
        else:
            yaml.safe_dump(policy.to_dict(), handle, sort_keys=False)
    return file

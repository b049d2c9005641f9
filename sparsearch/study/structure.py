"""How a space's parameters split for weight sharing, and the reference configurations of every study.

**Elastic** knobs (top-k ``k``, GateConnect ``fan_in``) change which parts of a network run, not its
weights: one network trained while they are sampled per step (a supernet) holds every setting of them.
**Structural** knobs (CondConv ``experts``, gate ``routing``) change the weights themselves: each
structural choice gets a supernet of its own. A structure sets every structural knob of every stage to
one value (``routing=softmax,experts=1``), so a handful of supernets covers the study. A space may mark a
structural knob ``shared`` where its family switches it in place (the ResNeXt family: the first n of the
largest expert count, each routing function on the gate's one trunk): then one supernet holds every
value of it, and it is sampled per step and searched per stage like k (``Space.shared_knobs``).

**References** are the hand-designed configurations every study runs first so that the search can be
compared with them at equal FLOPs: uniform k = C, C/2, C/4 (and fan-in K = C, C/2, C/4), with the
reference structure: the first routing choice and the fewest experts the space allows.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

from sparsearch.config import ELASTIC, KNOB_TYPES
from sparsearch.errors import ConfigError
from sparsearch.spaces import Space
from sparsearch.spaces.space import knob_of

__all__ = [
    "ELASTIC",
    "Reference",
    "Structure",
    "amount_parameters",
    "candidate_structures",
    "choose_structures",
    "elastic_parameters",
    "reference_structure",
    "references",
    "supernet_values",
    "uniform_label",
    "uniform_values",
]


def elastic_parameters(space: Space) -> dict[str, tuple]:
    """The parameters a supernet samples per step (k, fan-in and the shared structural knobs), with
    their allowed values."""
    shared = space.shared_knobs
    return {key: allowed for key, allowed in space.parameters().items() if knob_of(key) in shared}


def supernet_values(space: Space) -> tuple[dict[str, Any], dict[str, Any]]:
    """The largest and the smallest setting of the sampled parameters (the sandwich's two ends): k,
    fan-in and experts at their maximum and minimum; a shared routing at its first choice in both (the
    supernet is built at the largest, so its gates have the first routing's trunk)."""
    largest, smallest = {}, {}
    for key, allowed in elastic_parameters(space).items():
        if knob_of(key) == "routing":
            largest[key] = smallest[key] = allowed[0]
        else:
            largest[key], smallest[key] = max(allowed), min(allowed)
    return largest, smallest


@dataclass(frozen=True)
class Structure:
    """One value per structural knob, applied to every stage that searches it."""

    settings: tuple[tuple[str, Any], ...]  # sorted (knob, value) pairs, each value of its knob's type

    @property
    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.settings) or "shared"

    @classmethod
    def from_label(cls, label: str) -> Structure:
        if label == "shared":
            return cls(())
        pairs = []
        for part in label.split(","):
            key, _, value = part.partition("=")
            if key not in KNOB_TYPES or key in ELASTIC:
                raise ConfigError(f"structure {label!r}: {key!r} is not a structural knob")
            try:
                pairs.append((key, KNOB_TYPES[key](value)))  # the knob table says its type
            except ValueError:
                raise ConfigError(f"structure {label!r}: {key}={value!r} is not a {KNOB_TYPES[key].__name__}") from None
        return cls(tuple(sorted(pairs)))

    def values(self, space: Space) -> dict[str, Any]:
        """The structural parameters of ``space`` set to this structure."""
        chosen = dict(self.settings)
        return {key: chosen[knob_of(key)] for key in space.parameters() if knob_of(key) in chosen}


def candidate_structures(space: Space) -> list[Structure]:
    """Every structure, the reference first: values every stage allows, in the space's order."""
    options: dict[str, list] = {}
    for key, allowed in space.parameters().items():
        knob = knob_of(key)
        if knob in space.shared_knobs:
            continue
        options[knob] = [v for v in options.get(knob, allowed) if v in allowed]
    for knob, values in options.items():
        if not values:
            raise ConfigError(f"space {space.name}: no {knob} value is allowed in every stage")
    # Fewest experts first: the reference structure is the plain (non-CondConv) network.
    if "experts" in options:
        options["experts"] = sorted(options["experts"])
    knobs = sorted(options)
    return [
        Structure(tuple(zip(knobs, combo, strict=True))) for combo in itertools.product(*(options[k] for k in knobs))
    ]


def choose_structures(space: Space, count: int, seed: int) -> list[Structure]:
    """The reference structure and ``count - 1`` others drawn at random (seeded) from the rest."""
    if not elastic_parameters(space):
        raise ConfigError(f"space {space.name} searches no k or fan-in, so nothing can share weights; use --eval train")
    if count < 1:
        raise ConfigError(f"supernets={count} must be a positive integer")
    first, *rest = candidate_structures(space)
    random.Random(seed).shuffle(rest)
    return [first, *rest[: count - 1]]


def reference_structure(space: Space) -> dict[str, Any]:
    """Every structural parameter at its reference value, shared or not: the first routing choice and
    the fewest experts each stage allows."""
    values = candidate_structures(space)[0].values(space)
    for key, allowed in space.parameters().items():
        knob = knob_of(key)
        if knob in space.shared_knobs and knob not in ELASTIC:
            values[key] = min(allowed) if knob == "experts" else allowed[0]
    return values


@dataclass(frozen=True)
class Reference:
    name: str  # "uniform k = C/2"
    values: dict[str, Any]  # every parameter of the space


def amount_parameters(space: Space) -> dict[str, tuple]:
    """The k and fan-in parameters of ``space`` with their allowed values (what a uniform setting scales)."""
    return {key: allowed for key, allowed in space.parameters().items() if knob_of(key) in ELASTIC}


def uniform_values(space: Space, fraction: float) -> dict[str, Any]:
    """Every k (and fan-in) at the allowed value nearest ``fraction`` of its C (the smaller on a tie),
    with the reference structure."""
    values = reference_structure(space)
    for key, allowed in amount_parameters(space).items():
        goal = fraction * max(allowed)  # max(allowed): the cardinality C
        values[key] = min(allowed, key=lambda v, goal=goal: (abs(v - goal), v))
    return values


def uniform_label(space: Space, share: str) -> str:
    """``uniform k = C/2`` (``uniform fan-in K = 3/8``): the searched amount knobs set to ``share``."""
    knobs = sorted({knob_of(key) for key in amount_parameters(space)})
    return "uniform " + " and ".join(f"{'k' if k == 'k' else 'fan-in K'} = {share}" for k in knobs)


def references(space: Space) -> list[Reference]:
    """Uniform k (and fan-in) at C, C/2 and C/4 with the reference structure; none without k or fan-in."""
    if not amount_parameters(space):
        return []
    return [
        Reference(uniform_label(space, share), uniform_values(space, 1 / divisor))
        for divisor, share in ((1, "C"), (2, "C/2"), (4, "C/4"))
    ]


def describe(values: dict[str, Any] | None) -> str:
    """``k 2/2/1/3, routing softmax, experts 1``: each knob's values in stage (or block) order, once
    where they are all equal."""
    if not values:
        return ""
    by_knob: dict[str, list] = {}
    for key, value in values.items():
        by_knob.setdefault(knob_of(key), []).append(value)
    parts = []
    for knob in sorted(by_knob, key=lambda k: (k not in ELASTIC, k)):
        seen = by_knob[knob]
        shown = str(seen[0]) if len(set(seen)) == 1 else "/".join(str(v) for v in seen)
        parts.append(f"{knob} {shown}")
    return ", ".join(parts)

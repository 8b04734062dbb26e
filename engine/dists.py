"""Parameter specifications: a fixed number or a named prior distribution.

A case file or the priors/ library writes a parameter as ``0.3`` (fixed) or as a one-key
mapping: ``{beta: [a, b]}``, ``{gamma: [shape, rate]}``, ``{normal: [mu, sigma]}``,
``{halfnormal: sigma}`` or ``{dirichlet: {type: alpha, ...}}``.  ``parse_dist`` turns that
into an immutable ``Dist``; it raises ``ValueError`` with a message that says what to write
instead, which the callers turn into a ``CaseError`` with the file and the path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

KINDS = {"fixed": 1, "beta": 2, "gamma": 2, "normal": 2, "halfnormal": 1, "dirichlet": None}
MAX_MAGNITUDE = 1e9


@dataclass(frozen=True)
class Dist:
    """A fixed value (kind ``fixed``) or a prior distribution with its parameters."""

    kind: str
    args: tuple[float, ...]
    labels: tuple[str, ...] = ()  # category names, for ``dirichlet`` only

    def mean(self) -> float:
        """Prior mean (for fixed values, the value)."""
        if self.kind == "fixed":
            return self.args[0]
        if self.kind == "beta":
            a, b = self.args
            return a / (a + b)
        if self.kind == "gamma":
            return self.args[0] / self.args[1]
        if self.kind == "normal":
            return self.args[0]
        if self.kind == "halfnormal":
            return self.args[0] * math.sqrt(2 / math.pi)
        raise ValueError(f"no scalar mean for {self.kind}")

    def draw(self, rng: Any, n: int) -> Any:
        """n prior draws (numpy) of a scalar parameter."""
        a = self.args
        if self.kind == "fixed":
            import numpy as np

            return np.full(n, a[0])
        if self.kind == "beta":
            return rng.beta(a[0], a[1], n)
        if self.kind == "gamma":
            return rng.gamma(a[0], 1.0 / a[1], n)
        if self.kind == "normal":
            return rng.normal(a[0], a[1], n)
        if self.kind == "halfnormal":
            return abs(rng.normal(0.0, a[0], n))
        raise ValueError(f"no scalar draws for {self.kind}")

    def describe(self) -> str:
        """Short human-readable form, e.g. ``Beta(2, 8)``."""
        if self.kind == "fixed":
            return f"{self.args[0]:g}"
        if self.kind == "dirichlet":
            inner = ", ".join(f"{k}={v:g}" for k, v in zip(self.labels, self.args, strict=True))
            return f"Dirichlet({inner})"
        name = {"halfnormal": "HalfNormal"}.get(self.kind, self.kind.capitalize())
        return f"{name}({', '.join(f'{a:g}' for a in self.args)})"

    def alpha_for(self, labels: tuple[str, ...]) -> tuple[float, ...]:
        """Dirichlet concentrations over the category set ``labels`` (the residual ``other`` among
        them): a type the table lists keeps its concentration; the table's ``other`` entry, plus
        the concentration of any listed type missing from ``labels``, is shared equally among the
        labels the table does not list (``other`` included). The total concentration is then the
        table's whatever the category set, and by Dirichlet aggregation so is the law of the share
        of everything the table does not list."""
        table = dict(zip(self.labels, self.args, strict=True))
        receivers = [lab for lab in labels if lab == "other" or lab not in table]
        pool = table.get("other", 0.0) + sum(v for k, v in table.items() if k != "other" and k not in labels)
        if receivers and pool <= 0:
            raise ValueError(f"no concentration for fragment types {receivers}; add them or an 'other' entry")
        share = pool / len(receivers) if receivers else 0.0
        return tuple(share if lab == "other" or lab not in table else table[lab] for lab in labels)


def _shown(value: Any) -> str:
    """A value as YAML writes it (true, false, null), else its repr."""
    return {True: "true", False: "false", None: "null"}.get(value, repr(value)) if isinstance(value, (bool, type(None))) else repr(value)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {_shown(value)}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{what} must be finite, got {value!r}")
    if abs(x) > MAX_MAGNITUDE:
        raise ValueError(f"{what} is {value!r}, beyond ±{MAX_MAGNITUDE:g}; use sensible units")
    return x


def parse_dist(value: Any) -> Dist:
    """Parse a number or ``{kind: args}`` into a ``Dist`` (raises ``ValueError``)."""
    if isinstance(value, Dist):
        return value
    if not isinstance(value, dict):
        return Dist("fixed", (_number(value, "value"),))
    if len(value) != 1:
        raise ValueError(f"expected a number or one of {sorted(KINDS)} as a one-key mapping, got {value!r}")
    kind, raw = next(iter(value.items()))
    if kind not in KINDS or kind == "fixed":
        raise ValueError(f"unknown distribution {kind!r}; use one of beta, gamma, normal, halfnormal, dirichlet")
    if kind == "dirichlet":
        if not isinstance(raw, dict) or not raw:
            raise ValueError("dirichlet needs a mapping of category: concentration, e.g. {rod: 2, other: 0.5}")
        labels = tuple(str(k) for k in raw)
        args = tuple(_number(v, f"dirichlet concentration of {k}") for k, v in raw.items())
        if any(a <= 0 for a in args):
            raise ValueError(f"dirichlet concentrations must be > 0, got {dict(raw)}")
        return Dist("dirichlet", args, labels)
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    if len(items) != KINDS[kind]:
        raise ValueError(f"{kind} takes {KINDS[kind]} number(s), got {_shown(raw)}")
    args = tuple(_number(v, f"{kind} parameter") for v in items)
    positive = {"beta": (0, 1), "gamma": (0, 1), "normal": (1,), "halfnormal": (0,)}[kind]
    if any(args[i] <= 0 for i in positive):
        raise ValueError(f"{kind} parameters {raw!r} must be positive where they are scales or shapes")
    return Dist(kind, args)

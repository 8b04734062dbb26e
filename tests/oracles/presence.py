"""Reference for the presence family: incidents simulated one by one from the generative story,
in plain numpy (it does not import the engine).

One incident under a hypothesis: every thing the case looks for is present or not, once, with
probability pi (a number, or a draw from its Beta); every search (unit) is reported faithfully
with its source's reliability r (a search reported by several sources: when at least one of
them reports it faithfully). A faithful report says "found" when the thing is present and the
search detects it (probability d, a number or a draw from its Beta). An unfaithful report does not
carry the fact: it comes from a background search of the same detection d for a thing that is
present with probability 1/2 (the vague part, weight w) or pi_g (the generic mechanism's value,
weight 1 - w). The probability of the observed reports is the share of simulated incidents that
reproduce all of them; its log carries a Monte Carlo error of about sqrt((1 - p) / (p n)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Prob = float | tuple[float, float]  # a number, or Beta (a, b)


@dataclass(frozen=True)
class Search:
    thing: str
    found: bool
    present: Prob  # P(thing present | hypothesis)
    detection: Prob = (1.0, 1.0)  # P(found | present): a number or Beta (a, b)
    reliability: float | tuple[float, ...] = 1.0  # several: independent reports of one search, one faithful suffices
    generic: Prob = 0.5  # the generic mechanism's P(present)
    vague_weight: float = 0.5


def _draw(rng: np.random.Generator, p: Prob, n: int) -> np.ndarray:
    if isinstance(p, tuple):
        return rng.beta(p[0], p[1], size=n)
    return np.full(n, float(p))


def _chunk(rng: np.random.Generator, searches: list[Search], n: int) -> np.ndarray:
    """For n simulated incidents, whether every report came out as observed."""
    truth: dict[str, np.ndarray] = {}
    for s in searches:  # one presence per thing and incident, from the first search's pi
        if s.thing not in truth:
            truth[s.thing] = rng.random(n) < _draw(rng, s.present, n)
    match = np.ones(n, dtype=bool)
    for s in searches:
        detected = rng.random(n) < _draw(rng, s.detection, n)
        rel = s.reliability if isinstance(s.reliability, tuple) else (s.reliability,)
        faithful = np.any([rng.random(n) < r for r in rel], axis=0)
        vague = rng.random(n) < s.vague_weight
        bg_pi = np.where(vague, 0.5, _draw(rng, s.generic, n))
        bg_found = (rng.random(n) < bg_pi) & (rng.random(n) < _draw(rng, s.detection, n))
        found = np.where(faithful, truth[s.thing] & detected, bg_found)
        match &= found == s.found
    return match


def log_evidence(searches: list[Search], *, n: int = 4_000_000, seed: int = 0, chunk: int = 500_000) -> tuple[float, float]:
    """(log P(all reports as observed | hypothesis), its Monte Carlo standard error), by simulation."""
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n, chunk):
        hits += int(_chunk(rng, searches, min(chunk, n - start)).sum())
    p = hits / n
    return float(np.log(p)), float(np.sqrt((1 - p) / (p * n)))

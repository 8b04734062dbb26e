"""Reference model of the fragments family, from its generative story alone (no engine import).

Story. The recovered fragments are sorted into K categories: every type any mechanism of the
library names in its ``fragments.alpha`` table (plus any type a case's own tables add), and one
residual ``other`` for anything else. A type a report does not mention was not found: its
count is 0. Under a hypothesis the fragments' type shares are p ~ Dirichlet(alpha), where a
type the hypothesis's table lists gets its concentration and the table's ``other`` value is the
total concentration of every category the table does not list, split equally among them (the
residual included). Given the total C, the counts are Multinomial(C, p).

An unfaithful report follows the background: with weight w a count vector drawn uniformly among
all compositions of C into K categories, otherwise the story above under the ``generic``
mechanism's table. A report of reliability r is faithful with probability r.

Evidence. ``log_polya`` is exact: drawing the C fragments one by one, p integrated out is a
Polya urn (the i-th fragment is of type k with probability (alpha_k + fragments of type k so
far) / (A + i)), so P(a given order) is a ratio of rising products, and every order of the same
counts has the same probability, times the number of orders C! / prod c_k!. ``log_mc`` averages
the multinomial probability over draws of p (an independent check of the urn).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml

LIBRARY = Path(__file__).resolve().parents[2] / "priors" / "mechanisms.yaml"
RESIDUAL = "other"


def library_tables(path: Path = LIBRARY) -> dict[str, dict[str, float]]:
    """mechanism -> its fragments concentration table, read from the YAML."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))["mechanisms"]
    return {m: {str(k): float(v) for k, v in fams["fragments"]["alpha"]["dirichlet"].items()}
            for m, fams in doc.items() if "fragments" in fams}


def category_set(tables) -> list[str]:
    """Every type the tables name (sorted), then the residual."""
    return sorted({t for table in tables for t in table} - {RESIDUAL}) + [RESIDUAL]


def concentrations(table: dict[str, float], cats: list[str]) -> np.ndarray:
    unlisted = [c for c in cats if c not in table or c == RESIDUAL]
    share = table.get(RESIDUAL, 0.0) / len(unlisted)
    return np.array([share if c in unlisted else table[c] for c in cats])


def count_vector(observed: dict[str, int], cats: list[str]) -> np.ndarray:
    return np.array([observed.get(c, 0) for c in cats])


def _log_rising(x: float, n: int) -> float:
    """log of x (x + 1) ... (x + n - 1)."""
    return float(sum(math.log(x + j) for j in range(n)))


def log_orders(counts) -> float:
    """log of the number of orders of the fragments: C! / prod c_k!."""
    total = int(sum(counts))
    return float(sum(math.log(i) for i in range(1, total + 1)) - sum(math.log(i) for c in counts for i in range(1, int(c) + 1)))


def log_polya(counts, alpha) -> float:
    """Exact log P(counts) with p ~ Dirichlet(alpha) integrated out (Polya urn)."""
    counts, alpha = np.asarray(counts, int), np.asarray(alpha, float)
    numerator = sum(_log_rising(a, int(c)) for a, c in zip(alpha, counts, strict=True))
    return log_orders(counts) + numerator - _log_rising(float(alpha.sum()), int(counts.sum()))


def log_uniform_composition(total: int, k: int) -> float:
    """log of 1 / (number of compositions of ``total`` into k categories), counted by the urn with
    every concentration 1 (which gives every composition the same probability)."""
    return log_polya([total] + [0] * (k - 1), np.ones(k))


def log_background(counts, generic_alpha, weight: float) -> float:
    counts = np.asarray(counts, int)
    g = log_polya(counts, generic_alpha)
    q = log_uniform_composition(int(counts.sum()), counts.size)
    return float(np.logaddexp(math.log1p(-weight) + g, math.log(weight) + q))


def log_unit(counts, alpha, generic_alpha, reliability: float, weight: float) -> float:
    """log [r P(counts | H) + (1 - r) P_bg(counts)]."""
    h = log_polya(counts, alpha)
    if reliability >= 1.0:
        return h
    return float(np.logaddexp(math.log(reliability) + h, math.log1p(-reliability) + log_background(counts, generic_alpha, weight)))


def log_mc(counts, alpha, rng: np.random.Generator, draws: int = 200_000) -> tuple[float, float]:
    """(log of the Monte Carlo mean of Multinomial(counts | p) over p ~ Dirichlet(alpha), its s.e. in nat)."""
    counts, alpha = np.asarray(counts, int), np.asarray(alpha, float)
    g = rng.gamma(alpha, size=(draws, alpha.size))
    p = g / g.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        logp = log_orders(counts) + (counts * np.log(np.where(counts > 0, p, 1.0))).sum(axis=1)
    m = logp.max()
    w = np.exp(logp - m)
    return float(m + math.log(w.mean())), float(w.std(ddof=1) / math.sqrt(draws) / w.mean())

r"""Scores of probabilistic attributions against simulated truth (pure numpy, no IO).

Inputs are ``prob`` of shape (incidents, hypotheses) — the stated P(H | evidence) — and
``truth`` of shape (incidents,), the index of the hypothesis that generated each incident.

* **Reliability diagram / ECE.** Every stated probability is a forecast: the pairs
  (``prob[i, k]``, ``truth[i] == k``) over all incidents and hypotheses ("class-wise", the
  question "when the engine says 80 %, is it right 80 % of the time?") are binned by stated
  probability; each bin gives its mean stated probability, its observed frequency, a
  binomial standard error and a count. ECE is the count-weighted mean absolute gap.
  Bins are ``equal-width`` (10 bins of width 0.1) or ``equal-mass`` (quantile edges, equal
  counts). ``top-label`` calibration uses only each incident's leading hypothesis.
  ECE of a finite sample has a positive noise floor even for a perfectly calibrated
  forecaster; ``ece_null`` simulates it by drawing outcomes from the stated probabilities
  (``calibrated_null`` gives the Brier score's spread under the same draws).
* **Expected versions.** ``truth`` may also be the exact posterior itself (incidents,
  hypotheses): E[1(H = k) | evidence] = P_exact(k | evidence), so replacing each outcome by
  its exact probability removes the outcome noise. The exact posterior's expected ECE is 0,
  and a forecaster's expected Brier excess over the exact posterior is exactly
  E ||p - p_exact||^2 (a proper score's excess), estimated by ``brier_excess``.
* **Brier score**: mean over incidents of :math:`\sum_k (p_k - 1[k = H])^2` (0 is perfect).
* **Log score**: mean of :math:`-\ln p_{H}` (nats; lower is better).
* **SBC ranks** (Talts et al. 2018): the rank of a true parameter among L posterior draws is
  uniform on 0..L when the posterior is right; ``sbc_uniformity`` gives the histogram and a
  chi-square p-value.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

BINNINGS = ("equal-width", "equal-mass")


def _pairs(prob: np.ndarray, truth: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(stated, outcome) pairs; ``truth`` is (incidents,) indices or (incidents, hypotheses) outcome probabilities."""
    prob, truth = np.asarray(prob, dtype=float), np.asarray(truth)
    outcome = (np.arange(prob.shape[1])[None, :] == truth[:, None]).astype(float) if truth.ndim == 1 else truth.astype(float)
    if prob.ndim != 2 or outcome.shape != prob.shape:
        raise ValueError(f"prob must be (incidents, hypotheses) and truth (incidents,) or like prob, got {prob.shape} and {truth.shape}")
    if kind == "classwise":
        return prob.ravel(), outcome.ravel()
    if kind == "top-label":
        top = prob.argmax(axis=1)
        return prob[np.arange(len(top)), top], outcome[np.arange(len(top)), top]
    raise ValueError(f"kind must be 'classwise' or 'top-label', got {kind!r}")


def _edges(p: np.ndarray, n_bins: int, binning: str) -> np.ndarray:
    if binning == "equal-width":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if binning == "equal-mass":
        edges = np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
        return edges
    raise ValueError(f"binning must be one of {BINNINGS}, got {binning!r}")


def reliability_table(prob: np.ndarray, truth: np.ndarray, *, n_bins: int = 10, binning: str = "equal-width",
                      kind: str = "classwise") -> dict[str, np.ndarray]:
    """Per bin: edges, count, mean stated probability, observed frequency and its standard error."""
    p, y = _pairs(prob, truth, kind)
    edges = _edges(p, n_bins, binning)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        stated = np.bincount(idx, weights=p, minlength=n_bins) / count
        observed = np.bincount(idx, weights=y, minlength=n_bins) / count
        se = np.sqrt(np.clip(stated * (1 - stated), 0, None) / count)
    return {"lower": edges[:-1], "upper": edges[1:], "count": count, "stated": stated, "observed": observed, "se": se}


def ece(prob: np.ndarray, truth: np.ndarray, *, n_bins: int = 10, binning: str = "equal-width", kind: str = "classwise") -> float:
    """Expected calibration error: count-weighted mean |stated - observed| over bins."""
    t = reliability_table(prob, truth, n_bins=n_bins, binning=binning, kind=kind)
    keep = t["count"] > 0
    return float(np.sum(t["count"][keep] * np.abs(t["stated"][keep] - t["observed"][keep])) / t["count"].sum())


def ece_null(prob: np.ndarray, *, rng: np.random.Generator, reps: int = 2000, n_bins: int = 10, binning: str = "equal-width",
             kind: str = "classwise") -> np.ndarray:
    """ECE of ``prob`` when outcomes are drawn from ``prob`` itself: the noise floor of a calibrated forecaster."""
    return calibrated_null(prob, rng=rng, reps=reps, n_bins=n_bins, binning=binning, kind=kind)["ece"]


def calibrated_null(prob: np.ndarray, *, rng: np.random.Generator, reps: int = 2000, n_bins: int = 10,
                    binning: str = "equal-width", kind: str = "classwise") -> dict[str, np.ndarray]:
    """ECE and Brier score of ``prob`` over ``reps`` sets of outcomes drawn from ``prob`` itself: what a
    perfectly calibrated forecaster stating these probabilities scores with this many incidents."""
    prob = np.asarray(prob, dtype=float)
    cum = np.cumsum(prob / prob.sum(axis=1, keepdims=True), axis=1)
    out = {"ece": np.empty(reps), "brier": np.empty(reps)}
    for r in range(reps):
        u = rng.random(prob.shape[0])
        truth = np.minimum((u[:, None] > cum).sum(axis=1), prob.shape[1] - 1)
        out["ece"][r] = ece(prob, truth, n_bins=n_bins, binning=binning, kind=kind)
        out["brier"][r] = brier(prob, truth)
    return out


def brier(prob: np.ndarray, truth: np.ndarray) -> float:
    """Multi-class Brier score (mean over incidents of the summed squared error)."""
    return float(np.mean(brier_each(prob, truth)))


def brier_each(prob: np.ndarray, truth: np.ndarray) -> np.ndarray:
    prob, truth = np.asarray(prob, dtype=float), np.asarray(truth, dtype=int)
    onehot = np.eye(prob.shape[1])[truth]
    return np.sum((prob - onehot) ** 2, axis=1)


def brier_excess(prob: np.ndarray, exact_prob: np.ndarray) -> float:
    """Mean ||p - p_exact||^2: the expected Brier score of ``prob`` minus the exact posterior's."""
    return float(np.mean(np.sum((np.asarray(prob, float) - np.asarray(exact_prob, float)) ** 2, axis=1)))


def log_score(prob: np.ndarray, truth: np.ndarray, *, floor: float = 1e-300) -> float:
    """Mean negative log probability given to the true hypothesis (nats)."""
    prob, truth = np.asarray(prob, dtype=float), np.asarray(truth, dtype=int)
    return float(np.mean(-np.log(np.maximum(prob[np.arange(len(truth)), truth], floor))))


def sbc_rank(true_value: float, draws: np.ndarray, rng: np.random.Generator) -> int:
    """Rank of ``true_value`` among ``draws`` (0..len(draws)); ties broken at random."""
    draws = np.asarray(draws, dtype=float)
    below = int(np.sum(draws < true_value))
    ties = int(np.sum(draws == true_value))
    return below + (int(rng.integers(0, ties + 1)) if ties else 0)


def sbc_uniformity(ranks: np.ndarray, n_draws: int, *, n_bins: int = 10) -> dict:
    """Histogram of SBC ranks (``n_bins`` groups of 0..n_draws) and a chi-square test of uniformity."""
    ranks = np.asarray(ranks, dtype=int)
    if ranks.size == 0:
        return {"n": 0, "counts": [], "chi2": float("nan"), "p_value": float("nan")}
    edges = np.linspace(0, n_draws + 1, n_bins + 1)
    counts, _ = np.histogram(ranks, bins=edges)
    expected = ranks.size * np.diff(edges) / (n_draws + 1)
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    return {"n": int(ranks.size), "counts": counts.tolist(), "chi2": chi2, "p_value": float(stats.chi2.sf(chi2, n_bins - 1))}

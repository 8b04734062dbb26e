"""Sensitivity and Monte Carlo hypothesis tests that need no extra sampling (pure numpy).

* ``break_even_priors``: prior robustness is analytic once log Z is known. For the leader L
  and an alternative j, give j the prior p and rescale every other prior proportionally;
  the ranking of L and j flips where p Z_j = pi_L (1 - p) / (1 - pi_j) Z_L, i.e. at
  p* = c B / (1 + c B) with B = Z_L / Z_j and c = pi_L / (1 - pi_j).
* ``coincidence_test``: is the damage time's closeness to the activity window explainable by
  chance? Under chance the true time is uniform over the observation period; the report adds
  the item's clock error and rounding. The statistic is the distance from the reported time
  to the window (0 inside); p = (1 + #{d_rep <= d_obs}) / (N + 1).
"""

from __future__ import annotations

import numpy as np


def break_even_priors(prior: dict[str, float], log_z: dict[str, float], leader: str) -> dict[str, dict]:
    """For each alternative: its Bayes factor against the leader and the prior that flips the ranking."""
    out = {}
    for alt in prior:
        if alt == leader:
            continue
        log_bf = log_z[leader] - log_z[alt]  # natural log of Z_L / Z_j
        c = prior[leader] / (1.0 - prior[alt])
        x = np.log(c) + log_bf  # log(c B)
        p_star = float(np.exp(x - np.logaddexp(0.0, x)))
        out[alt] = {"log10_bf_leader_vs_alt": float(log_bf / np.log(10)), "prior": prior[alt], "break_even_prior": p_star}
    return out


def coincidence_test(time: float, window: tuple[float, float], period: tuple[float, float], clock_sd: float,
                     rounding: float = 0.0, *, n: int = 20000, seed: int = 0) -> dict:
    """Monte Carlo p-value of a damage time at least this close to the window under pure chance."""
    rng = np.random.default_rng(seed)
    lo, hi = window
    sd = float(np.sqrt(clock_sd**2 + rounding**2 / 12.0))

    def distance(t: np.ndarray) -> np.ndarray:
        return np.maximum(0.0, np.maximum(lo - t, t - hi))

    rep = rng.uniform(*period, size=n) + sd * rng.standard_normal(n)
    d_obs = float(distance(np.asarray(time)))
    p = (1 + int(np.sum(distance(rep) <= d_obs))) / (n + 1)
    exact_inside = (hi - lo) / (period[1] - period[0])  # chance of landing in the window with no clock error
    return {"distance": d_obs, "p_value": p, "window_share_of_period": exact_inside, "n": n}

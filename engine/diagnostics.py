"""Convergence diagnostics of the NUTS runs (numbers in, data out; printing is elsewhere)."""

from __future__ import annotations

import numpy as np

RHAT_MAX = 1.01
ESS_MIN = 400


def nuts_diagnostics(idata, *, rhat_max: float = RHAT_MAX, ess_min: float = ESS_MIN) -> dict:  # noqa: ANN001
    """Rank-normalised r-hat, bulk/tail ESS, divergences and BFMI of one hypothesis's NUTS run."""
    import arviz as az

    names = [v for v in idata.posterior.data_vars if not str(v).endswith("__")]
    post = idata.posterior[names]
    n_chains = post.sizes["chain"]
    rhat = float(az.rhat(post).to_array().max()) if n_chains > 1 else float("nan")
    ess_bulk = float(az.ess(post, method="bulk").to_array().min())
    ess_tail = float(az.ess(post, method="tail").to_array().min())
    divergences = int(idata.sample_stats["diverging"].sum())
    bfmi = float(np.min(az.bfmi(idata))) if "energy" in idata.sample_stats else float("nan")
    problems = []
    if n_chains > 1 and not rhat <= rhat_max:
        problems.append(f"r-hat {rhat:.3f} above {rhat_max}")
    if not ess_bulk >= ess_min:
        problems.append(f"bulk ESS {ess_bulk:.0f} below {ess_min}")
    if not ess_tail >= ess_min:
        problems.append(f"tail ESS {ess_tail:.0f} below {ess_min}")
    if divergences:
        problems.append(f"{divergences} divergent transitions")
    if bfmi < 0.3:
        problems.append(f"BFMI {bfmi:.2f} below 0.3")
    return {"rhat_max": rhat, "ess_bulk_min": ess_bulk, "ess_tail_min": ess_tail,
            "divergences": divergences, "bfmi_min": bfmi, "n_chains": n_chains,
            "n_draws": int(post.sizes["draw"]), "problems": problems}

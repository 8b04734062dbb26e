"""Deliberately broken estimators: negative controls that the calibration test must catch.

A calibration test that cannot fail proves nothing. These two are wrong in ways that happen
in practice, and tests/test_calibrate.py checks that the quick calibration test rejects them:

* ``sign-error``: one unit's log likelihood enters every hypothesis's model with the wrong
  sign (its ``use__<unit>`` weight set to -1 through ``pm.Data``); the estimators themselves
  are the engine's. The unit flipped is the first one without sampled parameters (timing,
  claim, elicited), so the wrong posterior stays proper and the samplers run normally.
* ``mixture``: the single marginalised mixture over all hypotheses sampled by NUTS, with
  P(H | y) read off as the mean posterior responsibility. Its joint posterior has one mode
  per hypothesis (the chosen hypothesis's parameters at their posterior, the others' at
  their prior); chains stay in the mode they find first, so the estimate is essentially
  the fraction of chains per mode (measured in ../shared/DESIGN.md §3).
"""

from __future__ import annotations

import numpy as np

from engine.errors import RunError
from engine.spec.case import Case


def sign_error_data(template: Case) -> dict[str, np.ndarray]:
    """``pm.Data`` overrides that flip the sign of one parameter-free unit's log likelihood."""
    from engine.evidence import family_of
    from engine.model.build import unit_id

    for _, items in template.units():
        if not family_of(items).sampled:
            return {f"use__{unit_id(items)}": np.asarray(-1.0)}
    raise RunError("the sign-error control needs a unit without sampled parameters (timing, claim or elicited)")


class MixtureModel:
    """Every hypothesis's parameters in one PyMC model, the hypothesis index summed out.

    log p(theta_1..K, y) = sum_k log p(theta_k | H_k) + log sum_k pi_k p(y | theta_k, H_k),
    on the unconstrained space of each hypothesis's own model (Jacobians included).
    """

    def __init__(self, template: Case) -> None:
        import pymc as pm
        import pytensor.tensor as pt
        from pytensor.graph.replace import graph_replace

        from engine.model.build import build_model
        from engine.run.compiled import Compiled

        self.hids = list(template.hypotheses)
        self.subs = [build_model(template, h) for h in self.hids]
        log_prior = np.log([template.hypotheses[h].prior for h in self.hids])
        with pm.Model() as joint:
            priors, liks = [], []
            for k, m in enumerate(self.subs):
                point = m.initial_point()
                repl = {v: pm.Flat(f"h{k}__{v.name}", shape=np.shape(point[v.name])) for v in m.value_vars}
                priors.append(graph_replace(m.varlogp, repl, strict=False))
                liks.append(graph_replace(m.datalogp, repl, strict=False) + log_prior[k])
            pm.Potential("priors", pt.sum(pt.stack(priors)))
            lw = pt.stack(liks)
            pm.Potential("mixture", pt.logsumexp(lw))
        self.model = joint
        self.compiled = Compiled(None, None, model=joint)
        self._lw = joint.compile_fn(joint.replace_rvs_by_values([lw])[0], inputs=joint.value_vars, on_unused_input="ignore")

    def set_data(self, case: Case) -> None:
        from engine.model.build import hypothesis_data, observation_data

        obs = observation_data(case)
        for hid, m in zip(self.hids, self.subs, strict=True):
            defaults = {v.name: v.get_value() for v in m.data_vars}
            for name, value in {**obs, **hypothesis_data(case, hid)}.items():
                m.set_data(name, np.asarray(value, dtype=np.asarray(defaults[name]).dtype))

    def responsibilities(self, posterior) -> np.ndarray:  # noqa: ANN001 - an InferenceData posterior group
        """P(H_k | theta, y) at each draw of a one-chain posterior -> (draws, K)."""
        from scipy.special import softmax

        names = [v.name for v in self.model.value_vars]
        values = {n: posterior[n].values[0] for n in names}
        out = [self._lw({n: values[n][d] for n in names}) for d in range(posterior.sizes["draw"])]
        return softmax(np.asarray(out), axis=1)


_MIXTURES: dict[str, MixtureModel] = {}


def mixture_posterior(template: Case, case: Case, index: int, settings) -> dict:  # noqa: ANN001
    """P(H | y) of one incident by the marginalised mixture (NUTS, ``settings.chains`` chains)."""
    from engine.run.seeds import mixture_seed

    mix = _MIXTURES.get(template.digest)
    if mix is None:
        mix = _MIXTURES[template.digest] = MixtureModel(template)
    mix.set_data(case)
    per_chain = []
    for c in range(settings.chains):
        idata = mix.compiled.sample_nuts(draws=settings.draws, tune=settings.tune, seed=mixture_seed(settings.seed, index, c),
                                         target_accept=settings.target_accept)
        per_chain.append(mix.responsibilities(idata.posterior).mean(axis=0))
    post = np.mean(per_chain, axis=0)
    return {"mixture": {"posterior": post.tolist(), "mcse": [0.0] * len(post)}, "chains": [p.tolist() for p in per_chain]}

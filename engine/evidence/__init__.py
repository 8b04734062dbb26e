"""Evidence families: one module per family, each a likelihood term with uncertain parameters.

Every family module exposes

``SAMPLED``
    the parameters that become random variables of the hypothesis's model (their priors come
    from the mechanism, the hypothesis's overrides or the item's ``under``); the other
    parameters of the family enter the likelihood linearly and once, so they are integrated
    out exactly by replacing them with their prior mean (Rao-Blackwellisation);
``loglik(items, theta)``
    log p(y | H, theta) as a PyTensor expression, for the unit's items (one item, or the
    reports of one dependency group, which describe one latent observation);
``background(items, generic)``
    log p_bg(y): the same observation under the hypothesis-independent background that an
    unfaithful report is drawn from (the ``generic`` mechanism's closed-form prior
    predictive), a float.

The model combines them per unit with the source reliability r (engine.model.build):
``p(y | H) = r p(y | H, theta) + (1 - r) p_bg(y)``.
"""

from engine.evidence import claim, elicited, fragments, interval, perforations, timing

FAMILY_MODULES = {
    "perforations": perforations,
    "fragments": fragments,
    "timing": timing,
    "interval": interval,
    "claim": claim,
    "elicited": elicited,
}

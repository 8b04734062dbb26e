"""engine.model.rewrites: the scalar-lowering rewrite changes no value and no gradient, keeps the bounds
checks, and does fire (fewer nodes, no Elemwise fed by a broadcast scalar).

The reference is the same graph compiled with the rewrite excluded from PyTensor's pipeline."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import get_default_mode
from pytensor.tensor.elemwise import DimShuffle, Elemwise

from engine.model import rewrites

rewrites.register()
WITHOUT = get_default_mode().excluding(rewrites.NAME)


def _scalar_model() -> pm.Model:
    """Scalars with vector hyper-parameters and a mixture potential, as the engine's models are built."""
    with pm.Model() as m:
        hp_r = pm.Data("hp_r", np.array([3.0, 2.0]))
        hp_g = pm.Data("hp_g", np.array([2.0, 0.1]))
        use = pm.Data("use", np.asarray(1.0))
        times = pm.Data("times", np.array([0.3]))
        r = pm.Beta("r", alpha=hp_r[0], beta=hp_r[1])
        lam = pm.Gamma("lam", alpha=hp_g[0], beta=hp_g[1])
        mu = pm.Normal("mu", 0.0, 2.0)
        ll_h = pm.logp(pm.Poisson.dist(lam), 17) + pm.logp(pm.Normal.dist(mu, 0.5), times).sum()
        top = pt.maximum(ll_h, -3.0)
        pm.Potential("ll", use * (top + pt.log(r * pt.exp(ll_h - top) + (1 - r) * pt.exp(-3.0 - top))))
    return m


def _nodes(fn) -> list:  # noqa: ANN001
    return fn._pytensor_function.maker.fgraph.toposort()


def test_the_rewrite_changes_no_value_or_gradient_and_keeps_bounds_checks():
    m = _scalar_model()
    with m:
        fast = m.logp_dlogp_function(ravel_inputs=True)
        slow = m.logp_dlogp_function(ravel_inputs=True, mode=WITHOUT)
    for f in (fast, slow):
        f.set_extra_values({})
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.normal(0.0, 2.0, size=3)
        (v1, g1), (v0, g0) = fast(q), slow(q)
        assert np.isfinite(v0)
        np.testing.assert_allclose(v1, v0, rtol=1e-13, atol=0)
        np.testing.assert_allclose(g1, g0, rtol=1e-12, atol=1e-300)
    # an invalid hyper-parameter still makes the density -inf (PyMC's parameter checks survive the rewrite)
    m.set_data("hp_g", np.array([-1.0, 0.1]))
    assert fast(np.zeros(3))[0] == -np.inf and slow(np.zeros(3))[0] == -np.inf

    # ... and it fires: fewer nodes, and no Elemwise of one element fed by a broadcast scalar (a vector
    # Elemwise, over ``times``, still broadcasts its scalars)
    def fed_by_broadcast(nodes: list) -> int:
        return sum(isinstance(n.op, Elemwise) and all(n.outputs[0].type.broadcastable) and any(i.owner is not None and isinstance(i.owner.op, DimShuffle)
                                                     and i.owner.inputs[0].type.ndim == 0 for i in n.inputs) for n in nodes)

    assert len(_nodes(fast)) < len(_nodes(slow))
    assert fed_by_broadcast(_nodes(fast)) == 0 < fed_by_broadcast(_nodes(slow))


def test_each_pattern_on_its_own():
    a, b = pt.dscalar("a"), pt.dscalar("b")
    va, vb = pt.shape_padleft(a), pt.shape_padleft(b)  # ExpandDims of scalars
    outs = [
        pt.exp(va) * vb + np.array([2.0]),  # an Elemwise of broadcast scalars and a one-element constant
        (pt.sin(va) + vb).squeeze(),  # Squeeze(ExpandDims(...))
        pt.all(pt.stack([a > 0, b > 0])),  # All(MakeVector)
        pt.any(pt.stack([a > 0, b > 1])),  # Any(MakeVector)
        pt.shape_padleft(va * vb) + pt.ones((1, 1)),  # two dimensions of length one
    ]
    fast = pytensor.function([a, b], outs)
    slow = pytensor.function([a, b], outs, mode=WITHOUT)
    for x, y in [(0.3, -1.2), (-2.0, 4.0), (1.0, 1.0), (0.0, 0.0)]:
        for u, v in zip(fast(x, y), slow(x, y), strict=True):
            assert u.shape == v.shape and u.dtype == v.dtype
            np.testing.assert_allclose(u, v, rtol=1e-14)
    assert len(fast.maker.fgraph.apply_nodes) < len(slow.maker.fgraph.apply_nodes)

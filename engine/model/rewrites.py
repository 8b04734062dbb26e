"""One PyTensor graph rewrite that keeps scalar arithmetic scalar, so that Elemwise fusion can merge it.

The engine's models are mostly scalars: a source's reliability, a unit's rate, one mixture term per
unit. PyMC's ``logp_dlogp_function(ravel_inputs=True)`` returns the gradient as one vector, so the
gradient of each scalar value variable is assembled as a shape-(1,) vector; PyTensor's canonical
rewrite ``local_dimshuffle_lift`` pushes the ``ExpandDims`` that makes it down to the inputs of every
Elemwise on the way. Fusion cannot merge across a ``DimShuffle``, so the gradient of the AZAL seed
case's 5-parameter model ran as 113 nodes (68 of them ``ExpandDims``, 7 separate composites, and the
bounds checks of the hyper-parameters as ``All(MakeVector(a > 0, b > 0))``): 33-40 us per call, more
than half of a NUTS chain's time (``benchmarks/README.md``, issue 17).

``local_lower_broadcast_scalars`` runs just before fusion (position 48.9; fusion is 49) and undoes
this where it is useless:

* an Elemwise whose output has every dimension of length one, and at least one of whose inputs is a
  0-d variable broadcast by a ``DimShuffle``, is computed on 0-d inputs (that variable; a constant
  of one element; a 0-d view of any other input) and broadcast once afterwards;
* a ``DimShuffle`` of such a broadcast scalar is the scalar broadcast directly (``Squeeze(ExpandDims(x))``
  is ``x``);
* ``All`` / ``Any`` of a ``MakeVector`` of scalars is a chain of ``and`` / ``or``: an Elemwise that
  fusion merges with the rest.

Each replacement computes the same scalar operations on the same values, so it changes no result
(``tests/run/test_rewrites.py`` checks values and gradients against the unrewritten graph). The AZAL
gradient becomes 29 nodes and 14 us per call; a NUTS chain of 2,000 steps 1.4 s -> 0.8 s.
"""

from __future__ import annotations

import functools

import numpy as np
from pytensor.compile import optdb
from pytensor.graph.basic import Constant, Variable
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.tensor.basic import MakeVector, constant
from pytensor.tensor.elemwise import DimShuffle, Elemwise
from pytensor.tensor.math import All, Any, and_, or_

NAME = "incident_lower_broadcast_scalars"
POSITION = 48.9  # after PyTensor's add/mul fusion (48), before Elemwise fusion (49) and the in-place rewrites (49.5+)


def _scalar_source(var: Variable) -> Variable | None:
    """The 0-d variable that ``var`` only broadcasts, or None."""
    owner = var.owner
    if owner is not None and isinstance(owner.op, DimShuffle) and owner.inputs[0].type.ndim == 0:
        return owner.inputs[0]
    if isinstance(var, Constant) and np.size(var.data) == 1:
        return constant(np.asarray(var.data).reshape(()), dtype=var.dtype)
    return None


@node_rewriter([Elemwise, DimShuffle, All, Any])
def local_lower_broadcast_scalars(fgraph, node):  # noqa: ANN001, ANN201, ARG001 - PyTensor's rewriter signature
    out = node.outputs[0]
    if isinstance(node.op, (All, Any)):
        src = node.inputs[0].owner
        if out.type.ndim != 0 or src is None or not isinstance(src.op, MakeVector) or not src.inputs:
            return None
        return [functools.reduce(and_ if isinstance(node.op, All) else or_, src.inputs).astype(out.dtype)]
    if not all(out.type.broadcastable):
        return None
    if isinstance(node.op, DimShuffle):
        src = _scalar_source(node.inputs[0]) if node.inputs[0].owner is not None else None
        if src is None:
            return None
        return [src if out.type.ndim == 0 else src.dimshuffle(*["x"] * out.type.ndim)]
    if out.type.ndim == 0 or len(node.outputs) != 1 or all(isinstance(i, Constant) for i in node.inputs):
        return None
    sources = [_scalar_source(i) for i in node.inputs]
    if all(s is None for s in sources):
        return None
    # any other input has one element too (the output has): it is read as a 0-d view
    sources = [i.dimshuffle() if s is None else s for i, s in zip(node.inputs, sources, strict=True)]
    return [Elemwise(node.op.scalar_op)(*sources).dimshuffle(*["x"] * out.type.ndim)]


def register() -> None:
    """Add the rewrite to PyTensor's default (``fast_run``) pipeline, once per process."""
    if NAME not in optdb.__db__:
        optdb.register(NAME, in2out(local_lower_broadcast_scalars, name=NAME), "fast_run", position=POSITION)

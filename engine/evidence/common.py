"""Small pieces shared by the family modules."""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt


def observed_tensors(theta: dict, values: dict[str, np.ndarray]) -> dict:
    """The unit's observed numbers as tensors: the model's ``pm.Data`` when it passes them in
    ``theta["data"]``, else constants (for direct evaluation, e.g. in tests)."""
    given = theta.get("data")
    if given is not None:
        return given
    return {k: pt.as_tensor_variable(v) for k, v in values.items()}

r"""Claim: a source asserted a statement.

Under hypothesis H the statement holds with probability :math:`h_H` (``holds``, a number
or a Beta whose mean is used: it enters linearly once). A source of reliability :math:`r`
reports the truth with probability :math:`r`; otherwise it asserts the statement with its
background assertion rate :math:`b_c`, which depends on whether asserting it serves the
source's interest (``serves``, ``neutral``, ``against``; priors/sources.yaml):

.. math::
    P(\text{assert} \mid H) = r\,h_H + (1 - r)\,b_c .

A self-serving assertion (:math:`b_c \approx 0.8`) has a likelihood ratio of at most about
:math:`(r + (1-r)0.8)/((1-r)0.8)`, close to 1 for a party to the conflict; an admission
against interest (:math:`b_c \approx 0.03`) one of about :math:`r / ((1-r)0.03)`. The
rates :math:`b_c` are parameters shared by all claims of the same interest class.
This module gives the two pieces; the reliability mixture is the model's generic one.
"""

from __future__ import annotations

import pytensor.tensor as pt

SAMPLED = ()


def loglik(items, theta):  # noqa: ANN001, ANN201
    return pt.log(theta["holds"])


def closed_form(items, spec) -> float:  # noqa: ANN001
    import math

    h = spec["holds"].mean()
    return math.log(h) if h > 0 else -math.inf


def background(items, generic, theta):  # noqa: ANN001, ANN201
    return pt.log(theta["assertion_rate"])

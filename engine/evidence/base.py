r"""The evidence-family protocol: everything the engine needs of one family, declared in one class.

A family is a subclass of ``Family`` with one instance in the registry (``engine.evidence.REGISTRY``).
The engine asks it, and nothing else, about its items:

* **validation** (pydantic and numpy only, no PyMC): ``Obs`` (the observation schema),
  ``parse`` (schema plus conversions such as clock times to minutes), ``mechanism_params``
  (the parameters an observation takes from a mechanism's table), ``check_observed``,
  ``params`` (parameter table: allowed kinds and the range of a fixed value), ``check_params``,
  ``suspicious`` (legal but suspicious observations: warnings for ``incident validate``),
  ``group_conflict`` (may two reports in one dependency group describe one fact?),
  ``describe`` (the observation in words), ``coincidence`` (a time against an activity window);
* **model** (PyMC/PyTensor imported inside the methods only): ``sampled`` (the parameters that
  become random variables; the others enter the likelihood linearly and once, so they are
  integrated out by their prior mean), ``labels`` (category names of a Dirichlet parameter),
  ``data`` (observed numbers, held as ``pm.Data``), ``loglik`` (log p(y | H, theta)),
  ``background`` (log p_bg(y), what an unfaithful report follows: a number, or a tensor when
  ``background_is_tensor``), ``generic`` (the parameters of that background), and extra model
  parameters through ``shared_parameters`` / ``unit_parameters`` / ``bind``;
* **closed forms**: ``closed_form`` (None where there is none), ``exact_problem`` (why a case's
  evidence is not exact for this family, or None), ``unit_log_evidence`` (numpy, over draws of
  the shared parameters);
* **simulation and predictive checks**: ``simulable`` with ``design_problems``,
  ``simulate_observed`` and ``simulate_background``; ``replicable`` with ``simulate``, ``observed`` and ``logp_np``.

The model combines a unit's two densities with the unit's reliability
(``combined_reliability``): ``p(y | H) = r p(y | H, theta) + (1 - r) p_bg(y)``.

**Bounded influence.** Each family states ``log_ratio_cap(items)``, log K: an upper bound on
``log p(y | H, theta) - log p_bg(y)`` over every hypothesis, every parameter value and every
observation of the unit's design (its numbers of measurements; their values free). A unit of
reliability r then moves the odds between any two hypotheses by at most
``influence_bound(r, log K) = log(1 + K r / (1 - r))`` nat (with an uncertain reliability, r
is its mean for a unit evaluated alone). Families keep K finite by giving their background a
vague, heavy-tailed component of weight ``VAGUE_WEIGHT`` (``robust_background``): a report
that does not carry the fact can be any number, not only a typical one.

**Collapsed units.** A ``collapsible`` family's unit parameters are its own and conjugate: where
``closed_form`` exists the model integrates them out (the unit's term is the number
``log(r p(y | H) + (1 - r) p_bg(y))``, no latent parameter, no two-mode posterior), and
``own_posterior`` draws them afterwards from their exact conditional posterior, so the stored
posterior still holds them for predictive checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import reduce
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from engine.dists import Dist, parse_dist

BIG = 1e9  # refuse absurd magnitudes (units are holes, mm, seconds, minutes)
NonNegativeInt = Annotated[int, Field(strict=True, ge=0, le=10_000_000)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0, le=BIG)]
Number = Annotated[float, Field(strict=True, ge=-BIG, le=BIG)]
Text = Annotated[str, Field(min_length=1, max_length=20_000)]
ParamSpec = Annotated[Dist, BeforeValidator(parse_dist)]
ParamTable = dict[str, tuple[tuple[str, ...], tuple[float, float]]]  # name -> (allowed kinds, range of a fixed value)
Problems = list[tuple[str, str]]  # (field of the observation, message)


VAGUE_WEIGHT = 0.5  # share of the vague, heavy-tailed component in a count, size or duration background


def robust_background(log_generic: float, log_vague: float, weight: float = VAGUE_WEIGHT) -> float:
    """log((1 - w) e^generic + w e^vague): the background an unfaithful report follows."""
    return float(np.logaddexp(np.log1p(-weight) + log_generic, np.log(weight) + log_vague))


def influence_bound(r: float, log_k: float) -> float:
    """The most (nat) one unit of reliability r can move the odds between two hypotheses when
    log p(y | H, theta) - log p_bg(y) <= log K: log(1 + K r / (1 - r)); inf for r = 1."""
    if r >= 1.0 or not np.isfinite(log_k):
        return float("inf")
    if r <= 0.0:
        return 0.0
    return float(np.logaddexp(0.0, log_k + np.log(r) - np.log1p(-r)))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False)


def unit_sources(items: Iterable[Any]) -> list[str]:
    """The distinct sources reporting a unit, sorted (one report counts once): the items' own and
    those of the items restating them (``reporters``, engine.spec.case.restatements)."""
    return sorted({s for it in items for s in (it.source, *getattr(it, "reporters", ()))})


def combined_reliability(reliabilities: Iterable[Any], one: Any = 1.0) -> Any:
    """r = 1 - prod_s (1 - r_s) over a unit's distinct sources: the chance that at least one of
    several independent reports of one fact carries it faithfully.

    Works on floats, numpy arrays of draws and PyTensor tensors alike (``one`` is the starting
    product, e.g. ``pt.constant(1.0)``).
    """
    return 1 - reduce(lambda acc, r: acc * (1 - r), reliabilities, one)


def observed_tensors(theta: dict, values: dict[str, np.ndarray]) -> dict:
    """The unit's observed numbers as tensors: the model's ``pm.Data`` when it passes them in
    ``theta["data"]``, else constants (for direct evaluation, e.g. in tests)."""
    given = theta.get("data")
    if given is not None:
        return given
    import pytensor.tensor as pt

    return {k: pt.as_tensor_variable(v) for k, v in values.items()}


class Family:
    """Base of the evidence families; the defaults describe a family with nothing optional."""

    name: ClassVar[str]
    Obs: ClassVar[type[Strict]]
    params: ClassVar[ParamTable]
    sampled: ClassVar[tuple[str, ...]] = ()
    background_is_tensor: ClassVar[bool] = False  # the background depends on model parameters
    simulable: ClassVar[bool] = False  # calibration can simulate its observations (design_problems, simulate_observed)
    replicable: ClassVar[bool] = False  # predictive checks can replicate it (simulate, observed, logp_np)
    collapsible: ClassVar[bool] = False  # unit parameters own and conjugate: integrated out (closed_form, own_posterior)
    # parameters that, given a normal prior, the family samples in a coordinate of its own (``sample_as``)
    reparametrised: ClassVar[tuple[str, ...]] = ()

    # ---------------------------------------------------------------- validation
    def parse(self, raw: Any) -> Strict:
        """The validated observation (raises pydantic's ``ValidationError`` or ``ValueError``)."""
        return self.Obs.model_validate(raw)

    def mechanism_params(self, obs: Any, table: dict[str, Dist]) -> dict[str, Dist]:
        """This family's parameters for one observation in a mechanism's table (its section of
        priors/mechanisms.yaml): by default the table itself."""
        return table

    def check_observed(self, obs: Any) -> Problems:
        """Problems of a parsed observation that the schema cannot express."""
        return []

    def check_params(self, obs: Any, spec: dict[str, Dist]) -> Problems:
        """Problems of one hypothesis's resolved parameters against the observation."""
        return []

    def suspicious(self, obs: Any) -> Problems:
        """Legal but suspicious things about a parsed observation: warnings for the author, not errors."""
        return []

    def suspicious_params(self, obs: Any, spec: dict[str, Dist]) -> Problems:
        """Legal but suspicious things about an observation read under one hypothesis's parameters: warnings."""
        return []

    def group_conflict(self, group: str, first: Any, other: Any) -> str | None:
        """Why two reports in one dependency group cannot describe one fact, or None."""
        if other != first:
            return f"reports in group {group!r} disagree on the observed values; reconcile them or split the group"
        return None

    def describe(self, obs: Any) -> str:
        """A short human reading of one observation."""
        return " ".join(str(obs).split())

    def coincidence(self, obs: Any) -> tuple[float, tuple, tuple, float, float] | None:
        """(time, window, period, clock s.d., rounding) of a time reported against an activity
        window (for the chance-coincidence test), or None."""
        return None

    # ---------------------------------------------------------------- model
    def labels(self, items: tuple) -> tuple[str, ...]:
        """Category names a Dirichlet parameter of the unit ranges over."""
        return ()

    def data(self, items: tuple) -> dict[str, np.ndarray]:
        """The observed numbers, which the model holds as ``pm.Data`` (replaceable without recompiling)."""
        return {}

    def shared_parameters(self, case: Any) -> dict[str, Dist]:
        """Model parameters shared by several units of this family in ``case`` (name -> prior)."""
        return {}

    def unit_parameters(self, items: tuple) -> dict[str, Dist]:
        """Model parameters of one unit besides its hypothesis-dependent ones (name -> prior)."""
        return {}

    def bind(self, items: tuple, theta: dict, params: Mapping[str, Any]) -> dict:
        """``theta`` with the unit's shared and extra parameters (tensors or numpy draws, by name) added."""
        return theta

    def loglik(self, items: tuple, theta: dict) -> Any:
        """log p(y | H, theta), a PyTensor expression."""
        raise NotImplementedError

    def sample_as(self, items: tuple, name: str, pname: str, hp: Any, theta: dict) -> Any:
        """Parameter ``pname`` (one of ``reparametrised``; prior Normal(hp[0], hp[1]), random-variable name
        ``name``) as a tensor of free random variables the family creates in the current PyMC model, the
        prior kept exactly (the change of variables' Jacobian included); ``theta`` holds the unit's other
        parameters. Called after they are all made."""
        raise NotImplementedError

    def background(self, items: tuple, generic: dict[str, Dist], theta: dict) -> Any:
        """log p_bg(y): a float, or a tensor of ``theta`` when ``background_is_tensor``."""
        return self.closed_form(items, generic)

    def generic(self, items: tuple, library: dict[str, Dist], hypotheses: Iterable[str]) -> dict[str, Dist]:
        """The parameters of the background: by default the ``generic`` mechanism's for this family."""
        return library

    # ---------------------------------------------------------------- closed forms
    def closed_form(self, items: tuple, spec: dict[str, Dist]) -> float | None:
        """log p(y | H) with the unit's parameters integrated out, or None where there is no closed form."""
        return None

    def exact_problem(self, case: Any) -> str | None:
        """Why ``case``'s evidence is not exact for this family's units, or None. By default: a unit
        whose ``closed_form`` is None under some hypothesis."""
        for _, items in case.units():
            if items[0].family == self.name and any(self.closed_form(items, items[0].params[h]) is None for h in case.hypotheses):
                return f"{self.name} unit {items[0].group or items[0].id} has no closed form"
        return None

    def unit_log_evidence(self, items: tuple, spec: dict[str, Dist], generic: dict[str, Dist],
                          params: Mapping[str, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        """(log p(y | H), log p_bg(y)) per draw of the shared and extra parameters (``params``, by name);
        NaN where there is no closed form."""
        def full(x: float | None) -> np.ndarray:
            return np.full(n, np.nan if x is None else float(x))

        return full(self.closed_form(items, spec)), full(self.background(items, generic, {}))

    def log_ratio_cap(self, items: tuple, shared: Mapping[str, Dist] | None = None) -> float:
        """log K >= log p(y | H, theta) - log p_bg(y) for every hypothesis, parameter value and
        observation of this unit's design (``influence_bound``); inf where the family states none.
        ``shared``: the case's shared parameters (``engine.evidence.shared_parameters``), which
        some bounds need (a claim's assertion rate)."""
        return float("inf")

    def own_posterior(self, items: tuple, spec: dict[str, Dist], rng: np.random.Generator,
                      faithful: np.ndarray) -> dict[str, np.ndarray]:
        """Draws of the unit's sampled parameters (those in ``sampled`` whose spec is not fixed;
        name -> array with leading axis ``len(faithful)``): from their exact posterior given the
        observation where ``faithful`` is true (the report carries the fact), from their prior
        (``spec``) elsewhere. ``collapsible`` families only, where ``closed_form`` is not None."""
        raise NotImplementedError(f"family {self.name} is not collapsible")

    def initial_values(self, items: tuple, spec: dict[str, Dist]) -> list[dict[str, float]]:
        """Candidate starting points for the sampler (unit parameter -> value), from which the
        sampler's optimiser climbs (``engine.run.compiled``); empty: the family proposes none and
        the sampler starts as PyMC does."""
        return []

    # ---------------------------------------------------------------- simulation (``simulable``)
    def design_problems(self, obs: Any) -> Problems:
        """Why an item cannot serve as a calibration template's design."""
        return []

    def simulate_observed(self, items: tuple, theta: dict, rng: np.random.Generator) -> list[dict[str, Any]] | None:
        """New observed values (updates of each item's observation) drawn given one draw of ``theta``;
        None when the observation is an event (a claim asserted, an elicited fact seen) that did not
        happen this time: calibration then redraws the incident (the prior predictive conditioned on
        the template's events)."""
        raise NotImplementedError(f"family {self.name} cannot be simulated")

    def simulate_background(self, items: tuple, theta: dict, rng: np.random.Generator) -> list[dict[str, Any]] | None:
        """Observed values of an unfaithful report, ``theta`` drawn from the background's parameters
        (``generic``, bound with the shared ones): by default ``simulate_observed`` of that theta."""
        return self.simulate_observed(items, theta, rng)

    # ---------------------------------------------------------------- numerical checks at the posterior
    def numerical_problems(self, items: tuple, theta: dict) -> list[str]:
        """Where the family's own numerical approximation (a quadrature, a series) is not accurate at these
        posterior draws (``theta``, leading axis = draws): one line each, naming the fix. The run's verdict warns
        with them. Families without such an approximation have none."""
        return []

    # ---------------------------------------------------------------- predictive checks (``replicable``)
    def simulate(self, items: tuple, theta: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Replicated data, one per draw of ``theta`` (leading axis)."""
        raise NotImplementedError(f"family {self.name} has nothing to replicate")

    def observed(self, items: tuple) -> dict[str, np.ndarray]:
        """The observed data in the shape of ``simulate``'s (one draw)."""
        raise NotImplementedError(f"family {self.name} has nothing to replicate")

    def logp_np(self, items: tuple, y: dict[str, np.ndarray], theta: dict) -> np.ndarray:
        """numpy log p(y | H, theta) per draw: the twin of ``loglik``."""
        raise NotImplementedError(f"family {self.name} has nothing to replicate")

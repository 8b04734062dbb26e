"""Typed records of a run's results: what ``collect`` and ``sensitivity`` write, what the report reads.

Each record is a frozen pydantic model with a ``schema_version`` and

``Record.from_json(data, source=PATH)``
    validates a parsed JSON object: a wrong ``schema_version`` or a malformed field is a
    ``RunError`` naming the file and the field (``attribution.json: hypotheses.a.posterior:
    Input should be a valid number``). A file without ``schema_version`` was written before
    records had versions and has the same keys: it is read as the current version.
``record.to_json()``
    the JSON object to write (``schema_version`` first, then the keys in the order the README
    documents; keys a file did not have stay absent, unknown keys are kept).

Records:

* ``Attribution``   attribution.json: prior, posterior and its Monte Carlo error, log evidences;
* ``Diagnostics``   diagnostics.json: verdict and reasons, convergence and estimator agreement per
  hypothesis, predictive p-values, unexplained units, per-unit contributions;
* ``Sensitivity``   sensitivity.json: break-even priors, ablation, reliability sweep and its tornado,
  waterfall, coincidence tests;
* ``CaseRecord``    case.json: the case as the report shows it (title, date, hypotheses, evidence
  rows with their observation in words, a damage map's panels and holes, sources with their
  reliability), so that nothing downstream of a run re-reads the YAML.

Pure: no file IO (``engine.run.store`` reads and writes the files).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import RunError

SCHEMA_VERSION = 1


class Part(BaseModel):
    """A part of a record: strict types (no "0.5" for 0.5), unknown keys kept."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class Record(Part):
    """A JSON file of a run folder with a schema version."""

    FILE: ClassVar[str] = ""
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_json(cls, data: Any, *, source: str = "") -> Self:
        """The record in ``data`` (parsed JSON); ``RunError`` naming ``source`` and the field if it is not one."""
        where = source or cls.FILE
        if not isinstance(data, dict):
            raise RunError(f"{where}: not a JSON object; {cls.redo()}")
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise RunError(f"{where}: schema_version: {version!r} is not the version this engine reads ({SCHEMA_VERSION}); "
                           f"{cls.redo()}")
        try:
            record = cls.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors()
            first = errors[0]
            loc = ".".join(str(p) for p in first["loc"]) or "<root>"
            more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
            raise RunError(f"{where}: {loc}: {first['msg']}{more}; {cls.redo()}") from None
        record.check(where)
        return record

    @classmethod
    def redo(cls) -> str:
        return "rerun the case (incident run --resume RUN) to rewrite it"

    def check(self, where: str) -> None:
        """Cross-field checks after validation (raise ``RunError`` naming ``where`` and the field)."""

    def to_json(self) -> dict:
        return {"schema_version": self.schema_version, **self.model_dump(exclude_unset=True, exclude={"schema_version"})}


# ---------------------------------------------------------------- attribution.json
class LogEvidences(Part):
    smc: float
    bridge: float
    pooled: float


class HypothesisResult(Part):
    prior: float
    posterior: float
    posterior_mcse: float
    log_evidence: LogEvidences
    log_evidence_se: float
    method: Literal["sampled", "reweighted", "exact"] = "sampled"  # exact: no free parameter, nothing sampled


class Attribution(Record):
    FILE: ClassVar[str] = "attribution.json"
    case: str
    run: str
    leader: str
    converged: bool
    warnings: list[str]
    hypotheses: dict[str, HypothesisResult] = Field(min_length=1)

    def check(self, where: str) -> None:
        if self.leader not in self.hypotheses:
            raise RunError(f"{where}: leader: {self.leader!r} is not one of the hypotheses {sorted(self.hypotheses)}; {self.redo()}")


# ---------------------------------------------------------------- diagnostics.json
class EstimatorAgreement(Part):
    smc: float
    smc_se: float
    bridge: float
    bridge_se: float
    spread: float
    z: float
    agree: bool | None  # None: not applicable (a reweighted variant: both estimates are the base run's, shifted alike)


class Reweighted(Part):
    log_ratio: float
    se: float
    pareto_k: float | None  # None: the variant leaves every draw's density ratio the same (no tail to fit)
    k_max: float
    ess: float


class HypothesisDiagnostics(Part):
    rhat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    bfmi_min: float
    n_chains: int
    n_draws: int
    problems: list[str]
    numerical: list[str] = []  # where a family's own approximation is inaccurate at the posterior (Family.numerical_problems)
    exact: bool = False  # no free parameter: nothing sampled, the evidence is exact
    estimators: EstimatorAgreement | None = None
    reweighted: Reweighted | None = None


class PredictiveUnit(Part):
    family: str
    items: list[str]
    p_values: dict[str, float | None]  # None: nothing to replicate (claims, elicited probabilities)


class UnitContributions(Part):
    leader: str
    runner_up: str
    units: dict[str, float]  # log10 Bayes factor of each unit, leader vs runner-up
    pareto_k: dict[str, float] = {}


class Diagnostics(Record):
    """diagnostics.json; every part but the case and run may be absent (the report says "not available")."""

    FILE: ClassVar[str] = "diagnostics.json"
    case: str
    run: str
    verdict: Literal["pass", "warn", "fail"] | None = None
    reasons: list[str] = []
    hypotheses: dict[str, HypothesisDiagnostics] = {}
    posterior_mcse: dict[str, float] = {}
    predictive: dict[str, PredictiveUnit] | None = None
    unexplained: list[str] = []
    contributions: UnitContributions | None = None

    @classmethod
    def redo(cls) -> str:
        return "delete it and run `incident diagnose RUN` to recompute it"


# ---------------------------------------------------------------- sensitivity.json
class BreakEven(Part):
    log10_bf_leader_vs_alt: float
    prior: float
    break_even_prior: float


class VariantRow(Part):
    """The leader's probability in one sensitivity variant."""

    variant: str
    label: str
    leader: str
    leader_posterior: float
    shift: float
    mcse: float | None = None
    margin: float | None = None  # leader changes only: the new leader's lead and its MC standard error
    margin_se: float | None = None


class SweepRow(VariantRow):
    reliability: float


class WaterfallRow(Part):
    """The leader's probability with the first ``step`` units only (the last row: all evidence)."""

    step: int
    variant: str
    label: str
    leader: str
    leader_posterior: float
    shift: float
    mcse: float | None = None
    posteriors: dict[str, float]


class TornadoBar(Part):
    source: str
    low_reliability: float
    low: float
    low_leader: str | None = None
    high_reliability: float
    high: float
    high_leader: str | None = None
    swing: float
    mcse: float | None = None


class Tornado(Part):
    base: float
    bars: list[TornadoBar]


class Coincidence(Part):
    distance: float
    p_value: float
    window_share_of_period: float
    n: int


class Sensitivity(Record):
    FILE: ClassVar[str] = "sensitivity.json"
    case: str
    run: str
    leader: str
    break_even: dict[str, BreakEven] = {}
    ablation: list[VariantRow] = []
    alarms: list[str] = []
    ties: list[str] = []
    reliability: dict[str, dict[str, SweepRow]] = {}
    tornado: Tornado | None = None
    waterfall: list[WaterfallRow] = []
    coincidence: dict[str, Coincidence] = {}
    execution: dict[str, Any] = {}
    methods: dict[str, int] = {}

    @classmethod
    def redo(cls) -> str:
        return "run `incident sensitivity RUN` again to rewrite it"

    @classmethod
    def from_json(cls, data: Any, *, source: str = "") -> Self:
        """As ``Record.from_json``; a file written before the tornado (or its leaders) existed gets
        its tornado built from the reliability sweep, around the waterfall's base value."""
        record = super().from_json(data, source=source)
        t = record.tornado
        if record.reliability and (t is None or any(b.low_leader is None or b.high_leader is None for b in t.bars)):
            base = t.base if t is not None else next((w.leader_posterior for w in record.waterfall if w.variant == "base"), None)
            if base is not None:
                sweep = {s: {k: row.model_dump(exclude_unset=True) for k, row in d.items()} for s, d in record.reliability.items()}
                try:
                    built = Tornado.model_validate(tornado_of(sweep, base))
                except (KeyError, TypeError, ValidationError):  # a partial sweep: keep what the file holds
                    return record
                return record.model_copy(update={"tornado": built})
        return record


def tornado_of(sweep: dict[str, dict], base: float) -> dict:
    """The reliability sweep as a tornado: per source the leader's probability with the source's
    reliability at its low and high quantile (and which hypothesis leads then), around the base
    value, largest swing first.

    ``swing`` = |P(high) - P(low)|; ties keep the sweep's (alphabetical) source order.
    """
    bars = []
    for src, d in sweep.items():
        if "lo" not in d or "hi" not in d:
            continue
        lo, hi = d["lo"]["leader_posterior"], d["hi"]["leader_posterior"]
        bars.append({"source": src, "low_reliability": d["lo"]["reliability"], "low": lo, "low_leader": d["lo"]["leader"],
                     "high_reliability": d["hi"]["reliability"], "high": hi, "high_leader": d["hi"]["leader"],
                     "swing": abs(hi - lo),
                     "mcse": max((m for m in (d["lo"]["mcse"], d["hi"]["mcse"]) if m is not None), default=None)})
    bars.sort(key=lambda b: -b["swing"])
    return {"base": base, "bars": bars}


# ---------------------------------------------------------------- case.json
class CaseHypothesis(Part):
    id: str
    description: str
    prior: float  # normalised
    mechanism: str
    reasoning: str = ""


class CaseSource(Part):
    id: str
    title: str
    citation: str = ""
    profile: str  # the priors library's reliability profile, or "custom"
    reliability: str  # the reliability's distribution, e.g. "Beta(9, 1)" or "0.8" (fixed)
    reliability_fixed: bool
    reliability_mean: float


class Citation(Part):
    file: str
    quote: str


Vector3 = Annotated[list[float], Field(min_length=3, max_length=3)]  # x, y, z


class CasePanel(Part):
    """An inspected panel of a damage map: a rectangle (corner and two perpendicular edges, m, body frame)."""

    id: str
    corner: Vector3
    edge1: Vector3
    edge2: Vector3


class CaseHole(Part):
    panel: str
    at: Vector3
    bend: Literal["in", "out"] | None = None
    elongation: float | None = None


class CasePanelCount(Part):
    panel: str
    holes: int


class CaseDamageMap(Part):
    """A damage-map item's panels and holes (what the report draws), as observed."""

    panels: list[CasePanel]
    holes: list[CaseHole] = []
    counts: list[CasePanelCount] = []


class CaseEvidence(Part):
    id: str
    family: str
    source: str
    group: str | None = None
    restates: str | None = None  # the item whose information this one repeats (it has no term of its own)
    observation: str  # the observed values in words (the family's description)
    description: str = ""
    cites: list[Citation] = []
    influence_bound: float | None = None  # nat: the most the item's unit can move the odds between two hypotheses; None: no bound stated
    damage_map: CaseDamageMap | None = None  # a damage_map item's panels and holes


class CaseRecord(Record):
    """case.json: the resolved case as the report shows it, written by collect."""

    FILE: ClassVar[str] = "case.json"
    id: str
    title: str
    date: str
    description: str = ""
    digest: str = ""  # sha256 of the case text and the priors used (the manifest's case_sha256)
    hypotheses: list[CaseHypothesis]
    sources: list[CaseSource]
    evidence: list[CaseEvidence]

    @classmethod
    def redo(cls) -> str:
        return "delete it and run `incident report RUN` to rewrite it from the run's case.yaml"

    def meta(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "date": self.date, "description": self.description}

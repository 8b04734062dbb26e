"""What a run is asked to do, validated once when it is built.

* :class:`Settings`: the sampler settings and the run seed (what the numbers depend on; the
  task fingerprints hash them), each checked against its range.
* :class:`Variant`: a named set of ``pm.Data`` overrides (a sensitivity variant).
* :class:`ExecutionOptions`: where and how the tasks run (workers, an existing scheduler or
  SLURM, retries, the no-worker timeout, TLS). Never part of a result: the same seed gives the
  same numbers with any options. Bad values raise ``OptionError`` (exit 2) when the object is
  built, before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import OptionError, RunError
from engine.run.checks import TLSFiles, check_tls, load_cluster_config, normalise_address
from engine.run.store import safe_name

VARIANT_METHODS = ("reweight", "sample")
CLUSTERS = ("local", "slurm")


def _whole(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise OptionError(f"{name} = {value!r} should be a whole number (at least {low})")
    if value < low:
        raise OptionError(f"{name} = {value} is out of range; give {low} or more")


@dataclass(frozen=True)
class Settings:
    """Sampler settings and run seed; keyword-only in practice, all with defaults.

    ``seed`` (0 or more): every task's seed derives from it (``engine.run.seeds``);
    ``draws``/``tune``/``chains``: NUTS draws kept, tuning steps and chains per hypothesis;
    ``smc_draws``/``smc_chains``: SMC particles and chains per hypothesis;
    ``target_accept`` in (0, 1); ``variant_method``: ``reweight`` (importance reweighting,
    sampling where unreliable) or ``sample``; ``variant_tune``: tuning steps of a variant's NUTS
    chain (at most ``tune``), which starts from the base run's chain (``engine.run.compiled.WarmStart``).
    """

    seed: int = 20181017
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    smc_draws: int = 1000
    smc_chains: int = 4
    target_accept: float = 0.9
    variant_method: str = "reweight"
    variant_tune: int = 250

    def __post_init__(self) -> None:
        for name, low in (("seed", 0), ("draws", 1), ("tune", 0), ("chains", 1), ("smc_draws", 1), ("smc_chains", 1),
                          ("variant_tune", 0)):
            _whole(name, getattr(self, name), low)
        ta = self.target_accept
        if isinstance(ta, bool) or not isinstance(ta, (int, float)) or not 0 < ta < 1:
            raise OptionError(f"target_accept = {ta!r} is out of range; give a number strictly between 0 and 1")
        if self.variant_method not in VARIANT_METHODS:
            raise OptionError(f"variant method {self.variant_method!r} is not known; use one of {', '.join(VARIANT_METHODS)}")

    def tune_for(self, variant: Variant | None) -> int:
        """NUTS tuning steps of a chain: ``tune`` in the base run, ``min(variant_tune, tune)`` in a variant,
        whose chain starts where the base run's is (its draw, step size and scale)."""
        return self.tune if variant is None else min(self.variant_tune, self.tune)


VARIANT_KEYS = ("hp__", "use__", "inc__")  # the pm.Data a variant may set (README, "Variants")


@dataclass(frozen=True)
class Variant:
    """A named set of ``pm.Data`` overrides, applied after the hypothesis's own data.

    ``overrides`` is stored as a sorted tuple of (data name, flat values, shape) so that a
    variant is hashable and pickles small; build one with :meth:`of`.
    """

    name: str
    overrides: tuple[tuple[str, tuple[float, ...], tuple[int, ...]], ...] = ()

    @classmethod
    def of(cls, name: str, overrides: Mapping[str, Any]) -> Variant:
        """Refuses data other than ``VARIANT_KEYS``: observations and what is computed from them
        (``obs__``, ``bg__``, ``lh__``) fix the background density, the exact evidence of collapsed
        units and the base run's draws, which a variant does not recompute."""
        safe_name(name, "variant name")
        items = []
        for key, value in sorted(overrides.items()):
            if not str(key).startswith(VARIANT_KEYS):
                raise RunError(f"variant {name!r}: {key} is not a prior or a switch; a variant may set only "
                               f"{', '.join(k + '<name>' for k in VARIANT_KEYS)} (priors, units in or out, reports in a group "
                               "in or out); observed data and what follows from it are the case file's: run a copy of the "
                               "case with the other observation")
            arr = np.asarray(value, dtype=float)
            if not np.all(np.isfinite(arr)):
                raise RunError(f"variant {name!r}: {key} = {value!r} is not finite; give finite numbers")
            items.append((str(key), tuple(float(x) for x in arr.ravel()), tuple(arr.shape)))
        return cls(name, tuple(items))

    def data(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=float).reshape(s) for k, v, s in self.overrides}

    def to_json(self) -> dict[str, Any]:
        return {k: v.tolist() for k, v in self.data().items()}


@dataclass(frozen=True)
class ExecutionOptions:
    """Where a run's (or a calibration's) tasks execute; checked once, here.

    ``workers``: local worker processes (0: in this process), or SLURM worker processes with
    ``cluster="slurm"``; ``scheduler``: address of an existing dask scheduler
    (``tcp://HOST:PORT``, ``tls://HOST:PORT``); ``cluster``: ``local`` or ``slurm``;
    ``cluster_config``: YAML file of SLURM settings (read and checked here); ``retries``: retries
    of a task that raises; ``no_workers_timeout``: seconds without any worker before the run
    fails; ``tls``: the client's certificates for a ``tls://`` scheduler (``TLSFiles.of``).
    """

    workers: int = 2
    scheduler: str | None = None
    cluster: str = "local"
    cluster_config: str | Path | None = None
    retries: int = 2
    no_workers_timeout: float = 120.0
    tls: TLSFiles | None = None
    slurm: dict = field(default_factory=dict, init=False, compare=False, hash=False, repr=False)  # the parsed cluster_config
    tls_source: str | None = field(default=None, init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.cluster not in CLUSTERS:
            raise OptionError(f"--cluster {self.cluster!r} is not known; use local or slurm (or --scheduler tcp://HOST:PORT)")
        if isinstance(self.workers, bool) or not isinstance(self.workers, (int, np.integer)) or self.workers < 0:
            raise OptionError(f"--workers {self.workers} must be 0 (in this process) or more")
        if isinstance(self.retries, bool) or not isinstance(self.retries, (int, np.integer)) or self.retries < 0:
            raise OptionError(f"--retries {self.retries} must be 0 or more")
        if not (isinstance(self.no_workers_timeout, (int, float)) and self.no_workers_timeout > 0):
            raise OptionError(f"--no-workers-timeout {self.no_workers_timeout} must be positive (seconds)")
        if self.cluster_config is not None and self.cluster != "slurm":
            raise OptionError("--cluster-config applies to --cluster slurm only")
        if self.scheduler is not None and self.cluster == "slurm":
            raise OptionError("--scheduler and --cluster slurm exclude each other; pick one")
        if self.tls is not None and not isinstance(self.tls, TLSFiles):
            raise OptionError(f"tls = {self.tls!r} should be TLSFiles.of(ca, cert, key)")
        object.__setattr__(self, "tls_source", check_tls(self.scheduler, self.tls))
        if self.scheduler is not None:
            object.__setattr__(self, "scheduler", normalise_address(self.scheduler))
        if self.cluster == "slurm":
            if self.workers < 1:
                raise OptionError("--cluster slurm needs --workers 1 or more (worker processes to start as SLURM jobs)")
            if self.cluster_config is not None:
                object.__setattr__(self, "slurm", load_cluster_config(self.cluster_config))

    @property
    def kind(self) -> str:
        """``inprocess``, ``local``, ``scheduler`` or ``slurm``."""
        if self.scheduler is not None:
            return "scheduler"
        if self.cluster == "slurm":
            return "slurm"
        return "inprocess" if self.workers == 0 else "local"

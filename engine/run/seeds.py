"""Every seed the engine derives, in one place.

All seeds are functions of the run seed (a case run's ``Settings.seed`` or a calibration's
``CalibrationSettings.seed``) and of names or indices that do not depend on the execution: a
result never depends on which worker ran it, how many workers there were, or what ran
before. Nothing draws from a global random state. Changing a derivation here changes results:
the values of every derivation used for a run's ``attribution.json`` are fixed.

Case runs (``spawn_key`` of length 1 or 2):
  * :func:`task_seed` - a task's seed, from its key (``nuts-<h>-<chain>``, ...): ``spawn_key =
    (crc32(key),)``; a variant's tasks use the base run's keys (common random numbers).
    :func:`int_seed` turns it into the integer PyMC's samplers take.
  * :func:`resample_seed` - the systematic resampling of a reweighted variant's posterior draws:
    the seed of that hypothesis's ``reweight`` task.
  * :func:`predictive_seed` - posterior predictive replicates of evidence unit ``k`` under
    hypothesis ``j``: ``spawn_key = (k, j)``.
  * :func:`coincidence_seed` - the Monte Carlo coincidence test of a timing item (sensitivity).

Calibration (``spawn_key`` of length 1, 2 or 4):
  * :func:`incident_seed` - simulated incident ``i``: ``spawn_key = (i,)``.
  * :func:`sampler_seed` - one sampler run on incident ``i``, hypothesis ``j``:
    ``spawn_key = (i, 1 + j, kind, chain)``; :func:`mixture_seed` - the mixture control's chains.
  * :func:`ece_null_seed` - the ECE noise floor's simulated calibrated forecasts.
"""

from __future__ import annotations

import zlib

import numpy as np

SAMPLER_KINDS = {"nuts": 1, "smc": 2, "bridge": 3, "sbc": 4}
SMC_KERNEL_SEED = 0  # construction seed of a cached SMC kernel; every chain reseeds it (Compiled.sample_smc)


def _crc(name: str) -> int:
    return zlib.crc32(name.encode())


def int_seed(ss: np.random.SeedSequence) -> int:
    """The 32-bit integer seed of ``ss`` (what ``pm.sample`` and ``pm.sample_smc`` take)."""
    return int(ss.generate_state(1, dtype=np.uint32)[0])


# ------------------------------------------------------------------ case runs
def task_seed(run_seed: int, key: str) -> np.random.SeedSequence:
    """Seed of one task: a function of the run seed and the task key only."""
    return np.random.SeedSequence(run_seed, spawn_key=(_crc(key),))


def resample_seed(run_seed: int, hid: str) -> np.random.SeedSequence:
    """Seed of the resampled posterior of a reweighted variant's hypothesis (its reweight task's seed)."""
    return task_seed(run_seed, f"reweight-{hid}-0")


def predictive_seed(run_seed: int, unit: int, hyp: int) -> np.random.SeedSequence:
    """Seed of the posterior predictive replicates of the ``unit``-th evidence unit under the ``hyp``-th hypothesis."""
    return np.random.SeedSequence(run_seed, spawn_key=(unit, hyp))


def coincidence_seed(run_seed: int, item_id: str) -> np.random.SeedSequence:
    """Seed of the coincidence test of timing item ``item_id`` (sensitivity.json)."""
    return np.random.SeedSequence(run_seed, spawn_key=(_crc("sensitivity"), _crc("coincidence"), _crc(item_id)))


# ------------------------------------------------------------------ calibration
def incident_seed(run_seed: int, index: int) -> np.random.SeedSequence:
    """Seed of simulated incident ``index``: a function of the run seed and the index only."""
    return np.random.SeedSequence(run_seed, spawn_key=(index,))


def sampler_seed(seed: int, index: int, hyp: int, kind: str, chain: int = 0) -> int:
    """Integer seed of one sampler run (``kind`` in ``SAMPLER_KINDS``) on incident ``index``, hypothesis ``hyp``."""
    return int_seed(np.random.SeedSequence(seed, spawn_key=(index, 1 + hyp, SAMPLER_KINDS[kind], chain)))


def mixture_seed(seed: int, index: int, chain: int) -> int:
    """Integer seed of the mixture control's NUTS chain ``chain`` on incident ``index``."""
    return sampler_seed(seed, index, 0, "nuts", chain)


def ece_null_seed(seed: int) -> np.random.SeedSequence:
    """Seed of the calibrated forecasts simulated for the ECE noise floor of a calibration."""
    return np.random.SeedSequence(seed, spawn_key=(_crc("calibration"), _crc("ece-null")))

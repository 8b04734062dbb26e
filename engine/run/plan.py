"""A run's tasks: what they are, what each reads, what a finished one asks for, and what
its stored result depends on.

A run is a set of tasks (hypothesis x estimator x chain x variant): ``nuts`` and ``smc``
tasks per hypothesis and chain, and one ``bridge`` task per hypothesis that reads its NUTS
chains. The base run has no variant and keeps the folder layout of ``engine.run.store``;
variant ``v`` lives in ``variants/<v>/`` with the same layout. With ``variant_method =
"reweight"`` a variant starts as one ``reweight`` task per hypothesis (importance reweighting
of the base run's NUTS draws); a reweighting whose weights are unreliable asks for that
hypothesis to be sampled in the variant (:func:`followups`). Each task's seed derives from
the run seed and :attr:`Task.key` (``engine.run.seeds``), so a variant's tasks share the base
run's seeds (common random numbers).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.run.settings import Settings, Variant
from engine.run.store import RunFolder, read_json, safe_name
from engine.spec.case import Case

ENGINE_VERSION = "0.1.0"


@dataclass(frozen=True)
class Task:
    kind: str  # "nuts" | "smc" | "bridge" | "reweight"
    hid: str
    chain: int = 0
    variant: Variant | None = None

    @property
    def key(self) -> str:
        """File name stem inside the (variant's) run folder; also what the seed derives from."""
        return f"{self.kind}-{self.hid}-{self.chain}"

    @property
    def id(self) -> str:
        """Unique name of the task within a run (``<variant>/<key>`` for variants)."""
        return f"{self.variant.name}/{self.key}" if self.variant else self.key

    @property
    def ext(self) -> str:
        return "nc" if self.kind == "nuts" else "json"

    def folder(self, root: RunFolder) -> RunFolder:
        return variant_folder(root, self.variant.name) if self.variant else root

    def path(self, root: RunFolder) -> Path:
        return self.folder(root).task(self.key, self.ext)


def variant_folder(root: RunFolder, name: str) -> RunFolder:
    """The run folder of one variant: ``<run>/variants/<name>/`` with the base layout."""
    return RunFolder(root.root / "variants" / safe_name(name, "variant name"))


def plan(case: Case, settings: Settings, variants: tuple[Variant, ...] | list[Variant] = ()) -> list[Task]:
    """The tasks a run starts with: the base run, then per variant and hypothesis either a
    ``reweight`` task (whose result may add :func:`sampling_tasks`, see :func:`followups`) or,
    with ``variant_method = "sample"``, the sampling tasks themselves."""
    tasks = [t for hid in case.hypotheses for t in sampling_tasks(hid, None, settings)]
    for variant in variants:
        for hid in case.hypotheses:
            tasks += ([Task("reweight", hid, 0, variant)] if settings.variant_method == "reweight"
                      else sampling_tasks(hid, variant, settings))
    return tasks


def sampling_tasks(hid: str, variant: Variant | None, settings: Settings) -> list[Task]:
    """NUTS and SMC chains and bridge sampling of one hypothesis (in one variant)."""
    return ([Task("nuts", hid, c, variant) for c in range(settings.chains)]
            + [Task("smc", hid, c, variant) for c in range(settings.smc_chains)] + [Task("bridge", hid, 0, variant)])


def dependencies(task: Task, settings: Settings) -> list[Task]:
    """Tasks whose results ``task`` reads: bridge sampling its NUTS chains, reweighting the base run's,
    and a variant's NUTS chain the base run's too (it starts from them: ``engine.run.compiled.WarmStart``)."""
    if task.kind == "bridge":
        return [Task("nuts", task.hid, c, task.variant) for c in range(settings.chains)]
    if task.kind == "reweight" or (task.kind == "nuts" and task.variant is not None):
        return [Task("nuts", task.hid, c) for c in range(settings.chains)]
    return []


def followups(task: Task, folder: RunFolder, settings: Settings) -> list[Task]:
    """Tasks a finished task asks for: a reweighting whose weights are unreliable asks for its
    hypothesis to be sampled in that variant."""
    if task.kind != "reweight":
        return []
    result = read_json(task.path(folder))
    return [] if result.get("reliable") else sampling_tasks(task.hid, task.variant, settings)


def fingerprint(case: Case, settings: Settings, task: Task) -> str:
    """What a task's result depends on; a stored result with another fingerprint is stale.

    That is the case and its priors, the settings and seed, the task and its variant, and the
    code that computes it (the model, evidence families, estimators and samplers, and the
    versions of PyMC, PyTensor and NumPy): results made by other code are recomputed on resume.
    """
    blob = json.dumps({"case": case.digest, "settings": asdict(settings), "task": task.key,
                       "variant": task.variant.to_json() if task.variant else None, "code": code_digest()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 of the engine modules that determine a task's numbers, and of the numeric packages' versions."""
    from importlib.metadata import PackageNotFoundError, version

    pkg_root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(ENGINE_VERSION.encode())
    # every module a task's numbers depend on: the model, the evidence families, the samplers and estimators
    files = [pkg_root / "dists.py"] + sorted(f for d in ("evidence", "spec", "model", "inference", "run") for f in (pkg_root / d).glob("*.py"))
    for f in files:
        h.update(str(f.relative_to(pkg_root)).encode() + b"\0" + f.read_bytes())
    for pkg in ("pymc", "pytensor", "numpy", "scipy"):
        try:
            h.update(f"{pkg}={version(pkg)}".encode())
        except PackageNotFoundError:
            pass
    return h.hexdigest()[:16]

"""Compiled structures kept on disk (engine.run.compiled.StructureStore): a process that loads a
structure another process compiled samples bit-identically to one that compiles it itself; a bad
file is a miss, not an error; anything the model depends on changes the key."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

from conftest import CASES, ROOT

# One process: the oracle case's "internal" hypothesis through every function set a task uses
# (NUTS with its pointwise log-likelihood, an SMC chain, the vectorised log density); prints the
# numbers, how many sets it obtained and how many of those it loaded from the store.
SCRIPT = f"""
import json, warnings
import numpy as np
warnings.simplefilter("ignore")
from engine.run.compiled import StructureStore, compiled_for, ensure_compiledir, quiet
from engine.spec.case import load_case
ensure_compiledir(); quiet()
StructureStore.MIN_SECONDS = 0.0  # write after every set, however fast it built
case = load_case({str(CASES / "oracle.yaml")!r})
cm = compiled_for(case, "internal")
idata = cm.sample_nuts(draws=60, tune=60, seed=11, target_accept=0.9)
names = [v.name for v in cm.model.value_vars]
draws = np.concatenate([idata.posterior[n].values.reshape(60, -1) for n in names], axis=1)
ll = cm.pointwise_log_likelihood(idata.posterior)
smc = cm.sample_smc(draws=200, seed=5)
print(json.dumps({{"draws": draws.tolist(), "ll": {{k: v.tolist() for k, v in ll.items()}}, "smc": smc,
                  "logp": cm.log_density()(draws[:7]).tolist(), "compiles": cm.compiles, "loaded": cm.loaded}}))
"""


def _process(store: str) -> dict:
    env = {**os.environ, "INCIDENT_STRUCTURE_CACHE": store}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_loaded_structure_samples_bit_identically_and_a_corrupt_file_is_a_miss(tmp_path):
    from engine.run.compiled import StructureStore

    store = tmp_path / "store"
    first = _process(str(store))  # compiles all four function sets and writes the file
    (kept,) = list(store.glob("*.pkl.z"))
    assert first["compiles"] == 4 and first["loaded"] == 0
    second = _process(str(store))  # a fresh process: loads the four sets
    assert second["compiles"] == 4 and second["loaded"] == 4
    numbers = lambda r: {k: r[k] for k in ("draws", "ll", "smc", "logp")}  # noqa: E731
    assert numbers(second) == numbers(first)  # exact equality: the same floats

    kept.write_bytes(kept.read_bytes()[:1000])  # truncated (a full disk, a killed writer)
    third = _process(str(store))
    assert third["loaded"] == 0 and numbers(third) == numbers(first)
    assert StructureStore.load(kept).model.value_vars  # and rewritten whole


def test_the_key_follows_the_code_the_case_and_the_setting(monkeypatch, tmp_path):
    from engine.model.build import structure_key
    from engine.run.compiled import StructureStore
    from engine.spec.case import load_case

    case = load_case(CASES / "oracle.yaml")
    key = structure_key(case, "internal")
    monkeypatch.setenv("INCIDENT_STRUCTURE_CACHE", str(tmp_path))
    base = StructureStore.path(case, key)
    assert base.parent == tmp_path
    assert StructureStore.path(case, key) == base
    # hypotheses of one structure share it, as they share the compiled model in a process
    assert structure_key(case, "external") == key and StructureStore.path(case, structure_key(case, "external")) == base
    # a case changed in code keeps its digest (a simulated incident's observations, say): its content still counts
    assert StructureStore.path(dataclasses.replace(case, items=case.items[:-1]), key) != base
    assert StructureStore.path(dataclasses.replace(case, title="edited"), key) != base
    monkeypatch.setattr(StructureStore, "_code", "another engine version")
    assert StructureStore.path(case, key) != base
    monkeypatch.setenv("INCIDENT_STRUCTURE_CACHE", "0")
    assert StructureStore.path(case, key) is None

"""Sensitivity runs: the variants of ``engine.results.sensitivity.plan_variants`` added to a
finished run, executed as more tasks of the same run (the base tasks are complete and
skipped), and summarised into ``sensitivity.json``."""

from __future__ import annotations

from pathlib import Path

from engine.results.sensitivity import compile_tally, plan_variants, summarize
from engine.run.lifecycle import Progress, open_run, read_attribution, resume_run
from engine.run.plan import variant_folder
from engine.run.seeds import coincidence_seed
from engine.run.settings import ExecutionOptions
from engine.run.store import RunFolder, read_json, write_json


def run_sensitivity(run_dir: str | Path, *, options: ExecutionOptions | None = None, command: list[str] | None = None,
                    on_done: Progress | None = None) -> dict:
    """Add the sensitivity variants to a finished run, run them with ``options`` and write
    ``sensitivity.json``, with the tasks' compile tally (``execution``: per worker process,
    structure and task kind) from their summaries."""
    folder = RunFolder(Path(run_dir))
    case, settings, _, man = open_run(folder)
    variants = plan_variants(case)
    man["variants"] = {**(man.get("variants") or {}), **{n: v["overrides"] for n, v in variants.items()}}
    write_json(folder.manifest, man)
    summaries: list[dict] = []

    def progress(summary: dict, done: int, total: int) -> None:
        summaries.append(summary)
        if on_done is not None:
            on_done(summary, done, total)

    resume_run(folder.root, options=options, command=command, on_done=progress)
    results = {n: read_json(variant_folder(folder, n).attribution) for n in variants}
    seeds = {it.id: coincidence_seed(settings.seed, it.id) for it in case.items}
    out = summarize(case, read_attribution(folder.root), variants, results, coincidence_seeds=seeds)
    out["execution"] = {"computed": sum(1 for s in summaries if not s.get("skipped")), "by_process": compile_tally(summaries)}
    # how each (variant, hypothesis) was estimated: importance reweighting of the base draws, or sampled
    methods = [h.get("method", "sampled") for r in results.values() for h in r["hypotheses"].values()]
    out["methods"] = {m: methods.count(m) for m in ("reweighted", "sampled")}
    write_json(folder.root / "sensitivity.json", out)
    from engine.run.verify import record_outputs

    write_json(folder.manifest, record_outputs(folder, read_json(folder.manifest)))  # sensitivity.json is a result too
    return out

"""Score the engine on the resolved-incident benchmark (issue 15).

    .venv/bin/python benchmarks/incidents.py [--workers 2] [--out runs/incidents] [--seed 1]
        [--draws N --tune N --chains N --smc-draws N --smc-chains N] [--only CASE_ID ...]
        [--no-physical]

For every case in ``benchmarks/incidents/*.yaml`` (the established cause is in
``benchmarks/incidents/answers.yaml``, never in the case):

1. runs the engine through its CLI, as a subprocess, so the scorer does not depend on the
   engine's internals: ``incident run CASE --seed N --out OUT --run-id full --workers W --json``;
   then ``incident diagnose RUN --json`` for the verdict;
2. runs a PHYSICAL-ONLY variant: a derived case file, written to ``OUT/derived/<case>.physical.yaml``,
   with the ``claim`` and ``elicited`` items removed and the sources nobody cites any more dropped
   (groups keep only the surviving items); run id ``physical``.

Resumable: an incident whose run folder already holds ``attribution.json`` is not run again; a run
folder without it (an interrupted run) is continued with ``incident run --resume``.

Prints per incident the established cause, its posterior and rank, the leader and the diagnostics
verdict (full record and physical only); then, for each variant, the top-1 rate, the mean log score
(natural log of the established cause's posterior) against the prior's, the multi-class Brier score
against the prior's, and the number of incidents where a wrong cause got more than 0.9. Writes
``OUT/summary.json`` and a reliability diagram ``OUT/reliability.pdf``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "benchmarks" / "incidents"
ANSWERS = CASES / "answers.yaml"
# The engine's CLI, run by this interpreter from ROOT (so ``engine`` is this checkout's, as with PYTHONPATH).
INCIDENT = (sys.executable, "-m", "engine.cli")
# Families of physical findings (kept in the physical-only variant) and of statements and judgements
# (left out). A constant, not read from engine.evidence.REGISTRY: the scorer runs the engine only through
# its CLI. tests/test_incident_benchmark.py checks that every registered family is in exactly one.
PHYSICAL_FAMILIES = ("perforations", "fragments", "timing", "interval", "presence", "damage_map")
STATEMENT_FAMILIES = ("claim", "elicited")
VARIANTS = ("full", "physical")


def load_answers() -> dict[str, dict]:
    return yaml.safe_load(ANSWERS.read_text(encoding="utf-8"))["answers"]


def case_files(only: list[str] | None) -> list[Path]:
    files = sorted(p for p in CASES.glob("*.yaml") if p.name != ANSWERS.name)
    if only:
        files = [p for p in files if yaml.safe_load(p.read_text(encoding="utf-8"))["case"]["id"] in only]
    return files


def physical_case(case: dict) -> dict | None:
    """The case with claim and elicited items removed and its sources kept consistent; None if no
    physical item is left. A kept item that restates a removed one loses its ``restates`` (it is then
    a report of its own: the fact it repeats is no longer in the case)."""
    out = json.loads(json.dumps(case, default=str))  # deep copy, dates as strings
    out["evidence"] = [e for e in out["evidence"] if e["family"] in PHYSICAL_FAMILIES]
    if not out["evidence"]:
        return None
    kept = {e["id"] for e in out["evidence"]}
    for e in out["evidence"]:
        if e.get("restates") is not None and e["restates"] not in kept:
            del e["restates"]
    used = {e["source"] for e in out["evidence"]}
    out["sources"] = [s for s in case["sources"] if s["id"] in used]
    # a group that lost all its other members is harmless; nothing to rewrite
    out["case"] = dict(out["case"])
    out["case"]["description"] = (str(case["case"].get("description", "")).strip()
                                  + " [physical-only variant: claim and elicited items removed]")
    return out


def run_folder(out: Path, case_id: str, run_id: str) -> Path:
    return out / case_id / run_id


def run_engine(case_file: Path, out: Path, case_id: str, run_id: str, args: argparse.Namespace, log) -> dict:
    """Run (or resume, or skip) one engine run; return {'attribution', 'diagnostics', 'error', 'seconds'}."""
    folder = run_folder(out, case_id, run_id)
    rec: dict = {"run": str(folder), "error": None, "seconds": 0.0, "skipped": False}
    settings = []
    for opt in ("draws", "tune", "chains", "smc_draws", "smc_chains"):
        val = getattr(args, opt)
        if val is not None:
            settings += [f"--{opt.replace('_', '-')}", str(val)]
    if (folder / "attribution.json").exists():
        rec["skipped"] = True
    else:
        if folder.exists():
            cmd = [*INCIDENT, "run", "--resume", str(folder), "--workers", str(args.workers), "--json"]
        else:
            cmd = [*INCIDENT, "run", str(case_file), "--seed", str(args.seed), "--out", str(out),
                   "--run-id", run_id, "--workers", str(args.workers), "--json", *settings]
        t0 = time.time()
        log(f"  $ {' '.join(cmd)}")
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        rec["seconds"] = round(time.time() - t0, 1)
        if proc.returncode != 0 or not (folder / "attribution.json").exists():
            rec["error"] = f"incident run exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-800:]}"
            return rec
    rec["attribution"] = json.loads((folder / "attribution.json").read_text(encoding="utf-8"))
    proc = subprocess.run([*INCIDENT, "diagnose", str(folder), "--json"], capture_output=True, text=True, cwd=ROOT)
    try:
        rec["diagnostics"] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        rec["diagnostics"] = None
        rec["error"] = f"incident diagnose exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-400:]}"
    return rec


def score_one(attribution: dict, established: str) -> dict:
    hyps = attribution["hypotheses"]
    post = {h: float(v["posterior"]) for h, v in hyps.items()}
    prior = {h: float(v["prior"]) for h, v in hyps.items()}
    zp = sum(prior.values()) or 1.0
    prior = {h: p / zp for h, p in prior.items()}
    p_true = post.get(established, 0.0)
    rank = 1 + sum(1 for h, p in post.items() if p > p_true)
    leader = max(post, key=post.get)
    eps = 1e-12
    wrong_max = max((p for h, p in post.items() if h != established), default=0.0)
    return {
        "established": established,
        "posterior": p_true,
        "rank": rank,
        "n_hypotheses": len(post),
        "leader": leader,
        "leader_posterior": post[leader],
        "top1": rank == 1 and leader == established,
        "log_score": math.log(max(p_true, eps)),
        "prior_log_score": math.log(max(prior.get(established, 0.0), eps)),
        "brier": sum((p - (h == established)) ** 2 for h, p in post.items()),
        "prior_brier": sum((p - (h == established)) ** 2 for h, p in prior.items()),
        "confidently_wrong": wrong_max > 0.9,
        "wrong_max": wrong_max,
        "posteriors": post,
        "priors": prior,
    }


def summarise(scores: list[dict]) -> dict:
    n = len(scores)
    if n == 0:
        return {"n": 0}
    mean = lambda k: sum(s[k] for s in scores) / n  # noqa: E731
    return {
        "n": n,
        "top1_rate": sum(s["top1"] for s in scores) / n,
        "mean_log_score": mean("log_score"),
        "prior_mean_log_score": mean("prior_log_score"),
        "brier": mean("brier"),
        "prior_brier": mean("prior_brier"),
        "confidently_wrong": sum(s["confidently_wrong"] for s in scores),
    }


def reliability_pdf(path: Path, per_variant: dict[str, list[dict]], bins: int = 5) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(per_variant), figsize=(4.2 * len(per_variant), 4.2), squeeze=False)
    for ax, (variant, scores) in zip(axes[0], per_variant.items(), strict=False):
        pairs = [(p, h == s["established"]) for s in scores for h, p in s["posteriors"].items()]
        edges = [i / bins for i in range(bins + 1)]
        xs, ys, ns = [], [], []
        for lo, hi in zip(edges[:-1], edges[1:], strict=False):
            sel = [(p, y) for p, y in pairs if lo <= p < hi or (hi == 1.0 and p == 1.0)]
            if sel:
                xs.append(sum(p for p, _ in sel) / len(sel))
                ys.append(sum(y for _, y in sel) / len(sel))
                ns.append(len(sel))
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
        ax.plot(xs, ys, marker="o", color="black", lw=1)
        for x, y, k in zip(xs, ys, ns, strict=False):
            ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("posterior probability (bin mean)")
        ax.set_ylabel("share that is the established cause")
        ax.set_title(f"{'full record' if variant == 'full' else 'physical evidence only'} "
                     f"({len(scores)} incidents)", fontsize=9)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.suptitle("Resolved incidents: reliability of the attribution", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fmt_p(x: float | None) -> str:
    return "  -  " if x is None else f"{x:5.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "incidents")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--draws", type=int)
    ap.add_argument("--tune", type=int)
    ap.add_argument("--chains", type=int)
    ap.add_argument("--smc-draws", dest="smc_draws", type=int)
    ap.add_argument("--smc-chains", dest="smc_chains", type=int)
    ap.add_argument("--only", nargs="*", help="case ids to run (default: all)")
    ap.add_argument("--no-physical", action="store_true", help="skip the physical-only variant")
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "derived").mkdir(exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    answers = load_answers()
    files = case_files(args.only)
    if not files:
        log("no case matched")
        return 2
    records: dict[str, dict] = {}
    for cf in files:
        case = yaml.safe_load(cf.read_text(encoding="utf-8"))
        cid = case["case"]["id"]
        if cid not in answers:
            log(f"{cid}: no entry in answers.yaml, skipped")
            continue
        established = answers[cid]["established"]
        rec = {"case": cid, "file": str(cf.relative_to(ROOT)), "established": established,
               "finding_source": answers[cid].get("source", ""),
               "n_items": len(case["evidence"]),
               "n_physical": sum(e["family"] in PHYSICAL_FAMILIES for e in case["evidence"])}
        log(f"{cid}: full record")
        runs = {"full": run_engine(cf, out, cid, "full", args, log)}
        if not args.no_physical:
            phys = physical_case(case)
            if phys is None:
                runs["physical"] = {"error": "no physical item", "run": None}
            else:
                pf = out / "derived" / f"{cid}.physical.yaml"
                text = yaml.safe_dump(phys, sort_keys=False, allow_unicode=True)
                if not pf.exists() or pf.read_text(encoding="utf-8") != text:
                    pf.write_text(text, encoding="utf-8")
                log(f"{cid}: physical evidence only")
                runs["physical"] = run_engine(pf, out, cid, "physical", args, log)
        for r in runs.values():
            if r.get("attribution"):
                r["score"] = score_one(r["attribution"], established)
            r["verdict"] = (r.get("diagnostics") or {}).get("verdict")
            r.pop("attribution", None)
            r.pop("diagnostics", None)
        rec["runs"] = runs
        records[cid] = rec

    # ---------------------------------------------------------------- per-incident table
    header = (f"{'incident':22} {'established':20} | {'P(est)':>6} {'rank':>4} {'leader':20} {'verdict':7}"
              f" | {'phys P':>6} {'rank':>4} {'phys leader':20} {'verdict':7}")
    print(header)
    print("-" * len(header))
    for cid, rec in records.items():
        cells = []
        for variant in VARIANTS:
            r = rec["runs"].get(variant)
            s = (r or {}).get("score")
            if s:
                cells.append(f"{fmt_p(s['posterior']):>6} {s['rank']:>2}/{s['n_hypotheses']:<1} "
                             f"{s['leader'][:20]:20} {str(r.get('verdict'))[:7]:7}")
            else:
                err = (r or {}).get("error") or "not run"
                cells.append(f"{'ERROR: ' + err.splitlines()[0] if err else '':<41.41}")
        print(f"{cid:22} {rec['established'][:20]:20} | {cells[0]} | {cells[1] if len(cells) > 1 else ''}")

    # ---------------------------------------------------------------- overall
    summary = {"settings": {k: getattr(args, k) for k in ("seed", "workers", "draws", "tune", "chains",
                                                            "smc_draws", "smc_chains")},
               "incidents": records, "overall": {}}
    per_variant: dict[str, list[dict]] = {}
    for variant in VARIANTS:
        scores = [rec["runs"][variant]["score"] for rec in records.values()
                  if variant in rec["runs"] and rec["runs"][variant].get("score")]
        per_variant[variant] = scores
        o = summarise(scores)
        o["failed_or_missing"] = sum(1 for rec in records.values()
                                     if variant in rec["runs"] and not rec["runs"][variant].get("score"))
        summary["overall"][variant] = o
        if not scores:
            continue
        label = "full record" if variant == "full" else "physical evidence only"
        print(f"\n{label}: {o['n']} incidents scored ({o['failed_or_missing']} failed or missing)")
        print(f"  top-1 rate            {o['top1_rate']:.2f}  ({round(o['top1_rate'] * o['n'])}/{o['n']})")
        print(f"  mean log score        {o['mean_log_score']:.3f}   (prior's {o['prior_mean_log_score']:.3f})")
        print(f"  Brier (multi-class)   {o['brier']:.3f}   (prior's {o['prior_brier']:.3f})")
        print(f"  wrong cause > 0.9     {o['confidently_wrong']}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    if any(per_variant.values()):
        reliability_pdf(out / "reliability.pdf", {k: v for k, v in per_variant.items() if v})
    print(f"\nwrote {out / 'summary.json'}" + (f" and {out / 'reliability.pdf'}" if any(per_variant.values()) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

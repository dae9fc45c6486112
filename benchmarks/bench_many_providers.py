"""The general model past the provider counts it was trained on: the shortlist against deciding among all.

The bundled teacher and student were trained on markets of 2-12 providers. With more, the one-pass decides each
task among the `decode.SHORTLIST` (12) providers that would finish it first (`kernel.earliest_finishers`). This
benchmark runs, on the same held-out instances in the same process (`paper`, `varied` and `alibaba`):

- the one-pass with the shortlist (the product up to 24 providers) and with every provider a candidate (what
  it was before);
- the one-pass with the shortlist and a zero static embedding (`E = 0`: the dynamic head alone, without the
  encoders, whose inputs carry the market's size: the product past 24 providers);
- greedy, and the rollout prior (the same pilots with the learned correction switched off: `Head.rollout_prior`
  with the bundle's pilot and look-ahead, shortlisted too), the control that isolates what the model adds;

and reports each as a ratio to greedy [95 % interval], the paired gain of the shortlist over all-candidates, and
the one-pass's CPU time. Instances: seed 5000 + K by default (never used to train); the rule for E = 0 (past
24 providers) was chosen on those, so `--seed 6000` is the run that checks it on instances nothing chose on.

    python benchmarks/bench_many_providers.py                    # about 12 minutes on one core
    python benchmarks/bench_many_providers.py --count 2 --providers 16,40 --tasks 300   # a smoke run
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numba as nb
import numpy as np

import edgepoc.models.general.decode as decode
from edgepoc.experiments.stats import mean_interval
from edgepoc.game.generators import alibaba, paper, varied
from edgepoc.game.kernel import greedy_assignment, simulate
from edgepoc.models.general.portable import load_portable
from benchmain import bench_main

RESULTS = Path(__file__).parent / "results"
FAMILIES = {"paper": paper, "varied": varied, "alibaba": alibaba}
HELD_OUT = 5000
SHORTLIST = decode.SHORTLIST  # the product's width, restored after every decode with another


@dataclass
class BenchConfig:
    providers: str = "16,24,32,64,127"
    families: str = "paper,varied,alibaba"
    count: int = 8
    tasks: int = 1000
    seed: int = HELD_OUT  # instances of seed `seed + K`


def _onepass(inst, emb, head, width: int) -> tuple[float, float]:
    """(total delay, CPU seconds) of one one-pass decode with shortlist width `width`."""
    decode.SHORTLIST = width
    try:
        t0 = time.process_time()
        x, _, _ = decode.onepass(inst, emb, head)
        cpu = time.process_time() - t0
    finally:
        decode.SHORTLIST = SHORTLIST
    return float(simulate(inst, x)), cpu


def run(cfg: BenchConfig) -> dict:
    nb.set_num_threads(1)
    models = {kind: load_portable(None, kind) for kind in ("teacher", "student")}
    heads = {kind: m.head() for kind, m in models.items()}
    warm = paper(HELD_OUT, 0, n_tasks=30, providers=16)  # compile both paths before any clock starts
    for kind, m in models.items():
        for width in (SHORTLIST, 10**6):
            _onepass(warm, m.embed(warm), heads[kind], width)
    rows = []
    for fam in cfg.families.split(","):
        for k in (int(v) for v in cfg.providers.split(",")):
            for i in range(cfg.count):
                inst = FAMILIES[fam](cfg.seed + k, i, n_tasks=cfg.tasks, providers=k)
                greedy = float(greedy_assignment(inst)[1])
                row = {"family": fam, "providers": k, "instance": inst.name, "greedy": greedy}
                for kind, m in models.items():
                    emb = m.embed(inst)
                    h = heads[kind]
                    row[f"{kind}_short"], row[f"{kind}_short_cpu"] = _onepass(inst, emb, h, SHORTLIST)
                    row[f"{kind}_all"], row[f"{kind}_all_cpu"] = _onepass(inst, emb, h, 10**6)
                    row[f"{kind}_dyn"], _ = _onepass(inst, np.zeros_like(emb), h, SHORTLIST)
                h = heads["teacher"]
                prior = dataclasses.replace(decode.Head.rollout_prior(h.b.shape[0], h.horizon), pilot=h.pilot)
                row["prior"], _ = _onepass(inst, np.zeros((inst.n_tasks, k, h.b.shape[0])), prior, SHORTLIST)
                rows.append(row)
                print(f"{fam:8s} K={k:3d} {inst.name:22s} teacher {row['teacher_short'] / greedy:.3f} "
                      f"(all {row['teacher_all'] / greedy:.3f})  student {row['student_short'] / greedy:.3f} "
                      f"(all {row['student_all'] / greedy:.3f})  prior {row['prior'] / greedy:.3f}  "
                      f"E=0: teacher {row['teacher_dyn'] / greedy:.3f} student {row['student_dyn'] / greedy:.3f}  x greedy",
                      flush=True)
    return {"config": {**asdict(cfg), "shortlist": SHORTLIST, "embedding_max_providers": decode.EMBEDDING_MAX_PROVIDERS,
                       "instances": f"seed {cfg.seed} + K"},
            "machine": {"python": platform.python_version(), "cpu": platform.processor()}, "rows": rows}


def report(doc: dict, rows_file: str = "many-providers.json") -> str:
    seed = doc["config"].get("seed", HELD_OUT)
    lines = ["# The general model past its trained provider counts (2-12): shortlist vs every provider",
             "", f"`python benchmarks/bench_many_providers.py --seed {seed} --count {doc['config']['count']} --providers "
             f"{doc['config']['providers']} --out benchmarks/results/{Path(rows_file).stem}.md` (config "
             f"and rows in {rows_file} beside this file). {doc['config']['count']} held-out instances per row, "
             f"{doc['config']['tasks']} tasks; one-pass decodes; instances of seed {seed} + K; each cell is the mean ratio to greedy [95 % interval] (below 1: better than greedy). "
             "`gain`: paired gain of the shortlist over deciding among every provider. `prior`: the rollout prior "
             "(the learned correction off), shortlisted. `E = 0`: the shortlisted one-pass with a zero static embedding "
             "(the dynamic head alone), what `solve` runs past "
             f"{doc['config'].get('embedding_max_providers', 24)} providers.", "",
             "| family | K | teacher | teacher, all K | gain | student | student, all K | gain | prior | "
             "teacher, E = 0 | student, E = 0 | teacher CPU ms (all K) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by: dict[tuple, list[dict]] = {}
    for r in doc["rows"]:
        by.setdefault((r["family"], r["providers"]), []).append(r)

    def cell(rs, key):
        return mean_interval([r[key] / r["greedy"] for r in rs]).fmt(".3f")

    def gain(rs, kind):
        return mean_interval([100 * (r[f"{kind}_all"] / r[f"{kind}_short"] - 1) for r in rs]).fmt("+.1f", " %")

    for (fam, k), rs in by.items():
        cpu = f"{1000 * np.median([r['teacher_short_cpu'] for r in rs]):.0f} " \
              f"({1000 * np.median([r['teacher_all_cpu'] for r in rs]):.0f})"
        lines.append(f"| {fam} | {k} | {cell(rs, 'teacher_short')} | {cell(rs, 'teacher_all')} | {gain(rs, 'teacher')} "
                     f"| {cell(rs, 'student_short')} | {cell(rs, 'student_all')} | {gain(rs, 'student')} | "
                     f"{cell(rs, 'prior')} | {cell(rs, 'teacher_dyn')} | {cell(rs, 'student_dyn')} | {cpu} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    bench_main(__doc__.splitlines()[0], BenchConfig, run, report, RESULTS / "many-providers.md")


if __name__ == "__main__":
    main()

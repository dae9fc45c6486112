"""RL baselines on the paper's setting: 10 held-out `paper` instances (1000 tasks, 3 providers unless asked, load 0.9).

Total delay of random, round-robin, greedy, DQN and MADDPG (the bundled checkpoints unless
--dqn-model / --maddpg-model are given), each as a ratio to greedy's delay on the same instance in
this run, and the wall time per instance. The instances (seed 0, indices 0-9) are held out: DQN trains
on seed 1000+s and MADDPG on 2000+s, and both validate on seeds >= 500000. Targets (issue 6): DQN
and MADDPG each beat round-robin and are within 10% of greedy (mean ratio <= 1.10).

    python benchmarks/bench_rl.py                 # about a minute; writes benchmarks/results/rl.md + rl.json
    python benchmarks/bench_rl.py --instances 2   # a smoke run
    python benchmarks/bench_rl.py --providers 5   # the bundled 5-provider checkpoints -> results/rl-k5.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import numba
import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress

from edgepoc.game.generators import generate
from edgepoc.solvers.registry import SolveOptions, solve
from edgepoc.solvers.rl.common import bundled_checkpoint, load_checkpoint


@dataclass
class BenchConfig:
    instances: int = 10
    seed: int = 0
    n_tasks: int = 1000
    providers: int = 3
    load: float = 0.9
    random_seed: int = 0
    dqn_model: str | None = None  # None: the bundled checkpoint
    maddpg_model: str | None = None


def checkpoint_record(path: str | None, algo: str, fmt: str, n_providers: int) -> dict:
    """Where a checkpoint came from: its file, digest, training step, validation score and config."""
    p = Path(path) if path else bundled_checkpoint(algo, n_providers)
    doc = load_checkpoint(p, algo, fmt)
    return {"path": str(p) if path else f"bundled {p.name}", "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "bytes": p.stat().st_size, "step": doc.get("step"), "val_ratio_to_greedy": doc.get("val_ratio_to_greedy"),
            "config": doc.get("config")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--providers", type=int, default=3, help="providers per instance (the bundled checkpoints for it)")
    ap.add_argument("--dqn-model", default=None, help="DQN checkpoint (default: bundled)")
    ap.add_argument("--maddpg-model", default=None, help="MADDPG checkpoint (default: bundled)")
    ap.add_argument("--out", type=Path, default=None, help="default: results/rl.md (3 providers), else rl-kK.md")
    args = ap.parse_args()
    if args.out is None:
        args.out = Path(__file__).parent / "results" / ("rl.md" if args.providers == 3 else f"rl-k{args.providers}.md")
    cfg = BenchConfig(instances=args.instances, seed=args.seed, providers=args.providers, dqn_model=args.dqn_model,
                      maddpg_model=args.maddpg_model)
    numba.set_num_threads(1)
    torch.set_num_threads(1)  # the policies are tiny MLPs evaluated one task at a time

    from edgepoc.solvers.rl import dqn, maddpg

    models = {"dqn": checkpoint_record(cfg.dqn_model, "dqn", dqn.FORMAT, cfg.providers),
              "maddpg": checkpoint_record(cfg.maddpg_model, "maddpg", maddpg.FORMAT, cfg.providers)}
    runs = [("random", "random", SolveOptions(seed=cfg.random_seed)), ("round-robin", "round-robin", SolveOptions()),
            ("greedy", "greedy", SolveOptions()), ("DQN", "dqn", SolveOptions(model=cfg.dqn_model)),
            ("MADDPG", "maddpg", SolveOptions(model=cfg.maddpg_model))]
    insts = generate("paper", seed=cfg.seed, count=cfg.instances, n_tasks=cfg.n_tasks, load=cfg.load,
                     providers=cfg.providers)
    warm = generate("paper", seed=99, n_tasks=50, providers=cfg.providers)[0]
    for _, method, opt in runs:  # compile kernels and load checkpoints outside the timings
        solve(warm, method, opt)
    totals = np.zeros((len(insts), len(runs)))
    walls = np.zeros_like(totals)
    with Progress(console=Console(stderr=True)) as bar:
        task = bar.add_task("solving", total=len(insts) * len(runs))
        for i, inst in enumerate(insts):
            for j, (_, method, opt) in enumerate(runs):
                res = solve(inst, method, opt)
                totals[i, j], walls[i, j] = res.total_latency, res.seconds
                bar.advance(task)
    names = [r[0] for r in runs]
    col = {n: j for j, n in enumerate(names)}
    ratio = totals / totals[:, [col["greedy"]]]
    mean_ratio = ratio.mean(axis=0)
    checks = {}
    for name in ("DQN", "MADDPG"):
        j = col[name]
        beats_rr = bool(mean_ratio[j] < mean_ratio[col["round-robin"]])
        within = bool(mean_ratio[j] <= 1.10)
        checks[name] = {"mean_ratio_to_greedy": float(mean_ratio[j]), "beats_round_robin": beats_rr,
                        "within_10pct_of_greedy": within,
                        "instances_better_than_greedy": int(np.sum(ratio[:, j] < 1.0))}

    lines = [f"# RL baselines on held-out `paper` instances ({cfg.instances} instances, seed {cfg.seed}, "
             f"{cfg.n_tasks} tasks, {cfg.providers} providers, load {cfg.load}, one thread, {platform.machine()})", "",
             "| method | mean total delay | mean ratio to greedy | best ratio | worst ratio | mean wall s |",
             "|---|---:|---:|---:|---:|---:|"]
    for j, name in enumerate(names):
        lines.append(f"| {name} | {totals[:, j].mean():.2f} | {mean_ratio[j]:.4f} | {ratio[:, j].min():.4f} | "
                     f"{ratio[:, j].max():.4f} | {walls[:, j].mean():.3f} |")
    lines += ["", "| instance | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for i, inst in enumerate(insts):
        lines.append(f"| {inst.name} | " + " | ".join(f"{t:.2f}" for t in totals[i]) + " |")
    lines.append("")
    for name, c in checks.items():
        lines.append(f"{name}: mean ratio to greedy {c['mean_ratio_to_greedy']:.4f}; beats round-robin "
                     f"({mean_ratio[col['round-robin']]:.4f}): {'met' if c['beats_round_robin'] else 'missed'}; "
                     f"within 10% of greedy: {'met' if c['within_10pct_of_greedy'] else 'missed'}; "
                     f"better than greedy on {c['instances_better_than_greedy']}/{cfg.instances} instances.")
    lines.append("")
    for algo, m in models.items():
        lines.append(f"{algo} checkpoint: {m['path']} ({m['bytes']} bytes, sha256 {m['sha256'][:12]}), "
                     f"step {m['step']}, validation ratio to greedy {m['val_ratio_to_greedy']:.4f}.")
    text = "\n".join(lines).rstrip() + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps({
        "config": asdict(cfg), "models": models, "methods": names,
        "command": "python benchmarks/bench_rl.py" + ("" if cfg.providers == 3 else f" --providers {cfg.providers}"),
        "instances": [i.name for i in insts], "total_latency": totals.tolist(), "wall_seconds": walls.tolist(),
        "ratio_to_greedy": ratio.tolist(), "checks": checks,
    }, indent=1) + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()

"""PoC chain throughput and finality on loopback: 4, 7 and 10 nodes as real processes.

For each network size: a fresh testnet (free ports, greedy/student allocator as configured), a
warm-up, then an open-loop client offering `--rate` signed tasks per second for `--seconds`,
in batches spread round-robin over the nodes. Reported: committed tasks per second (committed
tasks / time from the first submit to the last commit) and submit-to-commit latency p50/p95
(commit time = when node0 stored the block; one machine, one clock). The baseline is the 4-node
network measured in the same run. Targets (issue 7): 4 nodes >= 1000 tasks/s, p50 <= 1 s;
10 nodes >= half the 4-node throughput.

    python benchmarks/bench_chain.py [--nodes 4 7 10] [--rate 1500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import Progress

from edgepoc.chain import network
from edgepoc.chain.client import random_tasks, submit, wait_committed
from edgepoc.chain.crypto import SigningKey
from edgepoc.chain.httpapi import HttpClient

RESULTS = Path(__file__).parent / "results"


@dataclass
class BenchConfig:
    nodes: list[int] = field(default_factory=lambda: [4, 7, 10])
    rate: float = 1500.0  # offered tasks per second
    seconds: float = 10.0
    batch: int = 100  # tasks per request
    max_block_tasks: int = 2000
    timeout_commit: float = 0.05
    allocator: str = "auto"
    seed: int = 0


def run_one(cfg: BenchConfig, n: int, progress: Progress) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-chain-{n}-") as tmp:
        folder = Path(tmp) / "net"
        params = {"max_block_tasks": cfg.max_block_tasks, "timeout_commit": cfg.timeout_commit,
                  "allocator": cfg.allocator, "timeout_propose": 1.0, "empty_block_interval": 0.5}
        doc = network.init_network(folder, n, 0, seed=cfg.seed, params=params)
        genesis_time = json.loads((folder / "genesis.json").read_text())["genesis_time"]
        key = SigningKey.load(folder / "client_key.json")
        try:
            network.up(folder)
            network.wait_ready(folder, 120)
            clients = [HttpClient(nd["api"], timeout=30) for nd in doc["nodes"]]
            warm = random_tasks(200, 2, key, doc["chain_id"], time.time() - genesis_time, 10**9, seed=1)
            ids, _ = submit(clients[0], warm)
            wait_committed(clients[0], ids, 60)

            total = int(cfg.rate * cfg.seconds)
            n_batches = max(1, total // cfg.batch)
            t_start = time.time() + 0.5
            # pre-sign every batch with the arrival time at which it will be sent (signing is the client's cost)
            batches = [random_tasks(cfg.batch, 2, key, doc["chain_id"], t_start + b * cfg.batch / cfg.rate - genesis_time,
                                    b * cfg.batch, seed=cfg.seed + b) for b in range(n_batches)]
            sent: list[tuple[float, list[str]]] = []
            lock = threading.Lock()
            job = progress.add_task(f"{n} nodes: submitting", total=n_batches)

            def sender(worker: int, n_workers: int) -> None:
                for b in range(worker, n_batches, n_workers):
                    delay = t_start + b * cfg.batch / cfg.rate - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    t0 = time.time()
                    ids, rejected = submit(clients[b % n], batches[b], cfg.batch)
                    with lock:
                        sent.append((t0, ids))
                    progress.advance(job)

            threads = [threading.Thread(target=sender, args=(w, min(n, 4))) for w in range(min(n, 4))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            all_ids = [i for _, ids in sent for i in ids]
            res = wait_committed(HttpClient(doc["nodes"][0]["api"], timeout=30), all_ids, timeout=120, poll=0.2)
            latencies, commit_times = [], []
            for t0, ids in sent:
                for i in ids:
                    st = res.committed.get(i)
                    if st and "committed_at" in st:
                        latencies.append(st["committed_at"] - t0)
                        commit_times.append(st["committed_at"])
            first = min(t0 for t0, _ in sent)
            span = max(commit_times) - first if commit_times else float("nan")
            status = network.status(folder)
            height = max(r.get("height", 0) for r in status)
            lat = np.array(latencies) if latencies else np.array([np.nan])
            return {"nodes": n, "offered_per_s": cfg.rate, "submitted": len(all_ids), "committed": len(res.committed),
                    "lost": len(res.missing), "tasks_per_s": len(res.committed) / span, "p50_s": float(np.percentile(lat, 50)),
                    "p95_s": float(np.percentile(lat, 95)), "height": height,
                    "allocator": ",".join(sorted({str(r.get("allocator", "?")) for r in status})),
                    "tasks_per_block": len(res.committed) / max(1, len({s["height"] for s in res.committed.values()}))}
        finally:
            network.down(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[4, 7, 10])
    ap.add_argument("--rate", type=float, default=1500.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--allocator", default="auto")
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_chain.md")
    args = ap.parse_args()
    cfg = BenchConfig(nodes=args.nodes, rate=args.rate, seconds=args.seconds, batch=args.batch, allocator=args.allocator)
    rows = []
    with Progress(transient=True) as progress:
        for n in cfg.nodes:
            rows.append(run_one(cfg, n, progress))
    base = rows[0]["tasks_per_s"]
    lines = [f"# PoC chain on loopback ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
             f"{time.strftime('%Y-%m-%d')})", "",
             f"Offered load {cfg.rate:.0f} tasks/s for {cfg.seconds:.0f} s, {cfg.batch} tasks per request; "
             f"allocator {cfg.allocator} (the bundled student where one fits the provider count, else greedy); baseline = the {rows[0]['nodes']}-node network of this run.", "",
             "| nodes | nodes allocate with | committed tasks/s | vs baseline | p50 finality (s) | p95 finality (s) | committed | lost | tasks/block |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['nodes']} | {r['allocator']} | {r['tasks_per_s']:.0f} | {r['tasks_per_s'] / base:.2f}x | {r['p50_s']:.3f} | "
                     f"{r['p95_s']:.3f} | {r['committed']}/{r['submitted']} | {r['lost']} | {r['tasks_per_block']:.0f} |")
    four = next((r for r in rows if r["nodes"] == 4), None)
    ten = next((r for r in rows if r["nodes"] == 10), None)
    lines.append("")
    targets = []
    if four:
        targets.append(f"4 nodes >= 1000 tasks/s: {'met' if four['tasks_per_s'] >= 1000 else 'MISSED'} "
                       f"({four['tasks_per_s']:.0f}); 4-node p50 <= 1 s: {'met' if four['p50_s'] <= 1 else 'MISSED'} "
                       f"({four['p50_s']:.3f} s)")
    if four and ten:
        ratio = ten["tasks_per_s"] / four["tasks_per_s"]
        targets.append(f"10 nodes >= half of 4: {'met' if ratio >= 0.5 else 'MISSED'} ({ratio:.2f}x)")
    if targets:
        lines.append("Targets: " + "; ".join(targets) + ".")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"config": asdict(cfg), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())

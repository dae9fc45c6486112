"""PoC chain across network namespaces with 20 ms link delay vs the same network on loopback (root).

The baseline, measured in the same run: bench_chain.py's 4-node CometBFT network on loopback and its
offered-load ramp. Then the same 4 nodes as 4 "hosts" (tests/chain/netns.py: one network namespace
each, every host's frames delayed 20 ms, 40 ms round trip; tc netem where the kernel has it, else a
user-space delay switch), set up with `network init --hosts` and started from their bundles inside
their namespaces, under the same ramp. Reported: committed tasks/s, submit-to-commit p50/p95 per level,
the saturation throughput (best committed tasks/s before p95 passes 2 s), and its ratio to loopback.

    sudo python benchmarks/bench_chain_netns.py [--rates 1500 3000 6000 10000] [--seconds 6] [--delay-ms 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


from bench_chain import P95_LIMIT, RESULTS, BenchConfig, Engine, bound_of, ramp, run_engine  # noqa: E402
from edgepoc.chain.httpapi import HttpClient  # noqa: E402
from tests.chain.netns import NetnsLab, remove_stale, unavailable  # noqa: E402


class NetnsEngine(Engine):
    """The same engine, each node in its own namespace, run from its host's bundle."""

    name = "cometbft-netns"

    def __init__(self, lab: NetnsLab):
        super().__init__()
        self.lab = lab
        self.bundles: dict[str, Path] = {}

    def init(self, folder: Path, n: int, cfg: BenchConfig) -> dict:
        params = {"max_block_tasks": cfg.max_block_tasks, "allocator": cfg.allocator, "timeout_commit": 0.05,
                  "timeout_propose": 2.0, "timeout_prevote": 0.5, "timeout_precommit": 0.5, "timeout_delta": 0.25,
                  "max_batch_tasks": 2000}
        doc = self.network.init_network(folder, n, 26600, seed=cfg.seed, params=params, hosts=self.lab.ips[:n])
        self.bundles = {nd["name"]: folder / "hosts" / nd["host"] for nd in doc["nodes"]}
        return doc

    def start(self, folder: Path, doc: dict) -> None:
        ips = self.lab.ips
        members = [("arbiter", 0)] + [(nd["name"], ips.index(nd["host"])) for nd in doc["nodes"]]
        procs = [self.lab.spawn(i, [sys.executable, "-m", "edgepoc", "network", "start", name, "--dir",
                                    str(folder / "hosts" / ips[i])]) for name, i in members]
        for (name, _), p in zip(members, procs):
            out, _ = p.communicate(timeout=120)
            if p.returncode != 0:
                raise RuntimeError(f"{name}: {out.strip()[-300:]}")

    def stop(self, folder: Path, doc: dict) -> None:
        for nd in doc["nodes"]:
            self.network.stop_member(self.bundles[nd["name"]], nd["name"], kill=True)
        self.network.stop_member(folder / "hosts" / self.lab.ips[0], "arbiter", kill=True)

    def cpu(self, folder: Path, doc: dict) -> dict[str, float]:
        from bench_chain import _cpu

        out = {"app": 0.0, "cometbft": 0.0}
        for nd in doc["nodes"]:
            home = self.bundles[nd["name"]] / nd["home"]
            out["app"] += _cpu(home / "node.pid")
            out["cometbft"] += _cpu(home / "cometbft.pid")
        return out


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(doc: dict, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    todo = {nd["api"] for nd in doc["nodes"]}
    while todo and time.monotonic() < deadline:
        for url in list(todo):
            c = HttpClient(url, timeout=3.0)
            try:
                st = c.get("/status")
                if st["height"] >= 1 and st.get("catching_up") is False:
                    todo.discard(url)
            except Exception:
                pass
            finally:
                c.close()
        time.sleep(0.3)
    if todo:
        raise RuntimeError(f"nodes not ready after {timeout:.0f} s: {sorted(todo)}")


def run_netns(engine: NetnsEngine, n: int, cfg: BenchConfig, rates: list[float], log) -> dict:
    """bench_chain.run_engine's ramp, on the namespaced network."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "net"
        doc = engine.init(folder, n, cfg)
        try:
            engine.start(folder, doc)
            wait_ready(doc)
            return ramp(engine, folder, doc, cfg, rates, log)
        finally:
            engine.stop(folder, doc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--rates", type=float, nargs="+", default=[1500.0, 3000.0, 6000.0, 10000.0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--delay-ms", type=int, default=20)
    ap.add_argument("--allocator", default="auto")
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_chain_netns.md")
    args = ap.parse_args()
    why = unavailable()
    if why:  # `make bench` as a normal user: say so and leave the other benchmarks running
        print(f"bench_chain_netns: skipped: {why}", file=sys.stderr)
        return
    cfg = BenchConfig(nodes=[args.nodes], rates=args.rates, seconds=args.seconds, allocator=args.allocator)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.time()
    runs = [run_engine(Engine(), args.nodes, cfg, cfg.rates, log)]  # the baseline, loopback, same run
    remove_stale()
    lab = NetnsLab(args.nodes, args.delay_ms).create()
    try:
        rtt = lab.rtt_ms(0, 1)
        runs.append(run_netns(NetnsEngine(lab), args.nodes, cfg, cfg.rates, log))
        switched = lab.switch is not None
        switch_cpu = process_cpu(lab.switch.pid) if switched else 0.0
    finally:
        lab.destroy()
    base, ns = runs
    lines = [f"# PoC chain across network namespaces, {args.delay_ms} ms per host egress, vs loopback "
             f"({os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')})", "",
             f"{args.nodes} nodes; offered load ramped over {', '.join(f'{r:.0f}' for r in cfg.rates)} tasks/s, "
             f"{cfg.seconds:.0f} s each, until p95 > {P95_LIMIT:.0f} s; allocator {cfg.allocator}. Link delay: "
             f"{lab.delay_how}; measured host-to-host round trip {rtt:.1f} ms"
             + (f"; the delay switch itself used {switch_cpu:.1f} CPU s of the same 2 cores during the namespaced run"
                if switched else "") + f". Baseline = the same network on "
             f"loopback, measured in this run just before. Whole run {time.time() - t0:.0f} s; load average at the "
             f"end {os.getloadavg()[0]:.1f} (other jobs share the machine).", "",
             "| network | offered/s | committed tasks/s | p50 (s) | p95 (s) | committed | tasks/block |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        for lv in r["levels"]:
            lines.append(f"| {r['engine']} | {lv['offered_per_s']:.0f} | {lv['tasks_per_s']:.0f} | {lv['p50_s']:.3f} | "
                         f"{lv['p95_s']:.3f} | {lv['committed']}/{lv['offered']} | {lv['tasks_per_block']:.0f} |")
    ratio = ns["saturation_per_s"] / base["saturation_per_s"] if base["saturation_per_s"] else float("nan")
    p50 = {r["engine"]: next((lv["p50_s"] for lv in r["levels"] if lv["offered_per_s"] == cfg.rates[0]), float("nan"))
           for r in runs}
    lines += ["", "| network | best committed tasks/s | reached p95 > 2 s | what bounds it (last level) |",
              "|---|---:|---|---|"]
    for r in runs:
        lines.append(f"| {r['engine']} | {r['saturation_per_s']:.0f} | {'yes' if r['saturated'] else 'no'} | "
                     f"{bound_of(r['levels'][-1])} |")
    lines += ["", f"Across namespaces / loopback: best committed tasks/s {ratio:.2f}x; p50 at {cfg.rates[0]:.0f} offered "
              f"{p50[ns['engine']]:.3f} s vs {p50[base['engine']]:.3f} s "
              f"(+{(p50[ns['engine']] - p50[base['engine']]) * 1000:.0f} ms)."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"config": {**asdict(cfg), "delay_ms": args.delay_ms, "delay": lab.delay_how, "rtt_ms": rtt,
                    "switch_cpu_s": switch_cpu},
         "date": time.strftime("%Y-%m-%d"), "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()

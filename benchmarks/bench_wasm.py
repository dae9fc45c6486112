"""Per-task overhead of run_task against calling the same compiled function in a bare loop.

run_task gives every task a fresh Store and Instance (isolation: no task sees another's memory or
globals) and checks its arguments; the bare loop reuses one Store and Instance and only calls. Both use
the process's one Engine and the cached compiled Module. Printed per prime-counter size: microseconds
per call each way, the ratio, and the absolute overhead; plus compile time cold and cached. The worker
target is that overhead stays a small fraction of a typical task (primes(10000)).

    python benchmarks/bench_wasm.py [--sizes 10,1000,10000] [--calls 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import wasmtime

from edgepoc.execution import WASMTIME_VERSION, clear_cache, compile_module, engine, load_workload, run_task

FUEL = 10**12


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,1000,10000", help="prime-counter arguments n")
    ap.add_argument("--calls", type=int, default=2000, help="calls per timing (fewer for large n)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_wasm.json")
    args = ap.parse_args()

    source = load_workload("primes")
    clear_cache()
    t0 = time.perf_counter()
    info = compile_module(source, max_bytes=1 << 20)
    compile_cold = time.perf_counter() - t0
    compile_cached = best_of(lambda: compile_module(source, max_bytes=1 << 20), args.repeats)

    store = wasmtime.Store(engine())
    store.set_fuel(FUEL)
    bare = wasmtime.Instance(store, info._module, []).exports(store)["count"]

    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        calls = max(20, min(args.calls, args.calls * 1000 // max(n, 1)))
        r = run_task(info, "count", [n], fuel=FUEL, memory_bytes=0)
        assert r.status == "ok" and r.result == bare(store, n)

        def worker() -> None:
            for _ in range(calls):
                run_task(info, "count", [n], fuel=FUEL, memory_bytes=0)

        def loop() -> None:
            for _ in range(calls):
                bare(store, n)

        t_task = best_of(worker, args.repeats) / calls
        t_bare = best_of(loop, args.repeats) / calls
        rows.append({"n": n, "result": r.result, "fuel_used": r.fuel_used, "calls": calls,
                     "run_task_us": t_task * 1e6, "bare_loop_us": t_bare * 1e6,
                     "overhead_us": (t_task - t_bare) * 1e6, "ratio": t_task / t_bare,
                     "fuel_per_s": r.fuel_used / t_bare})

    print(f"# run_task vs bare loop, prime counter ({platform.processor() or platform.machine()}, "
          f"wasmtime {WASMTIME_VERSION})")
    print(f"compile: cold {compile_cold * 1e3:.2f} ms, cached {compile_cached * 1e6:.1f} us")
    print("| n | result | fuel used | run_task us | bare loop us | overhead us | ratio | Mfuel/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']} | {r['result']} | {r['fuel_used']:,} | {r['run_task_us']:.1f} | {r['bare_loop_us']:.1f} "
              f"| {r['overhead_us']:.1f} | {r['ratio']:.2f}x | {r['fuel_per_s'] / 1e6:,.0f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(), "wasmtime": WASMTIME_VERSION,
        "compile_cold_ms": compile_cold * 1e3, "compile_cached_us": compile_cached * 1e6,
        "rows": rows, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()

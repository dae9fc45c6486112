"""The bundled workloads (.wat sources) that the demo, the benchmarks and the tests run."""

from __future__ import annotations

from pathlib import Path

from edgepoc.errors import InputError

HERE = Path(__file__).resolve().parent

# name -> (exported function, typical arguments, what it computes); the demo and the docs read this.
WORKLOADS: dict[str, tuple[str, list[int], str]] = {
    "primes": ("count", [10000], "count(n: i32) -> i32: primes below n, by trial division"),
    "matmul": ("checksum", [32, 1], "checksum(n: i32, seed: i64) -> i64: checksum of A x B, n x n seeded i64 matrices"),
    "hashchain": ("run", [1, 10000], "run(seed: i64, k: i32) -> i64: splitmix64 applied k times"),
}


def list_workloads() -> list[str]:
    """Names of the bundled workloads (the .wat files in this folder)."""
    return sorted(p.stem for p in HERE.glob("*.wat"))


def workload_path(name: str) -> Path:
    """Path of a bundled workload's .wat source, by name ('primes') or file name ('primes.wat')."""
    stem = name[:-4] if name.endswith(".wat") else name
    path = HERE / f"{stem}.wat"
    if "/" in stem or "\\" in stem or not path.is_file():
        raise InputError(f"no bundled workload {name!r} (bundled: {', '.join(list_workloads())})")
    return path


def load_workload(name: str) -> bytes:
    """A bundled workload's .wat source, ready for compile_module."""
    return workload_path(name).read_bytes()

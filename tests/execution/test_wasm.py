"""The execution library against real wasmtime: workloads, fuel, memory, determinism, admission."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepoc.errors import InputError
from edgepoc.execution import (
    WORKLOADS,
    ExecResult,
    compile_module,
    list_workloads,
    load_workload,
    result_hash,
    run_task,
    workload_path,
)

MODULES = Path(__file__).parent / "modules"
MAX = 1 << 20
FUEL = 10**9
MEM = 16 << 20
M64 = (1 << 64) - 1


def hostile(name: str) -> bytes:
    return (MODULES / name).read_bytes()


def signed64(x: int) -> int:
    x &= M64
    return x - (1 << 64) if x >> 63 else x


def primes_below(n: int) -> tuple[int, int]:
    if n <= 2:
        return 0, 0
    sieve = bytearray([1]) * n
    sieve[0] = sieve[1] = 0
    for i in range(2, int(n**0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytearray(len(range(i * i, n, i)))
    ps = [i for i in range(n) if sieve[i]]
    return len(ps), ps[-1]


def hashchain(seed: int, k: int) -> int:
    x = seed & M64
    for _ in range(k):
        x = (x + 0x9E3779B97F4A7C15) & M64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
        x ^= x >> 31
    return signed64(x)


def matmul_checksum(n: int, seed: int) -> int:
    s = seed & M64
    vals = []
    for _ in range(2 * n * n):
        s = (s * 6364136223846793005 + 1442695040888963407) & M64
        vals.append(s >> 32)
    a, b = vals[: n * n], vals[n * n:]
    total = 0
    for i in range(n):
        for j in range(n):
            c = sum(a[i * n + k] * b[k * n + j] for k in range(n)) & M64
            total = (total + c * (i * n + j + 1)) & M64
    return signed64(total)


@pytest.fixture(scope="module")
def primes():
    return compile_module(load_workload("primes"), max_bytes=MAX)


# ------------------------------------------------------------------ workloads


def test_bundled_workloads_listed_and_admitted():
    assert {"primes", "matmul", "hashchain"} <= set(list_workloads())
    for name in list_workloads():
        assert workload_path(name).suffix == ".wat"
        info = compile_module(load_workload(name), max_bytes=MAX)
        fn, args, _ = WORKLOADS[name]
        assert fn in info.functions
        assert run_task(info, fn, args, fuel=FUEL, memory_bytes=MEM).status == "ok"
    with pytest.raises(InputError, match="no bundled workload"):
        workload_path("../errors")


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 100, 7919, 7920, 10000])
def test_primes_matches_python(primes, n):
    count, largest = primes_below(n)
    assert run_task(primes, "count", [n], fuel=FUEL, memory_bytes=0).result == count
    both = run_task(primes, "count_and_largest", [n], fuel=FUEL, memory_bytes=0)
    assert both.status == "ok" and both.result == [count, largest]  # multi-value: a list


@pytest.mark.parametrize("seed,k", [(0, 0), (1, 1), (1, 1000), (M64, 37), (-5, 200)])
def test_hashchain_matches_python(seed, k):
    info = compile_module(load_workload("hashchain"), max_bytes=MAX)
    assert run_task(info, "run", [seed, k], fuel=FUEL, memory_bytes=0).result == hashchain(seed, k)


@pytest.mark.parametrize("n,seed", [(0, 1), (1, 7), (5, 123), (16, 1), (24, M64)])
def test_matmul_matches_python(n, seed):
    info = compile_module(load_workload("matmul"), max_bytes=MAX)
    assert run_task(info, "checksum", [n, seed], fuel=FUEL, memory_bytes=MEM).result == matmul_checksum(n, seed)


def test_matmul_needs_its_memory():
    info = compile_module(load_workload("matmul"), max_bytes=MAX)
    # 3 * 128 * 128 * 8 bytes = 6 pages; a 4-page limit refuses the grow, and the module traps
    r = run_task(info, "checksum", [128, 1], fuel=FUEL, memory_bytes=4 * 65536)
    assert r.status == "trap" and r.result is None and "unreachable" in r.error


# ------------------------------------------------------------------ determinism and fuel


def test_two_runs_agree_bit_for_bit(primes):
    runs = [run_task(primes, "count", [20000], fuel=FUEL, memory_bytes=0) for _ in range(3)]
    assert len({(r.status, r.result, r.fuel_used, r.result_hash) for r in runs}) == 1
    mm = compile_module(load_workload("matmul"), max_bytes=MAX)
    a, b = (run_task(mm, "checksum", [20, 9], fuel=FUEL, memory_bytes=MEM) for _ in range(2))
    assert a == b and a.result_hash == b.result_hash
    # a fresh compilation (another node) agrees too
    from edgepoc.execution import clear_cache

    clear_cache()
    again = compile_module(load_workload("primes"), max_bytes=MAX)
    assert again.hash == primes.hash
    assert run_task(again, "count", [20000], fuel=FUEL, memory_bytes=0) == runs[0]


def test_fuel_grows_with_work_and_out_of_fuel_is_a_status(primes):
    small = run_task(primes, "count", [1000], fuel=FUEL, memory_bytes=0)
    big = run_task(primes, "count", [10000], fuel=FUEL, memory_bytes=0)
    assert 0 < small.fuel_used < big.fuel_used < FUEL
    exact = run_task(primes, "count", [10000], fuel=big.fuel_used, memory_bytes=0)
    assert exact.status == "ok" and exact.result == 1229  # the measured fuel is exactly enough
    half = big.fuel_used // 2
    assert run_task(primes, "count", [10000], fuel=half, memory_bytes=0) == \
        ExecResult("out_of_fuel", None, half, "all fuel consumed")
    # fuel is checked at loop heads and calls: a budget a few units short may still finish, but
    # fuel_used never exceeds the budget, and the outcome is the same on every run
    for budget in range(big.fuel_used - 12, big.fuel_used):
        runs = {run_task(primes, "count", [10000], fuel=budget, memory_bytes=0) for _ in range(2)}
        assert len(runs) == 1 and next(iter(runs)).fuel_used <= budget


def test_infinite_loop_stops_on_fuel():
    info = compile_module(hostile("infinite_loop.wat"), max_bytes=MAX)
    r = run_task(info, "spin", [], fuel=2_000_000, memory_bytes=0)
    assert (r.status, r.result, r.fuel_used) == ("out_of_fuel", None, 2_000_000)


def test_memory_bomb_trapped_under_the_limit():
    info = compile_module(hostile("memory_bomb.wat"), max_bytes=MAX)
    limit = 1 << 20
    r = run_task(info, "bomb", [], fuel=FUEL, memory_bytes=limit)
    assert r.status == "trap" and r.result is None and "out of bounds" in r.error
    # the most it ever obtained is exactly the limit, whatever it asks for
    pages = run_task(info, "grown", [], fuel=FUEL, memory_bytes=limit)
    assert pages.status == "ok" and pages.result * 65536 == limit
    # a limit below its initial memory: instantiation itself is refused, a trap, not a crash
    r = run_task(info, "bomb", [], fuel=FUEL, memory_bytes=1000)
    assert r.status == "trap" and "instantiation failed" in r.error and r.fuel_used == 0


def test_table_bomb_and_stack_overflow_are_traps():
    tb = compile_module(hostile("table_bomb.wat"), max_bytes=MAX)
    r = run_task(tb, "f", [], fuel=FUEL, memory_bytes=MEM)
    assert r.status == "trap" and "table" in r.error
    rec = compile_module(hostile("recursion.wat"), max_bytes=MAX)
    a, b = (run_task(rec, "down", [0], fuel=FUEL, memory_bytes=0) for _ in range(2))
    assert a.status == "trap" and "stack_overflow" in a.error and a == b
    assert run_task(rec, "down", [0], fuel=1000, memory_bytes=0).status == "out_of_fuel"


def test_traps_and_results_shapes():
    info = compile_module(hostile("traps.wat"), max_bytes=MAX)
    assert run_task(info, "div", [7, 2], fuel=FUEL, memory_bytes=0).result == 3
    r = run_task(info, "div", [1, 0], fuel=FUEL, memory_bytes=0)
    assert r.status == "trap" and "integer_division_by_zero" in r.error
    assert run_task(info, "div", [-(1 << 31), -1], fuel=FUEL, memory_bytes=0).status == "trap"
    assert run_task(info, "nothing", [], fuel=FUEL, memory_bytes=0).result == []
    # results are signed; unsigned spellings of arguments pass the same bits
    assert run_task(info, "echo32", [0xFFFFFFFF], fuel=FUEL, memory_bytes=0).result == -1
    assert run_task(info, "echo64", [-(1 << 63)], fuel=FUEL, memory_bytes=0).result == -(1 << 63)
    assert run_task(info, "pair", [5, M64], fuel=FUEL, memory_bytes=0).result == [-1, 5]


def test_result_hash_is_canonical():
    a = ExecResult("ok", [1, 2], 10, None)
    b = ExecResult("ok", [1, 2], 99, "ignored")
    assert a.result_hash == b.result_hash == result_hash("ok", [1, 2])
    assert len({result_hash("ok", 1), result_hash("ok", [1]), result_hash("trap", None),
                result_hash("out_of_fuel", None), result_hash("ok", -1)}) == 5
    assert a.to_dict()["result_hash"] == a.result_hash


# ------------------------------------------------------------------ arguments


@pytest.mark.parametrize("fn,args,match", [
    ("nope", [1], "exports no function 'nope'"),
    ("count", [], "takes 1 argument"),
    ("count", [1, 2], "takes 1 argument"),
    ("count", ["5"], "must be an integer"),
    ("count", [True], "must be an integer"),
    ("count", [1.0], "must be an integer"),
    ("count", [1 << 32], "out of range"),
    ("count", [-(1 << 31) - 1], "out of range"),
])
def test_bad_arguments_rejected(primes, fn, args, match):
    with pytest.raises(InputError, match=match):
        run_task(primes, fn, args, fuel=FUEL, memory_bytes=0)


@pytest.mark.parametrize("fuel,mem,match", [(0, 0, "fuel"), (-1, 0, "fuel"), (1 << 63, 0, "fuel"),
                                            (10, -1, "memory_bytes"), (1.5, 0, "fuel")])
def test_bad_budgets_rejected(primes, fuel, mem, match):
    with pytest.raises(InputError, match=match):
        run_task(primes, "count", [10], fuel=fuel, memory_bytes=mem)


# ------------------------------------------------------------------ admission


def test_hash_is_over_the_binary_whatever_the_input_form(primes):
    import hashlib

    assert primes.hash == hashlib.sha256(primes.wasm).hexdigest()
    assert primes.wasm[:4] == b"\0asm"
    from_binary = compile_module(primes.wasm, max_bytes=MAX)
    assert from_binary.hash == primes.hash and from_binary.functions == primes.functions
    assert primes.to_dict()["functions"]["count"] == {"params": ["i32"], "results": ["i32"]}


@pytest.mark.parametrize("name,match", [
    ("wasi_import.wat", r"imports wasi_snapshot_preview1\.fd_write: no imports"),
    ("host_import.wat", r"imports env\.now_ms: no imports"),
    ("start_function.wat", "start function"),
    ("big_memory.wat", "maximum memory of 4294967296 bytes > limit"),
    ("float_export.wat", "export 'half' uses type f64"),
    ("no_export.wat", "exports no function"),
])
def test_hostile_modules_rejected_with_reason(name, match):
    with pytest.raises(InputError, match=match) as exc:
        compile_module(hostile(name), max_bytes=MAX)
    assert "\n" not in str(exc.value)


def test_imports_rejected_in_binary_form_too():
    import wasmtime

    wasm = wasmtime.wat2wasm(hostile("wasi_import.wat").decode())
    with pytest.raises(InputError, match="fd_write"):
        compile_module(bytes(wasm), max_bytes=MAX)


def test_initial_memory_above_bound():
    with pytest.raises(InputError, match="initial memory of 131072 bytes > limit 65536"):
        compile_module(b'(module (memory 2) (func (export "f")))', max_bytes=MAX, max_memory_bytes=65536)


def test_huge_module_rejected_before_parsing():
    huge = b"\0asm\x01\0\0\0" + b"\0" + b"\x80\x80\x40" + b"x" * (1 << 20)  # a 1 MiB custom section
    with pytest.raises(InputError, match="too large: .* > limit 65536"):
        compile_module(huge, max_bytes=65536)
    with pytest.raises(InputError, match="too large"):
        compile_module(b"\xff" * 100_000, max_bytes=65536)  # not even wasm: size comes first
    big_text = b'(module (func (export "f")' + b" (nop)" * 20_000 + b"))"
    with pytest.raises(InputError, match="too large"):
        compile_module(big_text, max_bytes=65536)


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"\x00\x01\x02\xff\xfe", "malformed"),
    (b"\0asm\x01\0\0\0\x01\x05\x01", "malformed"),  # truncated type section
    (b"\0asm\x01\0\0\0\x01\x01\x7f", "does not validate"),  # nonsense inside a section
    (b"\0asm\x0d\0\x01\0", "not a core WebAssembly module"),  # a component
    (b"\0asm", "not a core WebAssembly module"),
    (b"(module (func (export \"f\") (i32.add)", "does not parse"),
    (b'(module (func (export "f") (result i32) (i64.const 1)))', "does not validate"),
])
def test_malformed_modules_rejected(data, match):
    with pytest.raises(InputError, match=match) as exc:
        compile_module(data, max_bytes=MAX)
    assert "\n" not in str(exc.value)


def test_threads_are_not_admitted():
    with pytest.raises(InputError, match="shared|does not validate|does not parse"):
        compile_module(b'(module (memory 1 1 shared) (func (export "f")))', max_bytes=MAX)


def test_a_module_of_many_functions_is_refused_before_it_is_compiled():
    """40,000 empty functions fit in 160 KB and took 1.6 s to compile in every node's CheckTx; the count is read
    from the function section first, so the refusal costs nothing. 10,000 still compile."""
    import time

    import wasmtime

    from edgepoc.execution.wasm import MAX_FUNCTIONS, clear_cache

    many = wasmtime.wat2wasm("(module " + "(func)" * (MAX_FUNCTIONS + 1) + ' (func (export "x")))')
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=rf"^module defines {MAX_FUNCTIONS + 2} functions > limit {MAX_FUNCTIONS} "):
        compile_module(many, max_bytes=1 << 20)
    assert time.perf_counter() - t0 < 0.5, "refused before compiling"
    clear_cache()
    ok = wasmtime.wat2wasm("(module " + "(func)" * (MAX_FUNCTIONS - 1) + ' (func (export "x")))')
    assert "x" in compile_module(ok, max_bytes=1 << 20).functions

"""Compile and run WebAssembly tasks with wasmtime: fuel-metered, memory-limited, no imports (SPEC §7b).

A module is admitted once (`compile_module`, what CheckTx calls) and run many times (`run_task`, what
a provider's worker calls). Admission rejects, with a one-line reason, everything that could reach
outside the sandbox (any import: no WASI, no host functions) or make a run depend on the machine
(threads, relaxed SIMD, a start function). A run gets a fresh Store with the task's fuel and memory
limit, so tasks never see each other's state, and its outcome (status and result) is hashed in one
canonical encoding so that two honest providers produce the same `result_hash` bit for bit.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal, Sequence

import wasmtime

from edgepoc.errors import InputError

Status = Literal["ok", "out_of_fuel", "trap"]
STATUSES: tuple[str, ...] = ("ok", "out_of_fuel", "trap")

# Fuel accounting and traps are deterministic for one wasmtime build: nodes that compare fuel_used
# (receipts, audits) should run the same version; result_hash does not depend on it.
WASMTIME_VERSION = importlib.metadata.version("wasmtime")
WASM_PAGE = 65536
# Bounds that apply when the caller (genesis) gives none.
DEFAULT_MAX_MEMORY_BYTES = 256 * 1024 * 1024
MAX_TABLE_ELEMENTS = 100_000  # a table bomb (huge funcref table) fails instantiation, not the host
MAX_WASM_STACK = 512 * 1024  # fixed, so deep recursion traps at the same depth on every node
MODULE_CACHE_SIZE = 256
# Compilation costs per function (~40 us each here, however small): 40,000 empty ones fit in 160 KB and took 1.6 s
# of every node's CheckTx. 10,000 is several times what a 256 KB module compiled from Rust or C defines.
MAX_FUNCTIONS = 10_000
MAX_RESULTS = 16  # what a receipt carries (chain.abci.wire.MAX_RESULT_INTS): a longer result could never be reported
MAX_ARGS = 16  # what a task transaction carries (chain.abci.wire.MAX_ARGS): an export taking more could never be called

_MAGIC = b"\0asm"
_CORE_VERSION = b"\x01\0\0\0"
_INT_TYPES = ("i32", "i64")
_SECTION_NAMES = {
    1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global", 7: "export",
    8: "start", 9: "element", 10: "code", 11: "data", 12: "datacount", 13: "tag",
}


@dataclass(frozen=True)
class FunctionType:
    """An exported function's signature: only i32/i64, so integer arguments map one to one."""

    params: tuple[str, ...]
    results: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"params": list(self.params), "results": list(self.results)}


@dataclass(frozen=True, eq=False)
class ModuleInfo:
    """An admitted module: its hash (SHA-256 hex of the binary), the binary, and its callable exports."""

    hash: str
    wasm: bytes = field(repr=False)
    functions: dict[str, FunctionType]
    memory_min_bytes: int = 0
    memory_max_bytes: int | None = None
    _module: wasmtime.Module | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {
            "module": self.hash,
            "size": len(self.wasm),
            "functions": {k: v.to_dict() for k, v in self.functions.items()},
            "memory_min_bytes": self.memory_min_bytes,
            "memory_max_bytes": self.memory_max_bytes,
        }


def result_hash(status: str, result: int | list[int] | None) -> str:
    """SHA-256 hex of the canonical encoding of {status, result}: what receipts and audits compare.

    Error text and fuel used are left out on purpose: messages change between wasmtime versions and
    fuel is reported beside the hash, so the hash stays a pure function of the function's outcome.
    """
    payload = json.dumps({"result": result, "status": status, "v": 1}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(b"edgepoc-result\n" + payload.encode()).hexdigest()


@dataclass(frozen=True)
class ExecResult:
    """One task's outcome. `result` is set only when status is ok ([] for a function with no results)."""

    status: Status
    result: int | list[int] | None
    fuel_used: int
    error: str | None = None

    @property
    def result_hash(self) -> str:
        return result_hash(self.status, self.result)

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "result": self.result,
            "fuel_used": self.fuel_used,
            "error": self.error,
            "result_hash": self.result_hash,
        }


# ---------------------------------------------------------------- engine and cache

_engine_lock = threading.Lock()
_engine: wasmtime.Engine | None = None
_cache_lock = threading.Lock()
_cache: OrderedDict[str, wasmtime.Module] = OrderedDict()


def engine() -> wasmtime.Engine:
    """The process's one Engine: fuel on, every feature that could make two machines disagree off."""
    global _engine
    with _engine_lock:
        if _engine is None:
            cfg = wasmtime.Config()
            cfg.consume_fuel = True
            cfg.cranelift_nan_canonicalization = True  # NaN bits are the one float nondeterminism
            cfg.wasm_threads = False
            cfg.wasm_relaxed_simd = False
            cfg.wasm_memory64 = False
            cfg.wasm_multi_memory = False
            cfg.wasm_custom_page_sizes = False
            cfg.wasm_gc = False
            cfg.wasm_function_references = False
            cfg.wasm_exceptions = False
            cfg.wasm_stack_switching = False
            cfg.wasm_component_model = False
            cfg.wasm_multi_value = True
            cfg.max_wasm_stack = MAX_WASM_STACK
            _engine = wasmtime.Engine(cfg)
        return _engine


def _compiled(digest: str, wasm: bytes) -> wasmtime.Module:
    """Compile once per process and module hash: compilation, not instantiation, is the costly part."""
    with _cache_lock:
        mod = _cache.get(digest)
        if mod is not None:
            _cache.move_to_end(digest)
            return mod
    try:
        mod = wasmtime.Module(engine(), wasm)
    except wasmtime.WasmtimeError as exc:
        raise InputError(f"module does not validate: {_one_line(str(exc))}") from None
    with _cache_lock:
        _cache[digest] = mod
        while len(_cache) > MODULE_CACHE_SIZE:
            _cache.popitem(last=False)
    return mod


def clear_cache() -> None:
    """Drop every compiled module (tests; a node never needs to)."""
    with _cache_lock:
        _cache.clear()


# ---------------------------------------------------------------- admission


def _one_line(msg: str) -> str:
    """wasmtime's messages span lines (backtraces, 'Caused by'); keep the informative line."""
    lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip()]
    if not lines:
        return "unknown error"
    for ln in reversed(lines):
        if "wasm trap:" in ln:
            return ln.split("wasm trap:", 1)[1].strip()
    useful = [ln for ln in lines if not ln.startswith(("Caused by", "error while executing", "Stack backtrace"))
              and not ln[:1].isdigit()]
    return "; ".join(useful[:3]) if useful else lines[0]


class _Reader:
    """Just enough of the binary format to see sections before compiling (cheap CheckTx rejections)."""

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None):
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise InputError("module is malformed: unexpected end of data")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uleb(self, bits: int = 32) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift >= bits + 7:
                raise InputError("module is malformed: integer too long")
        if result >> bits:
            raise InputError("module is malformed: integer out of range")
        return result

    def name(self) -> str:
        n = self.uleb()
        if self.pos + n > self.end:
            raise InputError("module is malformed: name runs past its section")
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")


def _sections(wasm: bytes) -> dict[int, tuple[int, int]]:
    """Section id -> (start, end) of its payload; custom sections skipped."""
    r = _Reader(wasm, 8)
    out: dict[int, tuple[int, int]] = {}
    while r.pos < len(wasm):
        sid = r.byte()
        size = r.uleb()
        start, end = r.pos, r.pos + size
        if end > len(wasm):
            raise InputError(f"module is malformed: section {sid} runs past the end of the module")
        if sid != 0:
            if sid in out:
                raise InputError(f"module is malformed: duplicate {_SECTION_NAMES.get(sid, sid)} section")
            out[sid] = (start, end)
        r.pos = end
    return out


def _first_import(wasm: bytes, span: tuple[int, int]) -> str | None:
    """The first import's name, enough to name in the rejection."""
    r = _Reader(wasm, *span)
    if r.uleb() == 0:
        return None
    mod = r.name()
    return f"{mod}.{r.name()}"


def _memory_limits(wasm: bytes, span: tuple[int, int]) -> list[tuple[int, int | None]]:
    r = _Reader(wasm, *span)
    limits = []
    for _ in range(r.uleb()):
        flags = r.byte()
        if flags not in (0, 1):
            raise InputError(f"module declares a shared, 64-bit or custom-page memory (flags 0x{flags:02x}); "
                             "only plain 32-bit memories are allowed")
        lo = r.uleb()
        hi = r.uleb() if flags & 1 else None
        limits.append((lo, hi))
    return limits


def _to_binary(data: bytes) -> bytes:
    if data[:4] == _MAGIC:
        if data[4:8] != _CORE_VERSION:
            raise InputError(f"not a core WebAssembly module (version bytes {data[4:8].hex() or 'missing'}; "
                             "components are not accepted)")
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("module is malformed: neither WebAssembly binary (no \\0asm header) nor UTF-8 text") from None
    if not text.strip():
        raise InputError("module is empty")
    try:
        wasm = wasmtime.wat2wasm(text)
    except wasmtime.WasmtimeError as exc:
        raise InputError(f"module text does not parse: {_one_line(str(exc))}") from None
    return bytes(wasm)


def _valtype(v: wasmtime.ValType) -> str:
    return str(v)


def compile_module(data: bytes, *, max_bytes: int, max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES) -> ModuleInfo:
    """Admit a module (binary .wasm or .wat text) or raise InputError with a one-line reason.

    Checked in order of cost, so that hostile input is refused before the expensive compilation:
    size, format, sections (any import, a start function, memory bounds), then wasmtime's validation
    and compilation (cached by hash), then the exports (at least one function, i32/i64 only).
    The module's hash is always the SHA-256 of the binary, whatever form it arrived in.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"module must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise InputError(f"module is too large: {len(data)} bytes > limit {max_bytes}")
    if not data:
        raise InputError("module is empty")
    wasm = _to_binary(data)
    if len(wasm) > max_bytes:
        raise InputError(f"module is too large: {len(wasm)} bytes of binary > limit {max_bytes}")
    digest = hashlib.sha256(wasm).hexdigest()

    sections = _sections(wasm)
    if 2 in sections:
        first = _first_import(wasm, sections[2])
        if first is not None:
            raise InputError(f"module imports {first}: no imports are allowed (no WASI, no host functions)")
    if 8 in sections:
        raise InputError("module has a start function: code that runs outside any task's call is not allowed")
    if 3 in sections:
        count = _Reader(wasm, *sections[3]).uleb()
        if count > MAX_FUNCTIONS:
            raise InputError(f"module defines {count} functions > limit {MAX_FUNCTIONS} (every node compiles each one "
                             "when the module is admitted)")
    mem_min, mem_max = 0, None
    if 5 in sections:
        for lo, hi in _memory_limits(wasm, sections[5]):
            if lo * WASM_PAGE > max_memory_bytes:
                raise InputError(f"module declares an initial memory of {lo * WASM_PAGE} bytes > limit {max_memory_bytes}")
            if hi is not None and hi * WASM_PAGE > max_memory_bytes:
                raise InputError(f"module declares a maximum memory of {hi * WASM_PAGE} bytes > limit {max_memory_bytes}")
            mem_min, mem_max = lo * WASM_PAGE, None if hi is None else hi * WASM_PAGE

    mod = _compiled(digest, wasm)
    if mod.imports:  # the section walk above already refused these; wasmtime's view is the authority
        imp = mod.imports[0]
        raise InputError(f"module imports {imp.module}.{imp.name}: no imports are allowed (no WASI, no host functions)")

    functions: dict[str, FunctionType] = {}
    for ex in mod.exports:
        ty = ex.type
        if not isinstance(ty, wasmtime.FuncType):
            continue
        params = tuple(_valtype(p) for p in ty.params)
        results = tuple(_valtype(r) for r in ty.results)
        bad = [t for t in params + results if t not in _INT_TYPES]
        if bad:
            raise InputError(f"export {ex.name!r} uses type {bad[0]}: exported functions take and return only i32/i64")
        if len(params) > MAX_ARGS:
            raise InputError(f"export {ex.name!r} takes {len(params)} parameters > limit {MAX_ARGS}")
        if len(results) > MAX_RESULTS:
            raise InputError(f"export {ex.name!r} returns {len(results)} values > limit {MAX_RESULTS}")
        functions[ex.name] = FunctionType(params, results)
    if not functions:
        raise InputError("module exports no function: a task needs one to call")
    return ModuleInfo(digest, wasm, functions, mem_min, mem_max, mod)


# ---------------------------------------------------------------- running


def check_args(function: str, params: Sequence[str], args: object) -> list[int]:
    """The call's arguments checked against the function's parameter types, as the signed values passed.

    One rule for admission (CheckTx) and for the run, so that a task the chain commits is always one
    its provider can call. i32 takes -2^31 .. 2^32-1 and i64 -2^63 .. 2^64-1: unsigned spellings are
    accepted and passed as the same bits, signed. InputError naming the argument otherwise.
    """
    if not isinstance(args, (list, tuple)):
        raise InputError(f"args must be a list of integers, not {type(args).__name__}")
    if len(args) != len(params):
        raise InputError(f"function {function!r} takes {len(params)} argument(s) "
                         f"({', '.join(params) or 'none'}), got {len(args)}")
    out = []
    for i, (a, t) in enumerate(zip(args, params)):
        if isinstance(a, bool) or not isinstance(a, int):
            raise InputError(f"argument {i} of {function!r} must be an integer, not {type(a).__name__}")
        bits = 32 if t == "i32" else 64
        if not -(1 << (bits - 1)) <= a < (1 << bits):
            raise InputError(f"argument {i} of {function!r} ({t}) is out of range: {a}")
        out.append(a - (1 << bits) if a >= 1 << (bits - 1) else a)
    return out


def _check_args(info: ModuleInfo, function: str, args: list[int]) -> list[int]:
    ftype = info.functions.get(function)
    if ftype is None:
        known = ", ".join(sorted(info.functions)) or "none"
        raise InputError(f"module {info.hash[:12]} exports no function {function!r} (exports: {known})")
    return check_args(function, ftype.params, args)


def run_task(module: ModuleInfo, function: str, args: list[int], *, fuel: int, memory_bytes: int) -> ExecResult:
    """Run one task in a fresh Store: the declared fuel is all it gets, the declared memory is its limit.

    `fuel_used` never exceeds `fuel`. Wasmtime checks fuel at loop heads and calls, so a run whose
    last straight-line stretch overruns the budget by a few units still ends ok, with fuel_used =
    fuel; out_of_fuel reports the whole budget. For a trap it is what wasmtime
    had flushed when the trap hit: deterministic for one wasmtime build, but a lower bound, since fuel
    spent since the last call or loop back-edge is not written back (wasmtime issue #13802).

    Bad requests (unknown function, wrong arguments, non-positive fuel) raise InputError; what the
    module itself does (finish, run out of fuel, trap, exceed its memory) is the ExecResult's status.
    """
    if not isinstance(module, ModuleInfo):
        raise InputError(f"module must be a ModuleInfo from compile_module, not {type(module).__name__}")
    if isinstance(fuel, bool) or not isinstance(fuel, int) or not 1 <= fuel < 1 << 63:
        raise InputError(f"fuel must be a positive integer below 2^63, got {fuel!r}")
    if isinstance(memory_bytes, bool) or not isinstance(memory_bytes, int) or memory_bytes < 0:
        raise InputError(f"memory_bytes must be a non-negative integer, got {memory_bytes!r}")
    call_args = _check_args(module, function, args)
    mod = module._module if module._module is not None else _compiled(module.hash, module.wasm)

    store = wasmtime.Store(engine())
    store.set_limits(memory_size=memory_bytes, table_elements=MAX_TABLE_ELEMENTS,
                     instances=1, tables=1, memories=1)
    store.set_fuel(fuel)
    try:
        instance = wasmtime.Instance(store, mod, [])
        func = instance.exports(store)[function]
        value = func(store, *call_args)
    except wasmtime.Trap as trap:
        used = fuel - store.get_fuel()
        code = trap.trap_code
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return ExecResult("out_of_fuel", None, fuel, "all fuel consumed")
        name = code.name.lower() if code is not None else "trap"
        return ExecResult("trap", None, used, f"{name}: {_one_line(str(trap))}")
    except wasmtime.WasmtimeError as exc:
        # Instantiation refused by the limits (initial memory or table above them): the module's doing.
        return ExecResult("trap", None, fuel - store.get_fuel(), f"instantiation failed: {_one_line(str(exc))}")
    used = fuel - store.get_fuel()
    if value is None:
        result: int | list[int] = []
    elif isinstance(value, list):
        result = [int(v) for v in value]
    else:
        result = int(value)
    return ExecResult("ok", result, used, None)

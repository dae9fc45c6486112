"""Execution: tasks that really run (SPEC §7b), as a library the chain's workers and CheckTx call.

Trust model. An admitted module imports nothing (no WASI, no host functions): it reads no file,
socket or clock, so a run's outcome is a pure function of (module, function, arguments).
Fuel metering counts work the same way on every node, so a task's declared fuel is an honest bound
on its demand: a run that needs more ends `out_of_fuel`. Memory is capped per run; each run gets a
fresh Store. With threads, relaxed SIMD and NaN bits ruled out, two honest runs agree bit for bit on
`result_hash` (and, on one wasmtime version, on `fuel_used`), so a second run (an audit) checks a
provider's result. Nothing here can check how long a provider took: only block times can.
"""

from edgepoc.execution.results import ResultStore
from edgepoc.execution.wasm import (
    DEFAULT_MAX_MEMORY_BYTES,
    STATUSES,
    WASMTIME_VERSION,
    ExecResult,
    FunctionType,
    ModuleInfo,
    check_args,
    clear_cache,
    compile_module,
    engine,
    result_hash,
    run_task,
)
from edgepoc.execution.workloads import WORKLOADS, list_workloads, load_workload, workload_path

__all__ = [
    "DEFAULT_MAX_MEMORY_BYTES",
    "STATUSES",
    "WASMTIME_VERSION",
    "WORKLOADS",
    "ExecResult",
    "FunctionType",
    "ModuleInfo",
    "ResultStore",
    "check_args",
    "clear_cache",
    "compile_module",
    "engine",
    "list_workloads",
    "load_workload",
    "result_hash",
    "run_task",
    "workload_path",
]

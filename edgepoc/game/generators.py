"""Seeded instance generators: `paper`, `varied`, the real-trace `alibaba` preset and synthetic `heavy` tails.

Instance `i` of seed `s` comes from `SeedSequence(s, spawn_key=(i,))`, so it is the same
whatever `count` asks for, and generating in parallel or resuming gives identical instances.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Callable

import numpy as np

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.game.validate import check_seed, check_size


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def _providers(rng: np.random.Generator, k: int, r: int, spread: float = 0.5):
    """Heterogeneous providers: capacities in [1-spread, 1+spread], delays 5-50 ms."""
    capacity = rng.uniform(1.0 - spread, 1.0 + spread, size=(k, r))
    delay = rng.uniform(0.005, 0.05, size=k)
    return capacity, delay


def arrival_rate_for_load(demand: np.ndarray, capacity: np.ndarray, load: float) -> float:
    """Arrival rate `lambda` at which offered work is `load` x the providers' total service rate.

    Service rate of provider k is `1 / mean_i p_ik`; load 1.0 saturates all providers together.
    """
    proc = (demand[:, None, :] / capacity[None, :, :]).max(axis=2)
    return float(load * (1.0 / proc.mean(axis=0)).sum())


def _bursty_arrivals(rng: np.random.Generator, n: int, rate: float, burstiness: float) -> np.ndarray:
    """Poisson arrivals at `rate`; with burstiness b > 0 tasks come in clusters of mean size 1+9b."""
    if burstiness <= 0:
        return np.cumsum(rng.exponential(1.0 / rate, size=n))
    mean_cluster = 1.0 + 9.0 * burstiness
    sizes = 1 + rng.geometric(1.0 / mean_cluster, size=n)  # at least n tasks in total
    starts = np.cumsum(rng.exponential(mean_cluster / rate, size=n))
    times = np.repeat(starts, sizes)[:n]
    # tasks in one cluster arrive within a short spread, not at one instant
    return np.sort(times + rng.exponential(0.05 / rate, size=n))


def paper(seed: int = 0, index: int = 0, n_tasks: int = 1000, providers: int = 3, resources: int = 2,
          load: float = 0.9) -> Instance:
    """The paper's setting: 3 providers, 2 resources, normalised random demands, Poisson arrivals."""
    rng = _rng(seed, index)
    capacity, delay = _providers(rng, providers, resources)
    demand = rng.uniform(0.05, 1.0, size=(n_tasks, resources))
    arrival = _bursty_arrivals(rng, n_tasks, arrival_rate_for_load(demand, capacity, load), 0.0)
    return Instance.create(capacity, delay, arrival - arrival[0], demand, name=f"paper-s{seed}-{index}")


def varied(seed: int = 0, index: int = 0, n_tasks: int | None = None, providers: int | None = None,
           resources: int = 2, load: float | None = None, burstiness: float | None = None) -> Instance:
    """Sizes 50-1000, 2-6 providers, loads 0.5-1.2, burstiness 0-1: for generalisation."""
    rng = _rng(seed, index)
    n = int(n_tasks or round(np.exp(rng.uniform(np.log(50), np.log(1000)))))
    k = int(providers or rng.integers(2, 7))
    rho = float(load if load is not None else rng.uniform(0.5, 1.2))
    b = float(burstiness if burstiness is not None else rng.uniform(0.0, 1.0))
    capacity, delay = _providers(rng, k, resources, spread=float(rng.uniform(0.2, 0.7)))
    demand = rng.uniform(0.05, 1.0, size=(n, resources)) ** rng.uniform(0.7, 1.5)
    arrival = _bursty_arrivals(rng, n, arrival_rate_for_load(demand, capacity, rho), b)
    return Instance.create(capacity, delay, arrival - arrival[0], demand, name=f"varied-s{seed}-{index}")


@lru_cache(maxsize=1)
def alibaba_trace() -> tuple[np.ndarray, np.ndarray]:
    """`(submit_time, demand (n, 2))` of the bundled Alibaba 2017 batch-task trace, sorted by time.

    Demand mapping: a task's work on resource r is (request per instance) x (duration), i.e.
    `cpu * duration` and `memory * duration`, each divided by its trace-wide median so both
    resources weigh alike. Capacities then turn work into processing time, `p = max_r d_r / c_r`.
    """
    path = resources.files("edgepoc.game").joinpath("data/alibaba-2017-batch-tasks.csv")
    with resources.as_file(path) as p:
        raw = np.loadtxt(p, delimiter=",", skiprows=1, usecols=(1, 2, 3, 4))
    submit, duration, cpu, memory = raw.T
    work = np.stack([cpu * duration, memory * duration], axis=1)
    work = np.maximum(work / np.median(work, axis=0), 1e-6)
    order = np.argsort(submit, kind="stable")
    return submit[order], work[order]


def alibaba(seed: int = 0, index: int = 0, n_tasks: int = 1000, providers: int = 3, load: float = 0.9,
            start: int | None = None) -> Instance:
    """A window of `n_tasks` consecutive trace tasks; providers sized so the window runs at `load`."""
    submit, work = alibaba_trace()
    if n_tasks > submit.shape[0]:
        raise InputError(f"n_tasks: the trace has {submit.shape[0]} tasks, asked for {n_tasks}")
    rng = _rng(seed, index)
    if start is None:
        start = int(rng.integers(0, submit.shape[0] - n_tasks + 1))
    elif not 0 <= start <= submit.shape[0] - n_tasks:
        raise InputError(f"start: must be in 0..{submit.shape[0] - n_tasks}, got {start}")
    arrival = submit[start:start + n_tasks] - submit[start]
    demand = work[start:start + n_tasks]
    span = float(arrival[-1]) if arrival[-1] > 0 else float(n_tasks)
    shape, delay = _providers(rng, providers, 2)
    # processing scales as 1/s with capacity scale s; pick s so the offered load is `load`
    base_rate = arrival_rate_for_load(demand, shape, 1.0)
    capacity = shape * (n_tasks / span) / (load * base_rate)
    return Instance.create(capacity, delay, arrival, demand, name=f"alibaba-s{seed}-{index}-w{start}")


TAILS = ("pareto", "lognormal", "bimodal")


def heavy(seed: int = 0, index: int = 0, n_tasks: int = 1000, providers: int | None = None, load: float | None = None,
          tail: str | None = None) -> Instance:
    """Heavy-tailed task sizes other than the trace's: Pareto (shape 1.1), lognormal (sigma 1.5) or bimodal (5 %
    of the tasks 100 x the rest), Poisson arrivals; 3-5 providers and a load of 0.3-1.0 unless given. For checking
    that what was tuned on Alibaba windows carries to other tails (`benchmarks/bench_heavy_tails.py`)."""
    rng = _rng(seed, index)
    kind = tail if tail is not None else TAILS[int(rng.integers(0, len(TAILS)))]
    if kind not in TAILS:
        raise InputError(f"tail: expected one of {', '.join(TAILS)}, got {kind!r}")
    k = int(providers or rng.integers(3, 6))
    rho = float(load if load is not None else rng.uniform(0.3, 1.0))
    capacity, delay = _providers(rng, k, 2)
    if kind == "pareto":
        size = rng.pareto(1.1, n_tasks) + 1.0
    elif kind == "lognormal":
        size = rng.lognormal(0.0, 1.5, n_tasks)
    else:
        size = np.where(rng.random(n_tasks) < 0.95, 1.0, 100.0)
    demand = 0.1 * size[:, None] * rng.uniform(0.5, 1.5, size=(n_tasks, 2))
    arrival = _bursty_arrivals(rng, n_tasks, arrival_rate_for_load(demand, capacity, rho), 0.0)
    return Instance.create(capacity, delay, arrival - arrival[0], demand, name=f"heavy-{kind}-s{seed}-{index}")


@dataclass(frozen=True)
class Preset:
    name: str
    make: Callable[..., Instance]
    summary: str


PRESETS: dict[str, Preset] = {
    "paper": Preset("paper", paper, "3 providers, 2 resources, uniform demands, Poisson arrivals, 1000 tasks, load 0.9"),
    "varied": Preset("varied", varied, "50-1000 tasks, 2-6 providers, load 0.5-1.2, bursty arrivals"),
    "alibaba": Preset("alibaba", alibaba, "windows of the Alibaba 2017 batch-task trace, providers sized to a load"),
    "heavy": Preset("heavy", heavy, "Pareto, lognormal or bimodal task sizes, 3-5 providers, load 0.3-1.0, 1000 tasks"),
}


MAX_LOAD = 1e6  # far past any backlog worth simulating; above it the arrival rate overflows float64


def generate(preset: str, seed: int = 0, count: int = 1, start_index: int = 0, **params) -> list[Instance]:
    """`count` instances of `preset`; extra keyword arguments go to the preset (n_tasks, load, ...)."""
    if preset not in PRESETS:
        raise InputError(f"preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if count < 0:
        raise InputError(f"count: must be >= 0, got {count}")
    check_seed(seed)
    params = {k: v for k, v in params.items() if v is not None}
    if "n_tasks" in params and params["n_tasks"] < 1:
        raise InputError(f"n_tasks: must be >= 1, got {params['n_tasks']}")
    for name in ("providers", "resources"):
        if name in params and (not isinstance(params[name], (int, np.integer)) or params[name] < 1):
            raise InputError(f"{name}: must be an integer >= 1, got {params[name]!r}")
    if "n_tasks" in params:  # before any array is drawn: the preset's own providers are 1024 at most
        check_size(params["n_tasks"], params.get("providers", 1))
    if "load" in params and not 0 < params["load"] <= MAX_LOAD:
        raise InputError(f"load: must be a number > 0 and at most {MAX_LOAD:g}, got {params['load']}")
    make = PRESETS[preset].make
    try:
        return [make(seed=seed, index=i, **params) for i in range(start_index, start_index + count)]
    except TypeError as exc:
        raise InputError(f"preset {preset}: {exc}") from None

"""Contribution (SPEC §6): each provider's Shapley value in the latency-saving coalition game.

For a coalition S of providers, v(S) = sum_i (L_cloud - L_i(S)): the latency the coalition saves
against a remote cloud with fixed latency L_cloud. L_i(S) comes from the coalition rule: walk the
block's tasks in arrival order on the queue state carried by the chain (the providers' free times);
each task goes to the member that would complete it earliest (ties to the lowest index), unless no
member completes it before a_i + L_cloud, in which case it goes to the cloud (latency L_cloud, no
queue). Members' queues follow exactly the kernel's FIFO semantics (`edgepoc.game.kernel._run`);
the tests check the members' part against the kernel. The rule is deterministic and the sums run in
a fixed order in float64, so every node computes bit-identical values.

Exact Shapley values need all 2^K coalitions (K <= `shapley_exact_max`); beyond that, a Monte Carlo
estimate over seeded random permutations, whose standard error is reported alongside.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial
from typing import TYPE_CHECKING

import numba as nb
import numpy as np

from edgepoc.game.instance import Instance
from edgepoc.game.kernel import completion_time

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


@nb.njit(cache=True, nogil=True)
def _coalition_value(arrival, ready, proc, free0, l_cloud, mask, choice):
    """v(mask) under the coalition rule; fills `choice` (provider or -1 = cloud) when non-empty."""
    free = free0.copy()
    kk = free.shape[0]
    keep = choice.shape[0] > 0
    saved = 0.0
    for i in range(arrival.shape[0]):
        best_c = arrival[i] + l_cloud
        best_k = -1
        for k in range(kk):
            if (mask >> k) & 1:
                c = completion_time(free[k], ready[i, k], proc[i, k])  # the kernel's queue step, inlined
                if c < best_c:
                    best_c = c
                    best_k = k
        if keep:
            choice[i] = best_k
        if best_k >= 0:
            free[best_k] = best_c
            lat = best_c - arrival[i]
            if lat < 0.0:
                lat = 0.0
            saved += l_cloud - lat
    return saved


@nb.njit(cache=True, nogil=True)
def _all_values(arrival, ready, proc, free0, l_cloud):
    kk = free0.shape[0]
    out = np.zeros(1 << kk, dtype=np.float64)
    none = np.empty(0, dtype=np.int64)
    for mask in range(1, 1 << kk):
        out[mask] = _coalition_value(arrival, ready, proc, free0, l_cloud, mask, none)
    return out


@nb.njit(cache=True, nogil=True)
def _shapley_exact(values, weights, kk):
    phi = np.zeros(kk, dtype=np.float64)
    for k in range(kk):
        bit = 1 << k
        total = 0.0
        for mask in range(1 << kk):
            if mask & bit:
                continue
            size = 0
            m = mask
            while m:
                size += m & 1
                m >>= 1
            total += weights[size] * (values[mask | bit] - values[mask])
        phi[k] = total
    return phi


@dataclass
class ShapleyResult:
    values: list[float]  # phi_k per provider
    stderr: float  # largest standard error of the estimates (0 when exact)
    exact: bool
    grand_value: float  # v(N): what all providers together save


def coalition_value(inst: Instance, free_times: np.ndarray, l_cloud: float, members: list[int]) -> tuple[float, np.ndarray]:
    """v(S) and the coalition rule's choice per task (-1: the cloud); for tests and inspection."""
    mask = sum(1 << k for k in members)
    choice = np.empty(inst.n_tasks, dtype=np.int64)
    v = _coalition_value(inst.arrival, inst.ready, inst.processing, np.asarray(free_times, dtype=np.float64),
                         float(l_cloud), mask, choice)
    return float(v), choice


def shapley(inst: Instance, free_times: ArrayLike, l_cloud: float, exact_max: int = 10, samples: int = 64,
            seed: int = 0) -> ShapleyResult:
    """Shapley values of the providers for the tasks of `inst` starting from `free_times`."""
    kk = inst.n_providers
    free = np.ascontiguousarray(free_times, dtype=np.float64)
    if inst.n_tasks == 0:
        return ShapleyResult([0.0] * kk, 0.0, True, 0.0)
    args = (inst.arrival, inst.ready, inst.processing, free, float(l_cloud))
    if kk <= exact_max:
        values = _all_values(*args)
        weights = np.array([factorial(s) * factorial(kk - s - 1) / factorial(kk) for s in range(kk)])
        phi = _shapley_exact(values, weights, kk)
        return ShapleyResult([float(p) for p in phi], 0.0, True, float(values[-1]))
    rng = np.random.default_rng(seed)
    none = np.empty(0, dtype=np.int64)
    cache: dict[int, float] = {0: 0.0}

    def v(mask: int) -> float:
        if mask not in cache:
            cache[mask] = _coalition_value(*args, mask, none)
        return cache[mask]

    marginals = np.zeros((samples, kk))
    for s in range(samples):
        mask = 0
        for k in rng.permutation(kk):
            before = v(mask)
            mask |= 1 << int(k)
            marginals[s, k] = v(mask) - before
    phi = marginals.mean(axis=0)
    stderr = float(marginals.std(axis=0, ddof=1).max() / np.sqrt(samples)) if samples > 1 else float("inf")
    return ShapleyResult([float(p) for p in phi], stderr, False, v((1 << kk) - 1))

"""One round of the edge resource trading game (SPEC §1), held as float64 arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


@dataclass(eq=False)
class Instance:
    """`K` providers with capacities and delays, `n` tasks in arrival order with demands.

    Arrays are float64 and C-contiguous so the compiled kernel reads them without copies.
    Construct through `Instance.create` (validates) or the file readers in `edgepoc.game.files`.
    """

    name: str
    capacity: np.ndarray  # (K, R) > 0
    provider_delay: np.ndarray  # (K,) >= 0, seconds
    arrival: np.ndarray  # (n,) non-decreasing, seconds
    demand: np.ndarray  # (n, R) > 0
    task_delays: np.ndarray | None = None  # (n, K) overrides provider_delay per task
    provider_ids: list[str] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        capacity: ArrayLike,
        provider_delay: ArrayLike,
        arrival: ArrayLike,
        demand: ArrayLike,
        task_delays: ArrayLike | None = None,
        name: str = "instance",
        provider_ids: list[str] | None = None,
        task_ids: list[str] | None = None,
    ) -> "Instance":
        """Build a validated instance; bad values raise `InputError` naming the field."""
        from edgepoc.game.validate import validate_arrays

        capacity = np.ascontiguousarray(capacity, dtype=np.float64)
        provider_delay = np.ascontiguousarray(provider_delay, dtype=np.float64)
        arrival = np.ascontiguousarray(arrival, dtype=np.float64)
        demand = np.ascontiguousarray(demand, dtype=np.float64)
        if task_delays is not None:
            task_delays = np.ascontiguousarray(task_delays, dtype=np.float64)
        processing = validate_arrays(capacity, provider_delay, arrival, demand, task_delays)
        k, n = capacity.shape[0], arrival.shape[0]
        inst = cls(
            name=name,
            capacity=capacity,
            provider_delay=provider_delay,
            arrival=arrival,
            demand=demand,
            task_delays=task_delays,
            provider_ids=list(provider_ids) if provider_ids else [f"p{j}" for j in range(k)],
            task_ids=list(task_ids) if task_ids else [f"t{i}" for i in range(n)],
        )
        inst.__dict__["processing"] = processing  # the validation computed it already (cached_property's slot)
        return inst

    @property
    def n_tasks(self) -> int:
        return int(self.arrival.shape[0])

    @property
    def n_providers(self) -> int:
        return int(self.capacity.shape[0])

    @property
    def n_resources(self) -> int:
        return int(self.capacity.shape[1])

    @cached_property
    def processing(self) -> np.ndarray:
        """`p_ik = max_r d_ir / c_kr`, shape (n, K): the bottleneck resource sets the time."""
        return processing_times(self.demand, self.capacity)

    @cached_property
    def delays(self) -> np.ndarray:
        """`delta_ik`, shape (n, K): per-task delays where given, else the provider's delay."""
        if self.task_delays is not None:
            return self.task_delays
        return np.ascontiguousarray(np.broadcast_to(self.provider_delay, (self.n_tasks, self.n_providers)))

    @cached_property
    def ready(self) -> np.ndarray:
        """`a_i + delta_ik`, shape (n, K): the earliest time task i can start on provider k."""
        return np.ascontiguousarray(self.arrival[:, None] + self.delays)

    def subset(self, index: np.ndarray | slice, name: str | None = None) -> "Instance":
        """The tasks selected by `index` (kept in arrival order) on the same providers."""
        idx = np.arange(self.n_tasks)[index]
        return Instance(
            name=name or self.name,
            capacity=self.capacity,
            provider_delay=self.provider_delay,
            arrival=np.ascontiguousarray(self.arrival[idx]),
            demand=np.ascontiguousarray(self.demand[idx]),
            task_delays=None if self.task_delays is None else np.ascontiguousarray(self.task_delays[idx]),
            provider_ids=list(self.provider_ids),
            task_ids=[self.task_ids[i] for i in idx],
        )

    def with_providers(self, keep: np.ndarray | list[int]) -> "Instance":
        """The same tasks on a subset of the providers (coalitions, fault scenarios)."""
        keep = np.asarray(keep, dtype=np.int64)
        return Instance(
            name=self.name,
            capacity=np.ascontiguousarray(self.capacity[keep]),
            provider_delay=np.ascontiguousarray(self.provider_delay[keep]),
            arrival=self.arrival,
            demand=self.demand,
            task_delays=None if self.task_delays is None else np.ascontiguousarray(self.task_delays[:, keep]),
            provider_ids=[self.provider_ids[j] for j in keep],
            task_ids=list(self.task_ids),
        )


def processing_times(demand: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """(n, K) `max_r d_ir / c_kr`, C-contiguous float64 (inf where it overflows: the validation refuses that)."""
    with np.errstate(over="ignore", divide="ignore"):
        return np.ascontiguousarray((demand[:, None, :] / capacity[None, :, :]).max(axis=2))


def warm_up_instance() -> Instance:
    """A 4-task, 2-provider instance with the array types of a real one: what every `warm_up()` compiles its
    Numba code on (outside any clock), so a cold cache does not spend a time budget."""
    return Instance.create([[1.0], [2.0]], [0.0, 0.01], [0.0, 0.1, 0.2, 0.3], [[0.5], [0.9], [0.4], [0.7]],
                           name="warm-up")

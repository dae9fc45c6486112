"""The one budget type of every decoding strategy: work (local-search sweeps) or a wall-clock deadline.

A work budget makes the same input and seed give the same allocation on every node (what the chain
needs); a deadline is what a latency-bound caller asks for, and is not reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgepoc.errors import InputError


@dataclass(frozen=True)
class Budget:
    """Exactly one of `sweeps` (work: local-search sweeps in all) or `seconds` (deadline from the start)."""

    sweeps: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.sweeps is None) == (self.seconds is None):
            raise ValueError("Budget: give exactly one of sweeps (work) or seconds (deadline)")

    @classmethod
    def work(cls, sweeps: int) -> "Budget":
        return cls(sweeps=int(sweeps))

    @classmethod
    def deadline(cls, seconds: float) -> "Budget":
        return cls(seconds=float(seconds))

    @property
    def is_deadline(self) -> bool:
        return self.seconds is not None

    def describe(self) -> str:
        return f"{self.sweeps} sweeps" if self.seconds is None else f"{self.seconds * 1000:g} ms wall clock"

    @classmethod
    def from_params(cls, params: dict, seconds: float | None, default: "Budget") -> "Budget":
        """`budget_ms` wins over `--seconds` (both a deadline), either over `sweeps` (work); else `default`."""
        if "sweeps" in params and numeric_setting("sweeps", params["sweeps"], int) < 0:
            raise InputError("sweeps: must be >= 0")
        if "budget_ms" in params:
            budget = cls.deadline(numeric_setting("budget_ms", params["budget_ms"], float) / 1000.0)
        elif seconds is not None:
            budget = cls.deadline(seconds)
        elif "sweeps" in params:
            budget = cls.work(numeric_setting("sweeps", params["sweeps"], int))
        else:
            budget = default
        if budget.seconds is not None and budget.seconds < 0:
            raise InputError("budget_ms / --seconds: must be >= 0")
        return budget


def numeric_setting(name: str, value: object, kind: type) -> int | float:
    """`value` as `kind`, or an InputError naming the setting (a bool or a fractional int is refused too)."""
    try:
        if isinstance(value, bool) or (kind is int and float(value) != int(float(value))):
            raise ValueError
        number = kind(float(value)) if kind is int else kind(value)
        if not math.isfinite(number):
            raise ValueError
        return number
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{name}: expected {'an integer' if kind is int else 'a number'}, got {value!r}") from None

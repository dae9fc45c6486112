"""Tasks that really run: the chain's pure rules for work, receipts, liveness and measured capacity.

Like `consensus`, nothing here does I/O or keeps state: the application calls these steps in
PrepareProposal, ProcessProposal and FinalizeBlock over plain data, and `chain verify` replays them.
What the chain can check and what it cannot is in docs/execution.md:

- a task's demand comes from the fuel and memory it declares (fuel metering makes that honest);
- liveness is read from CometBFT's commit votes and from receipt deadlines in block time, never from
  a provider's clock;
- a provider's capacity is genesis' scaled by a factor measured from its receipts (integer micro-units);
- an audit is a second run of a task on another provider, chosen from the block hash.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgepoc.chain.consensus import MICRO  # a factor of 1.0 in the ledger's integer units
from edgepoc.chain.crypto import canonical, sha256_hex
from edgepoc.chain.genesis import ConsensusParams, Genesis

UNAVAILABLE_DELAY = 1.0e6  # seconds added to an unavailable provider's queue: no task and no contribution there


def work_demand(params: ConsensusParams, n_resources: int, fuel: int, memory: int) -> list[float]:
    """The queue demand of a work task: fuel on resource 0, memory on the others, each >= min_demand."""
    d0 = max(params.min_demand, fuel / params.fuel_per_unit)
    dm = max(params.min_demand, memory / params.memory_per_unit)
    return [d0] + [dm] * (n_resources - 1)


def signed_last_commit(genesis: Genesis, last_signed: Sequence[int], height: int,
                       votes: Sequence[tuple]) -> list[int]:
    """Each validator's last signed height after the commit of `height - 1` (CometBFT's last commit votes:
    (address hex, signed, ...))."""
    out = list(last_signed)
    for address, signed, *_ in votes:
        i = genesis.index_of(address)
        if i is not None and signed:
            out[i] = max(out[i], height - 1)
    return out


def availability(params: ConsensusParams, height: int, last_signed: Sequence[int],
                 cooldown_until: Sequence[int]) -> list[bool]:
    """Who may be given tasks at `height`: signed one of the last `liveness_window` commits, not cooling down
    after a missed deadline. The first heights have no commits to read: everyone is available."""
    w = params.liveness_window
    return [(height - 1 - s < w or height <= w + 1) and height > c for s, c in zip(last_signed, cooldown_until)]


def masked_free_times(free_times: Sequence[float], available: Sequence[bool]) -> list[float]:
    """The queue state the allocator, the reference and the contribution game see: an unavailable provider's
    queue is pushed far into the future, so greedy never picks it and its Shapley value is ~0."""
    return [f if a else f + UNAVAILABLE_DELAY for f, a in zip(free_times, available)]


def effective_capacity(genesis: Genesis, factors: Sequence[int], receipts: Sequence[int]) -> np.ndarray:
    """Genesis capacities scaled by the measured factor of every provider with enough receipts."""
    cap = genesis.capacity
    p = genesis.params
    scale = np.array([f / MICRO if n >= p.min_receipts else 1.0 for f, n in zip(factors, receipts)])
    return cap * scale[:, None]


def capacity_factor(params: ConsensusParams, factor: int, declared_fuel_per_s: float, fuel: int, span: float,
                    backlogged: bool) -> int:
    """One step of the measured-capacity estimate (integers; a quarter of the way per block with receipts).

    While the provider has a backlog, the fuel it reported over the block time since its last receipts is
    its real rate: the factor moves towards rate / declared. When it keeps up, no rate can be read (it is
    idle part of the time), so the factor recovers towards 1. Bounded by [capacity_floor, MICRO]."""
    if backlogged and span > 0:
        target = int(min(MICRO, fuel / span / declared_fuel_per_s * MICRO))
    else:
        target = MICRO
    new = factor + (target - factor) // 4 if target < factor else factor + (target - factor + 3) // 4
    return max(params.capacity_floor, min(MICRO, new))


def audit_picks(block_hash: str, task_ids: Sequence[str], per_million: int) -> list[bool]:
    """Which work tasks of a block also run on a second provider: a hash of block and task below the rate."""
    return [int(sha256_hex(f"audit:{block_hash}:{t}".encode())[:8], 16) % MICRO < per_million for t in task_ids]


def pick_other(block_hash: str, work_id: str, exclude: Sequence[int], available: Sequence[bool]) -> int | None:
    """A provider other than `exclude`, available, chosen from the block hash (None if there is none)."""
    cands = [i for i, a in enumerate(available) if a and i not in exclude]
    if not cands:
        return None
    return cands[int(sha256_hex(f"pick:{block_hash}:{work_id}".encode())[:8], 16) % len(cands)]


def work_digest(prev: str, events: list) -> str:
    """A running hash of every execution event (assignments, receipts, reassignments, audit verdicts): the app
    hash covers the work ledger without hashing the whole open set at every block."""
    return prev if not events else sha256_hex(prev.encode() + canonical(events))

"""The chain's pure rules over plain data: state, a block's game instance, its effects, the tolerance.

Nothing here does I/O or keeps state between calls. The ABCI application (`abci/app.py`), its
PrepareProposal and ProcessProposal, and `chain verify` call the same functions, so the rules a
reader checks against docs/consensus.md are the rules that run. A violated rule raises
`InvalidBlock` with the reason.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from edgepoc.chain.contribution import ShapleyResult, shapley
from edgepoc.chain.crypto import canonical, sha256_hex
from edgepoc.chain.genesis import Genesis
from edgepoc.errors import EdgepocError, InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import greedy_assignment, simulate_state

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from edgepoc.chain.genesis import ConsensusParams


MICRO = 1_000_000  # one unit of score, reward or capacity factor in the ledger's integers (as consensus-specs count Gwei)


class InvalidBlock(EdgepocError):
    """A block that breaks a rule; the message says which."""


class BlockTaskLike(Protocol):
    id: str
    demand: list[float]
    arrival: float


@dataclass
class ChainState:
    """What the chain carries from block to block (besides the blocks themselves)."""

    height: int  # last committed height; 0 = genesis
    last_hash: str  # hash of the last block (the genesis hash at height 0)
    last_time: float
    free_times: list[float]  # providers' queue state: when each becomes free (chain clock)
    scores: list[int]  # decayed contribution scores, micro-units (proof of contribution weights)
    balances: list[int]  # reward ledger, micro-units
    penalties: list[int] = field(default_factory=list)  # punished evidence per validator
    tasks_committed: int = 0
    # execution (edgepoc.chain.work): liveness, measured capacity, receipts and audits per validator
    last_signed: list[int] = field(default_factory=list)  # last height whose commit it signed
    cooldown_until: list[int] = field(default_factory=list)  # unavailable up to this height (missed deadline)
    capacity_factor: list[int] = field(default_factory=list)  # micro-units; 1_000_000 = as declared
    receipts: list[int] = field(default_factory=list)  # receipts accepted
    overdue: list[int] = field(default_factory=list)  # tasks taken away from it (deadline or absence)
    audits_passed: list[int] = field(default_factory=list)
    audits_failed: list[int] = field(default_factory=list)
    last_receipt_time: list[float] = field(default_factory=list)
    work_digest: str = ""
    client_busy: dict[str, float] = field(default_factory=dict)  # client -> when its admitted work is done (chain clock)
    censorships: list[int] = field(default_factory=list)  # blocks proposed that left out a reported client

    def __post_init__(self) -> None:
        k = len(self.scores)
        for name, zero in (("last_signed", 0), ("cooldown_until", 0), ("capacity_factor", MICRO),
                           ("receipts", 0), ("overdue", 0), ("audits_passed", 0), ("audits_failed", 0),
                           ("last_receipt_time", 0.0), ("censorships", 0)):
            if not getattr(self, name):
                setattr(self, name, [zero] * k)

    def to_dict(self) -> dict:
        return {"height": self.height, "last_hash": self.last_hash, "last_time": self.last_time,
                "free_times": self.free_times, "scores": self.scores, "balances": self.balances,
                "penalties": self.penalties, "tasks_committed": self.tasks_committed,
                "last_signed": self.last_signed, "cooldown_until": self.cooldown_until,
                "capacity_factor": self.capacity_factor, "receipts": self.receipts, "overdue": self.overdue,
                "audits_passed": self.audits_passed, "audits_failed": self.audits_failed,
                "last_receipt_time": self.last_receipt_time, "work_digest": self.work_digest,
                "client_busy": self.client_busy, "censorships": self.censorships}

    @classmethod
    def from_dict(cls, d: dict) -> "ChainState":
        return cls(**d)

    @property
    def hash(self) -> str:
        """The app hash: SHA-256 of what blocks change (queues, scores, rewards, penalties, task count).

        Height, block hash and time are the block header's, not the state's: an empty block leaves the
        app hash as it was, so CometBFT (create_empty_blocks = false) needs no proof block for it and an
        idle chain stays quiet instead of committing empty blocks back to back."""
        d = self.to_dict()
        for k in ("last_hash", "height", "last_time", "last_signed"):  # last_signed moves with every height
            d.pop(k)
        return sha256_hex(canonical(d))


def initial_scores(genesis: Genesis) -> list[int]:
    """Every provider's score at genesis: `initial_score`, else an equal share of the steady-state total
    (decay_value / ln(1/decay)), so the first tasks move shares only as much as later ones do."""
    p, k = genesis.params, len(genesis.validators)
    if p.initial_score is not None:
        return [int(p.initial_score)] * k
    if p.decay >= 1:
        return [MICRO] * k
    with decimal.localcontext(decimal.Context(prec=34)):
        total = decimal.Decimal(repr(p.decay_value)) / -decimal.Decimal(repr(p.decay)).ln()
        return [int(total * MICRO / k)] * k


def initial_state(genesis: Genesis) -> ChainState:
    k = len(genesis.validators)
    return ChainState(0, genesis.hash, genesis.genesis_time, [0.0] * k, initial_scores(genesis), [0] * k, [0] * k, 0)


def decay_factor(params: ConsensusParams, saved: float) -> int:
    """`decay ** (saved / decay_value)` in micro-units: how much every score keeps after a block that saved
    `saved` seconds of latency. Computed in decimal (correctly rounded ln and exp, the same on every
    platform) rather than with the C library's pow, whose last bit may differ between nodes."""
    if params.decay >= 1 or saved <= 0:
        return MICRO
    with decimal.localcontext(decimal.Context(prec=34)):
        exponent = decimal.Decimal(repr(float(saved))) / decimal.Decimal(repr(params.decay_value))
        keep = (decimal.Decimal(repr(params.decay)).ln() * exponent).exp()
        return int((keep * MICRO).to_integral_value(rounding=decimal.ROUND_HALF_EVEN))



def scaled(x: int, factor: float) -> int:
    """`x * factor` in the ledger's integers: the factor (a genesis constant) rounded to micro-units first, so
    every node computes the same integer whatever its float rounding."""
    return x * int(round(factor * MICRO)) // MICRO


def to_micro(x: float) -> int:
    """A float of the contribution game (the kernel's, bit-identical on every node) into ledger micro-units."""
    return int(round(x * MICRO))


def qualified(genesis: Genesis, state: ChainState) -> list[bool]:
    """Providers whose score is >= qualification x the mean positive score (all, if nobody would be)."""
    pos = [s for s in state.scores if s > 0]
    if not pos:
        return [True] * len(genesis.validators)
    bar = genesis.params.qualification * (sum(pos) / len(pos))
    out = [s > 0 and s >= bar for s in state.scores]
    return out if any(out) else [True] * len(genesis.validators)


def block_instance(genesis: Genesis, tasks: Sequence[BlockTaskLike], height: int = 0,
                   capacity: np.ndarray | None = None) -> Instance:
    """The game instance of a block's tasks on the validators' capacities (measured, where `capacity` is
    given) and (genesis) delays."""
    r = genesis.n_resources
    for i, t in enumerate(tasks):
        if len(t.demand) != r:
            raise InvalidBlock(f"tasks[{i}].demand: expected {r} resources, got {len(t.demand)}")
    try:
        return Instance.create(genesis.capacity if capacity is None else capacity, genesis.delays,
                               [t.arrival for t in tasks],
                               np.array([t.demand for t in tasks], dtype=np.float64).reshape(len(tasks), r),
                               None, name=f"block-{height}", provider_ids=[v.name for v in genesis.validators],
                               task_ids=[t.id for t in tasks])
    except InputError as exc:
        raise InvalidBlock(str(exc)) from None


def contribution_seed(prev_hash: str, height: int) -> int:
    return int(sha256_hex(f"shapley:{prev_hash}:{height}".encode())[:16], 16)


@dataclass
class QueueView:
    """What allocation sees at a height: measured capacities and the queues, unavailable providers masked."""

    capacity: np.ndarray
    free_times: list[float]  # masked (edgepoc.chain.work.masked_free_times)
    available: list[bool]


def queue_view(genesis: Genesis, state: ChainState, available: list[bool]) -> QueueView:
    from edgepoc.chain import work

    return QueueView(work.effective_capacity(genesis, state.capacity_factor, state.receipts),
                     work.masked_free_times(state.free_times, available), list(available))


@dataclass
class BlockEffects:
    claimed_latency: float
    free_after: list[float]
    shapley: ShapleyResult
    completion: list[float] = field(default_factory=list)


def block_effects(genesis: Genesis, state: ChainState, tasks: Sequence[BlockTaskLike], assignment: ArrayLike,
                  view: QueueView, inst: Instance | None = None) -> BlockEffects:
    """Re-run the kernel and the contribution game for a block: the numbers every node must agree on.
    `inst`: the block's instance when the caller has built it already (`block_instance` on `view`)."""
    p = genesis.params
    if not tasks:
        return BlockEffects(0.0, list(state.free_times), ShapleyResult([0.0] * len(genesis.validators), 0.0, True, 0.0))
    if any(not view.available[int(x)] for x in assignment):
        raise InvalidBlock("assignment: a task goes to a provider that is unavailable (absent or past a deadline)")
    inst = block_instance(genesis, tasks, state.height + 1, view.capacity) if inst is None else inst
    try:
        total, completion, free_after = simulate_state(inst, assignment, view.free_times)
    except InputError as exc:
        raise InvalidBlock(str(exc)) from None
    sh = shapley(inst, view.free_times, p.l_cloud, p.shapley_exact_max, p.shapley_samples,
                 contribution_seed(state.last_hash, state.height + 1))
    # the masked queues only steer allocation: an available provider's queue is the real one
    free = [float(f) if a else float(s) for f, s, a in zip(free_after, state.free_times, view.available)]
    return BlockEffects(float(total), free, sh, [float(c) for c in completion])


def reference_allocation(genesis: Genesis, inst: Instance, view: QueueView) -> tuple[list[int], float]:
    """The quality reference every honest node computes identically from the committed state: the reverse greedy
    improved by `reference_sweeps` sweeps of exact single-task moves (edgepoc.solvers.batch), unavailable
    providers excluded; its latency re-simulated by the kernel. Greedy (earliest completion) if the block is
    not a batch (cannot happen on the chain: a block's tasks share the block time). `inst`: the block's
    instance (`block_instance` on `view`)."""
    from edgepoc.solvers.batch import batch_allocate, is_batch

    if inst.n_tasks == 0:
        return [], 0.0
    if is_batch(inst):
        a = batch_allocate(inst, view.free_times, genesis.params.reference_sweeps)
        total = float(simulate_state(inst, a, view.free_times)[0])
    else:
        a, total = greedy_assignment(inst, view.free_times)
    return [int(x) for x in a], float(total)


def improve(genesis: Genesis, inst: Instance, view: QueueView, start: Sequence[int]) -> list[int]:
    """A proposer's descent from its own allocation (`proposal_sweeps` sweeps of exact moves) on the block's
    instance."""
    from edgepoc.solvers.batch import batch_allocate, is_batch

    if not is_batch(inst):
        return list(start)
    return [int(x) for x in batch_allocate(inst, view.free_times, genesis.params.proposal_sweeps, np.asarray(start))]


def client_work(view: QueueView, tasks: Sequence) -> dict[str, float]:
    """Seconds of the whole network's (measured, available) capacity each client's tasks take: a task's work
    is max_r d_r / (sum of the available providers' capacities on r). Admission bounds it per client."""
    out: dict[str, float] = {}
    for t, w in zip(tasks, task_work(view, tasks)):
        out[t.client] = out.get(t.client, 0.0) + w
    return out


def task_work(view: QueueView, tasks: Sequence) -> list[float]:
    """Each task's seconds of the whole network's (measured, available) capacity: max_r d_r / sum_k c_kr."""
    cap = (view.capacity * np.array(view.available, dtype=np.float64)[:, None]).sum(axis=0)
    cap = np.where(cap > 0, cap, view.capacity.sum(axis=0))
    return [float(max(d / c for d, c in zip(t.demand, cap))) for t in tasks]


def backlog(state: ChainState, available: Sequence[bool]) -> float:
    """Seconds of queued work on the least loaded available provider as of the state's last block (what a new
    task would wait at best): the global admission rule."""
    return min([max(0.0, f - state.last_time) for f, a in zip(state.free_times, available) if a] or [0.0])


def admitted(params: ConsensusParams, state: ChainState, client: str, work: float) -> str | None:
    """Why a client's `work` seconds cannot enter a block now (None if they can): one client's work is bounded
    per block, and the client must have drained its earlier work to within `max_client_backlog` seconds."""
    ahead = state.client_busy.get(client, state.last_time) - state.last_time
    if ahead > params.max_client_backlog:
        return (f"busy: this client's earlier tasks keep the network busy for {ahead:.1f} s more (> max_client_backlog "
                f"{params.max_client_backlog:g} s); retry after {ahead - params.max_client_backlog:.1f} s")
    if work > params.max_client_block_seconds:
        return (f"busy: {work:.1f} s of network capacity in one block (> max_client_block_seconds "
                f"{params.max_client_block_seconds:g} s); send smaller batches")
    return None


def within_tolerance(claimed: float, reference: float, tolerance: float, tolerance_abs: float) -> bool:
    """The quality rule: the block's latency is at most the reference's, plus the tolerance."""
    return claimed <= reference * (1.0 + tolerance) + tolerance_abs

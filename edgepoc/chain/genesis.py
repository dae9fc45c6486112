"""The genesis file: chain id, validators (key, capacity, delay), the arbiter's key, parameters.

Every rule that nodes must agree on reads its constants from `ConsensusParams`, so the genesis file
is the whole configuration of the protocol (timeouts included, to keep a testnet one file).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgepoc.chain.crypto import address_of, canonical, sha256_hex
from edgepoc.files import write_atomic
from edgepoc.errors import EdgepocError, InputError


MAX_VALIDATORS = 32  # the contribution game's coalition masks and the 1/3 power cap are sized for this
MAX_PROPOSAL_BYTES = 3 << 20  # below CometBFT's 4 MiB gRPC client limit, with room for the allocation


@dataclass
class ConsensusParams:
    """Protocol constants; see docs/consensus.md for what each one governs."""

    l_cloud: float = 5.0  # seconds: latency of the remote cloud in the contribution game (SPEC §6)
    # Scores are multiplied by `decay` per `decay_value` seconds of latency the network saves (a block's v(N),
    # the sum of its Shapley values), not per block: a block of a few tasks moves every score by as little as
    # it saves, so a few crafted tasks in many blocks cannot wash out everyone else's record (they did, at
    # 0.9 per block). At steady state the scores sum to ~decay_value / ln(1/decay) (~4,700 s by default).
    decay: float = 0.9
    decay_value: float = 500.0
    # Each provider's score at genesis, micro-units (the ledger's integers). None: the steady state of equal
    # shares, so a young chain is not steered by its first few tasks either.
    initial_score: int | None = None
    qualification: float = 0.1  # "qualified" in the contribution table: score >= this x the mean positive score
    # The quality rule: a block's latency <= the reference's * (1 + tolerance) + tolerance_abs. The reference
    # (consensus.reference_allocation) is the reverse greedy improved by `reference_sweeps` sweeps of exact
    # single-task moves (edgepoc.solvers.batch: a block's tasks arrive at once, so a move is priced in
    # O(log n)); an honest proposer starts from it too and can only do better, so the tolerance is ~0: a lazy
    # or self-serving allocation that is worse than the reference is rejected.
    tolerance: float = 1e-9
    tolerance_abs: float = 1e-9
    reference_sweeps: int = 50  # <= 22 ms at 5,000 tasks on one core (measured); usually a local optimum
    proposal_sweeps: int = 50  # the proposer's descent from its model's allocation
    # A proposer is paid proposal_reward x (reference - its latency) / reference for a block it allocated
    # better than the reference: proposing well is a contribution too.
    proposal_reward: float = 1.0
    evidence_penalty: float = 1.0  # share of the offender's score removed per CometBFT evidence
    block_reward: float = 1.0  # paid per block with tasks, in proportion to positive Shapley values
    max_block_tasks: int = 5000
    shapley_exact_max: int = 10  # exact Shapley up to this many providers, Monte Carlo beyond
    shapley_samples: int = 64  # permutations for the Monte Carlo estimate
    # CometBFT's consensus timeouts (written into each node's config.toml by `network init`)
    timeout_propose: float = 2.0  # building or checking a 5000-task block with the student takes ~1 s on a busy 2-core host
    timeout_prevote: float = 0.5
    timeout_precommit: float = 0.5
    timeout_delta: float = 0.25  # added per round
    timeout_commit: float = 0.05  # pause after a commit, to batch tasks
    empty_block_interval: float = 1.0  # with no pending tasks, an empty block at most this often
    allocator: str = "auto"  # student when a model exists, else greedy
    allocator_seconds: float = 0.1  # the student's decoding budget per block (decoders that take one)
    # The student's decoder on the nodes. "guided" (the general student's one-pass) is deterministic, so
    # validators reproduce the proposer's allocation exactly, and cheap: 22 ms of CPU for a 2000-task block at
    # K = 4, 18-23 % below greedy's delay at load 0.9-1.3 (measured 2026-11-30).
    # "search" is better per block but spends its whole budget on every proposal and every check; before
    # the descent checked its deadline, one overloaded 2000-task block took ~0.7 s and 4-node throughput
    # fell from ~1500 to ~240 tasks/s (measured).
    allocator_decode: str = "guided"
    # CometBFT engine (edgepoc.chain.abci): client-input bounds checked in CheckTx and ProcessProposal.
    # Per resource. 1000 takes every task of the shipped Alibaba trace (largest demand 513; at 10 every batch of
    # a real window was refused): how much work one client brings is bounded by admission
    # (max_client_block_seconds, max_client_backlog), not here; this bound only keeps numbers sane.
    max_demand: float = 1000.0
    # A task's smallest demand per resource: a 5e-324 demand is zero work that still earns contribution.
    min_demand: float = 1e-4
    max_batch_tasks: int = 2000  # tasks in one client-signed batch (one transaction)
    # Byte bounds, checked before any parsing. A proposal stays well below CometBFT's 4 MiB gRPC message
    # limit on the PrepareProposal response (bigger ones made every proposer fail), and the block size
    # limit in CometBFT's genesis is set from it.
    max_tx_bytes: int = 1 << 20
    max_proposal_bytes: int = 2 << 20
    # Voting power from contribution: `power_total` split in proportion to the scores, each at least
    # `power_floor` (nobody is dropped) and, with >= 4 validators, below a third of the total.
    power_total: int = 1000
    power_floor: int = 10
    # Execution (SPEC §7b, docs/execution.md). A work task's queue demand comes from what it declares:
    # resource 0 = fuel / fuel_per_unit, the others = memory / memory_per_unit (at least min_demand), so a
    # provider of capacity 1.0 is declared to run fuel_per_unit fuel per second.
    # Memory is held, not consumed over time: it weighs little (16 MiB = 0.001), so a task's time on a provider
    # follows its fuel; fuel_per_unit is ~10x below what wasmtime runs per core (measured), a conservative model.
    fuel_per_unit: int = 1_000_000_000
    memory_per_unit: int = 16 << 30
    max_module_bytes: int = 256 << 10
    # Modules are rare and large (up to ~350 KB as a transaction) and every node compiles each in CheckTx:
    # a block carries at most max_block_modules of them, and a node's mempool holds at most
    # max_pending_modules (CheckTx answers "busy" beyond), so a flood of modules neither crowds the tasks
    # out of blocks nor fills the mempool.
    max_block_modules: int = 2
    max_pending_modules: int = 16
    max_task_memory: int = 64 << 20  # bytes a task may declare
    max_receipts: int = 2000  # receipts in one provider-signed transaction
    # Liveness: a validator absent from the last `liveness_window` commits is unavailable until it signs
    # again; one with a task past its deadline (simulated completion + receipt_grace, in block time) is
    # unavailable for `overdue_cooldown` heights. Either way its open tasks are reassigned.
    liveness_window: int = 2
    receipt_grace: float = 5.0
    overdue_cooldown: int = 20
    # Measured capacity: once a provider has `min_receipts` receipts, its capacity is genesis' x a factor
    # (micro-units, 1_000_000 = as declared) that falls towards the fuel rate it shows while it has a backlog
    # older than `backlog_allowance` seconds, and recovers towards 1 when it keeps up; never below
    # `capacity_floor` (micro-units).
    min_receipts: int = 20
    backlog_allowance: float = 1.5
    capacity_floor: int = 50_000
    # Audits: this many per million work tasks (chosen from the block hash) also run on a second provider.
    audit_per_million: int = 50_000
    result_retention: float = 3600.0  # seconds a worker keeps results it served
    # The proposer waits at most this long for the arbiter (asynchronously, outside the application lock);
    # well inside timeout_propose, so a hung arbiter never costs a round.
    arbiter_deadline: float = 0.6
    # Admission and fairness (docs/consensus.md): CheckTx answers "busy, retry after" when the least loaded
    # available provider has more than max_backlog seconds queued, or a client already has
    # max_client_pending tasks waiting on this node; a block carries at most max_client_block_tasks tasks of
    # one client, and none while the backlog is over the bound. Proposers fill blocks round-robin by client.
    max_backlog: float = 300.0
    max_client_pending: int = 20_000
    max_client_block_tasks: int = 2000
    # Per client, in seconds of the whole network's capacity: at most max_client_block_seconds of work per
    # block, and no new work while its earlier work keeps the network busy more than max_client_backlog
    # ahead. A flood at several times capacity is cut to its share; other clients still get in.
    max_client_block_seconds: float = 60.0
    max_client_backlog: float = 60.0
    # A proposer whose block is empty while the blocks before and after it (by others) each carry at least
    # busy_block_tasks tasks withheld work it had: it loses proposer_penalty of its score.
    busy_block_tasks: int = 50
    proposer_penalty: float = 0.5
    # Censorship (docs/consensus.md): from this height on (0: off) every precommit carries a vote extension,
    # the validator's signed report on the block it votes for: the clients whose batches were in its mempool
    # censor_age seconds before the proposer could begin (timeout_commit after the previous commit) and are
    # not in the block (at most
    # max_report_clients, oldest first). The next proposer must put all the reports of its last commit first
    # in its block. A block that left out a client reported by more than 1/3 of the power, with room and the
    # client admissible, costs its proposer censor_fine from its rewards and counts in its `censorships`.
    vote_extensions_height: int = 1
    censor_age: float = 0.05  # the gossip and commit-time skew a proposer is allowed
    max_report_clients: int = 64
    censor_fine: float = 1.0

    @classmethod
    def from_dict(cls, d: dict) -> "ConsensusParams":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"genesis.params: unknown parameters {sorted(unknown)}")
        for f in fields(cls):  # a wrong type is a one-line error, not a TypeError deep in a comparison
            if f.name not in d:
                continue
            v, default = d[f.name], f.default
            want = (int, float) if isinstance(default, float) else (int,) if isinstance(default, int) or default is None \
                else (type(default),)
            if (v is None and default is not None) or (v is not None and (isinstance(v, bool) or not isinstance(v, want))):
                raise InputError(f"genesis.params.{f.name}: expected {'/'.join(t.__name__ for t in want)}, "
                                 f"got {type(v).__name__}")
        p = cls(**d)
        if not p.l_cloud > 0 or not 0 < p.decay <= 1 or not p.decay_value > 0 \
                or (p.initial_score is not None and p.initial_score < 0) or p.max_block_tasks < 1 or not 0 < p.min_demand <= p.max_demand \
                or p.max_batch_tasks < 1 or p.power_floor < 1 or p.power_total < p.power_floor \
                or not 1024 <= p.max_tx_bytes <= p.max_proposal_bytes <= MAX_PROPOSAL_BYTES \
                or p.vote_extensions_height < 0 or p.censor_age < 0 or p.censor_fine < 0 or not 0 <= p.max_report_clients <= 128 \
                or p.max_block_modules < 1 or p.max_pending_modules < 1:
            raise InputError("genesis.params: need l_cloud > 0, 0 < decay <= 1, decay_value > 0, initial_score >= 0, "
                             "max_block_tasks >= 1, "
                             "0 < min_demand <= max_demand, max_batch_tasks >= 1, 1 <= power_floor <= power_total, "
                             f"1024 <= max_tx_bytes <= max_proposal_bytes <= {MAX_PROPOSAL_BYTES}, vote_extensions_height >= 0, "
                             "censor_age >= 0, censor_fine >= 0, 0 <= max_report_clients <= 128, "
                             "max_block_modules >= 1, max_pending_modules >= 1")
        return p


def _nice_ceil(x: float) -> float:
    """The smallest of 1, 2 or 5 x 10^k at or above x (bounds people can read in a genesis file)."""
    if x <= 0:
        return 0.0
    e = math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * 10.0 ** e >= x * (1 - 1e-12):
            return float(m * 10.0 ** e)
    return float(10.0 ** (e + 1))


def derive_bounds(capacity: Sequence[Sequence[float]], demands: Any, headroom: float = 2.0) -> dict[str, float]:
    """Client-input bounds for a network of providers with `capacity` (K x R) that must accept a workload
    (`demands`, N x R): every task of it fits, with `headroom` above its largest demand and its heaviest task.

    - max_demand: headroom x the largest demand, rounded up to 1, 2 or 5 x 10^k;
    - min_demand: the default, or lower if the workload has smaller positive demands;
    - max_client_block_seconds / max_client_backlog / max_backlog: at least headroom x the heaviest task's
      seconds of the whole network's capacity (max_r d_r / sum_k c_kr), so one task is never refused as
      "more than one block takes from a client"."""
    d = np.asarray(demands, dtype=np.float64)
    cap = np.asarray(capacity, dtype=np.float64)
    if d.ndim != 2:
        raise InputError(f"workload: expected tasks x {cap.shape[1]} resources of demand, got shape {d.shape}")
    if d.shape[0] == 0:
        raise InputError("workload: it has no tasks, so no bounds can be derived from it")
    if d.shape[1] != cap.shape[1]:
        raise InputError(f"workload: its tasks demand {d.shape[1]} resources each, this network's providers have "
                         f"{cap.shape[1]}")
    if not np.isfinite(d).all() or (d < 0).any():
        raise InputError("workload: demands must be finite and >= 0")
    base = ConsensusParams()
    out: dict[str, float] = {"max_demand": _nice_ceil(headroom * float(d.max()))}
    positive = d[d > 0]
    if positive.size and positive.min() / headroom < base.min_demand:
        out["min_demand"] = float(positive.min() / headroom)
    heaviest = float((d / cap.sum(axis=0)).max())
    seconds = _nice_ceil(headroom * heaviest)
    for name in ("max_client_block_seconds", "max_client_backlog", "max_backlog"):
        if seconds > getattr(base, name):
            out[name] = seconds
    return out


@dataclass
class ValidatorInfo:
    name: str
    public_key: str
    address: str
    power: int
    capacity: list[float]
    delay: float


@dataclass
class Genesis:
    chain_id: str
    genesis_time: float
    validators: list[ValidatorInfo]
    arbiter_public_key: str
    params: ConsensusParams = field(default_factory=ConsensusParams)
    # The builds every node must run (component -> version, e.g. {"numpy": "2.1.3", "cometbft": "1.0.1"}):
    # ProcessProposal's determinism depends on them, so a node refuses to start on others
    # (edgepoc.chain.builds). Empty (no check) unless `network genesis` pinned them; left out of to_dict
    # then, so genesis files and hashes without it are unchanged.
    builds: dict[str, str] = field(default_factory=dict)

    @property
    def total_power(self) -> int:
        return sum(v.power for v in self.validators)

    @property
    def n_resources(self) -> int:
        return len(self.validators[0].capacity)

    def index_of(self, address: str) -> int | None:
        return self._index.get(address)

    @property
    def _index(self) -> dict[str, int]:
        idx = self.__dict__.get("_index_cache")
        if idx is None:
            idx = {v.address: i for i, v in enumerate(self.validators)}
            self.__dict__["_index_cache"] = idx
        return idx

    @property
    def capacity(self) -> np.ndarray:
        return np.array([v.capacity for v in self.validators], dtype=np.float64)

    @property
    def delays(self) -> np.ndarray:
        return np.array([v.delay for v in self.validators], dtype=np.float64)

    @property
    def arbiter_address(self) -> str:
        return address_of(self.arbiter_public_key)

    def to_dict(self) -> dict:
        d = {"chain_id": self.chain_id, "genesis_time": self.genesis_time,
             "validators": [asdict(v) for v in self.validators], "arbiter_public_key": self.arbiter_public_key,
             "params": asdict(self.params)}
        if self.builds:
            d["builds"] = dict(self.builds)
        return d

    @property
    def hash(self) -> str:
        """The hash of genesis: the `prev_hash` of block 1."""
        return sha256_hex(canonical(self.to_dict()))

    @classmethod
    def from_dict(cls, d: dict) -> "Genesis":
        try:
            vals = [ValidatorInfo(**v) for v in d["validators"]]
            builds = d.get("builds") or {}
            if not isinstance(builds, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and v
                                                       for k, v in builds.items()):
                raise InputError("genesis.builds: need an object of component name -> version string")
            g = cls(str(d["chain_id"]), float(d["genesis_time"]), vals, str(d["arbiter_public_key"]),
                    ConsensusParams.from_dict(d.get("params", {})), dict(builds))
        except (KeyError, TypeError) as exc:
            raise InputError(f"genesis: malformed ({exc})") from None
        if not 1 <= len(g.validators) <= MAX_VALIDATORS:
            raise InputError(f"genesis.validators: need 1..{MAX_VALIDATORS} validators, got {len(g.validators)}")
        r = len(g.validators[0].capacity)
        for i, v in enumerate(g.validators):
            if v.address != address_of(v.public_key):
                raise InputError(f"genesis.validators[{i}].address: does not match its public key")
            if len(v.capacity) != r or any(c <= 0 for c in v.capacity) or v.delay < 0 or v.power < 1:
                raise InputError(f"genesis.validators[{i}]: need {r} capacities > 0, delay >= 0, power >= 1")
        return g

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Genesis":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise EdgepocError(f"genesis: {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"genesis: {path} is not JSON ({exc})") from None


def make_validators(public_keys: list[str], seed: int, resources: int = 2) -> list[ValidatorInfo]:
    """Validators with seeded capacities and delays, the spread of the paper's generator."""
    rng = np.random.default_rng(seed)
    out = []
    for i, pk in enumerate(public_keys):
        cap = rng.uniform(0.5, 1.5, size=resources).round(4).tolist()
        delay = round(float(rng.uniform(0.01, 0.1)), 4)
        out.append(ValidatorInfo(f"node{i}", pk, address_of(pk), 1, cap, delay))
    return out

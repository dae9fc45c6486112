"""`edgepoc chain verify`: re-check a node's whole chain from its store alone.

Replays from genesis: every block's hash, proposer, last commit, task signatures and replays, the
kernel-simulated latency (bit for bit), the Shapley contributions, evidence, the state hash, its own
commit (signatures, > 2/3 of the power), and the task index's providers and latencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import Progress

from edgepoc.chain import consensus as rules
from edgepoc.chain.consensus import InvalidBlock
from edgepoc.chain.genesis import Genesis
from edgepoc.chain.store import BlockStore
from edgepoc.errors import EdgepocError, InputError
from edgepoc.game.kernel import simulate_state


@dataclass
class VerifyReport:
    height: int = 0
    blocks: int = 0
    tasks: int = 0
    evidence: int = 0
    signatures: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(home: Path, show_progress: bool = False) -> VerifyReport:
    home = Path(home)
    db = home / "data" / "chain.sqlite"
    if not db.exists():
        raise EdgepocError(f"{home}: no store at {db}")
    genesis = Genesis.load(home / "genesis.json")
    store = BlockStore(db)
    report = VerifyReport(height=store.height())
    state = rules.initial_state(genesis)
    states = {0: state}
    seen: set[str] = set()
    committed_evidence: set[str] = set()

    def evidence_ok(ev) -> None:
        if ev.id in committed_evidence:
            raise InvalidBlock("evidence: already committed")
        rules.check_evidence(genesis, ev, lambda hh: states.get(hh - 1))
    try:
        with Progress(disable=not show_progress, transient=True) as progress:
            job = progress.add_task("verifying blocks", total=report.height)
            for h in range(1, report.height + 1):
                progress.advance(job)
                try:
                    block, commit = store.block(h), store.commit(h)
                except InputError as exc:
                    report.problems.append(f"height {h}: stored block or commit is malformed ({exc})")
                    break
                if block is None or commit is None:
                    report.problems.append(f"height {h}: block or commit missing")
                    break
                if store.block_hash(h) != block.hash:
                    report.problems.append(f"height {h}: stored hash does not match the block")
                try:
                    rules.check_commit(genesis, commit, h, block.hash)
                    _, after = rules.check_block(genesis, state, block, task_is_new=lambda tid: tid not in seen,
                                                 evidence_ok=evidence_ok)
                except InvalidBlock as exc:
                    report.problems.append(f"height {h}: {exc}")
                    break
                report.signatures += len(commit.votes) + len(block.tasks) + (len(block.last_commit.votes) if block.last_commit else 0)
                stored = store.state(h)
                if stored is None or stored.to_dict() != after.to_dict():
                    report.problems.append(f"height {h}: stored state differs from the replayed state")
                if block.tasks:
                    inst = rules.block_instance(genesis, block.tasks, h)
                    _, completion, _ = simulate_state(inst, block.assignment, state.free_times)
                    for i, t in enumerate(block.tasks):
                        row = store.task(t.id)
                        lat = max(0.0, float(completion[i]) - t.arrival)
                        if row is None or row.get("height") != h or row.get("provider") != block.assignment[i] \
                                or row.get("latency") != lat:
                            report.problems.append(f"height {h}: task index entry for {t.id} is wrong")
                            break
                seen.update(t.id for t in block.tasks)
                committed_evidence.update(e.id for e in block.evidence)
                report.evidence += len(block.evidence)
                report.tasks += len(block.tasks)
                report.blocks += 1
                state = after
                states[h] = state
    finally:
        store.close()
    return report

"""`edgepoc chain verify` on a CometBFT node: re-execute the whole chain from the node's store alone.

Every committed block's raw transactions go through the same application code again, on a fresh
store: client signatures, bounds and replays, the kernel re-simulation (bit for bit), the Shapley
values, the quality rule, evidence penalties and voting powers. The replayed state, app hash, block
record and task index must equal the stored ones at every height.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgepoc.chain.abci.app import PocApplication
from edgepoc.chain.abci.node import load_genesis
from edgepoc.chain.abci.proto import pb
from edgepoc.chain.abci.store import AppStore
from edgepoc.chain.consensus import InvalidBlock
from edgepoc.errors import EdgepocError

@dataclass
class VerifyReport:
    height: int = 0
    blocks: int = 0
    tasks: int = 0
    evidence: int = 0
    signatures: int = 0  # client batch signatures re-verified
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


VOLATILE = ("committed_at", "last_commit")  # local wall time; CometBFT's commit info (checked by CometBFT)


def _request(rec: dict, txs: list[bytes]):
    from google.protobuf.timestamp_pb2 import Timestamp

    ns = int(rec["time_ns"])
    mis = [pb.Misbehavior(type=pb.MisbehaviorType.Value(e["kind"]), height=int(e["height"]),
                          validator=pb.Validator(address=bytes.fromhex(e["validator"]), power=int(e.get("power", 0))))
           for e in rec.get("evidence", [])]
    lc = rec.get("last_commit") or {}
    commit = pb.CommitInfo(round=int(lc.get("round", 0)), votes=[
        pb.VoteInfo(validator=pb.Validator(address=bytes.fromhex(v["address"]), power=int(v["power"])),
                    block_id_flag=2 if v["signed"] else 1) for v in lc.get("votes", [])])
    return pb.FinalizeBlockRequest(txs=txs, height=rec["height"], time=Timestamp(seconds=ns // 10**9, nanos=ns % 10**9),
                                   hash=bytes.fromhex(rec["hash"]), proposer_address=bytes.fromhex(rec["proposer"]),
                                   misbehavior=mis, decided_last_commit=commit)


def verify_app_chain(home: Path) -> VerifyReport:
    home = Path(home)
    db = home / "data" / "app.sqlite"
    if not db.exists():
        raise EdgepocError(f"{home}: no store at {db}")
    genesis = load_genesis(home)
    src = AppStore(db, readonly=True)
    report = VerifyReport(height=src.height())
    with tempfile.TemporaryDirectory() as tmp:
        app = PocApplication(genesis, AppStore(Path(tmp) / "replay.sqlite"))
        for h in range(1, report.height + 1):
            rec, txs, stored = src.block(h), src.txs(h), src.state(h)
            if rec is None or txs is None or stored is None:
                report.problems.append(f"height {h}: block record or state missing")
                break
            req = _request(rec, txs)
            try:
                votes = [(v["address"], v["signed"], int(v["power"])) for v in (rec.get("last_commit") or {}).get("votes", [])]
                checked = app.check_block(h, rec["time"], txs, votes)
            except InvalidBlock as exc:
                report.problems.append(f"height {h}: {exc}")
                break
            res = app.finalize_block(req)
            replayed = app.staged.record
            app.commit(None)
            if res.app_hash.hex() != rec["app_hash"] or stored.hash != rec["app_hash"]:
                report.problems.append(f"height {h}: app hash differs from the replayed state's")
            if stored.to_dict() != app.state.to_dict():
                report.problems.append(f"height {h}: stored state differs from the replayed state")
            if {k: v for k, v in rec.items() if k not in VOLATILE} != \
                    {k: v for k, v in replayed.items() if k not in VOLATILE}:
                keys = sorted(k for k in set(rec) | set(replayed) if k not in VOLATILE and rec.get(k) != replayed.get(k))
                report.problems.append(f"height {h}: stored block record differs from the replayed one in {keys}")
            if src.tasks_at(h) != app.store.tasks_at(h):
                report.problems.append(f"height {h}: task index differs from the replayed one")
            report.signatures += len(txs) - (1 if checked.allocation is not None else 0)
            report.tasks += len(checked.tasks)
            report.evidence += len(rec.get("evidence", []))
            report.blocks += 1
            if report.problems:
                break
    src.close()
    return report

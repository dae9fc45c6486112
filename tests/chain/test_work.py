"""Work, receipts, liveness and audits in the application, in process (issue 17).

Real modules (compiled by wasmtime in CheckTx), real validator-signed receipts, the protobuf requests
CometBFT sends; the worker's part is played by running the task with `edgepoc.execution.run_task`.
"""

from __future__ import annotations

import json
import re

import pytest

from edgepoc.chain.abci import wire
from edgepoc.chain.abci.proto import pb
from edgepoc.errors import InputError
from edgepoc.execution import compile_module, load_workload, run_task
from tests.chain.test_app import CHAIN, CLIENT, KEYS, Harness, make_genesis, ts

PRIMES = compile_module(load_workload("primes"), max_bytes=1 << 20)


def commit_info(signers: list[int]) -> pb.CommitInfo:
    g = make_genesis()
    return pb.CommitInfo(round=0, votes=[pb.VoteInfo(validator=pb.Validator(address=bytes.fromhex(v.address), power=10),
                                                     block_id_flag=2 if i in signers else 1)
                                         for i, v in enumerate(g.validators)])


class WorkHarness(Harness):
    """Heights with last-commit votes; `signers` = who signed the previous commit."""

    def height_with(self, txs: list[bytes], t: float, signers=(0, 1, 2, 3)) -> list[bytes]:
        lc = commit_info(list(signers))
        proposal = list(self.app.prepare_proposal(pb.PrepareProposalRequest(
            txs=txs, max_tx_bytes=4 << 20, height=self.height + 1, time=ts(self.genesis.genesis_time + t),
            local_last_commit=pb.ExtendedCommitInfo(round=0, votes=[
                pb.ExtendedVoteInfo(validator=v.validator, block_id_flag=v.block_id_flag) for v in lc.votes]))).txs)
        h = bytes([self.height + 1]) * 32
        status = self.app.process_proposal(pb.ProcessProposalRequest(
            txs=proposal, height=self.height + 1, time=ts(self.genesis.genesis_time + t), hash=h,
            proposed_last_commit=lc, proposer_address=bytes.fromhex(self.genesis.validators[1].address)))
        assert status.status == pb.PROCESS_PROPOSAL_STATUS_ACCEPT, self.app.checked
        self.app.finalize_block(pb.FinalizeBlockRequest(
            txs=proposal, height=self.height + 1, time=ts(self.genesis.genesis_time + t), hash=h,
            decided_last_commit=lc, proposer_address=bytes.fromhex(self.genesis.validators[1].address)))
        self.app.commit(pb.CommitRequest())
        self.height += 1
        return proposal


def module_tx() -> bytes:
    return wire.ModuleTx(CHAIN, CLIENT.public_hex, PRIMES.wasm).signed(CLIENT).tx()


def work_batch(n: int, nonce0: int, arg: int = 1000, fuel: int = 5_000_000) -> wire.TaskBatch:
    w = wire.Work(PRIMES.hash, "count", [arg], fuel, 1 << 20)
    return wire.TaskBatch(CHAIN, CLIENT.public_hex, [(nonce0 + i, []) for i in range(n)], work=[w] * n).signed(CLIENT)


def receipt_tx(i: int, rows: list[dict], wrong: bool = False, fuel: int | None = None) -> bytes:
    rs = []
    for w in rows:
        res = run_task(PRIMES, w["function"], w["args"], fuel=w["fuel"], memory_bytes=w["memory"])
        result = res.result + 1 if wrong else res.result
        from edgepoc.execution import result_hash

        rs.append(wire.Receipt(w["id"], res.status, result, result_hash(res.status, result),
                               res.fuel_used if fuel is None else fuel))
    return wire.ReceiptBatch(CHAIN, KEYS_BY_ADDRESS[i].address, rs).signed(KEYS_BY_ADDRESS[i]).tx()


KEYS_BY_ADDRESS: dict[int, object] = {}


def setup(tmp_path, **params) -> WorkHarness:
    h = WorkHarness(tmp_path, make_genesis(**params))
    for i, v in enumerate(h.genesis.validators):
        KEYS_BY_ADDRESS[i] = next(k for k in KEYS if k.address == v.address)
    assert h.check(module_tx()).code == 0
    h.height_with([module_tx()], 0.5)
    assert h.app.store.module(PRIMES.hash) is not None
    return h


def test_work_arguments_are_bounded_and_the_bad_one_is_named():
    ok = {"nonce": 1, "module": "ab" * 32, "function": "f", "args": [-2**63, 2**64 - 1], "fuel": 10, "memory": 1}
    assert wire.Work.from_dict(ok, "t").args == [-2**63, 2**64 - 1]
    for args, where in (([1, 2**64], "t.args[1]"), ([-2**63 - 1], "t.args[0]"), ([True], "t.args[0]"),
                        ([1.0], "t.args[0]"), (["1"], "t.args[0]"), (list(range(wire.MAX_ARGS + 1)), "t.args:"),
                        ("1,2", "t.args:")):
        with pytest.raises(InputError, match=re.escape(where)):
            wire.Work.from_dict({**ok, "args": args}, "t")


def test_an_argument_outside_its_parameter_type_is_refused_at_admission(tmp_path):
    """`count` takes an i32. 2^32 passed the wire's 64-bit bound and the argument count, was committed, and then
    every provider's worker died on it (the run checks the type's range) and was restarted into the same task:
    one request stopped all execution. Admission now applies the run's rule, naming the argument."""
    h = setup(tmp_path)
    for arg in (1 << 32, -(1 << 31) - 1):
        b = wire.TaskBatch(CHAIN, CLIENT.public_hex, [(1, [])],
                           work=[wire.Work(PRIMES.hash, "count", [arg], 1000, 1 << 20)]).signed(CLIENT)
        res = h.check(b)
        assert res.code != 0 and "tx.tasks[0].args: argument 0 of 'count' (i32) is out of range" in res.log, res.log
    # the edges of the range: an unsigned spelling is the same bits, as the run passes them
    ok = wire.TaskBatch(CHAIN, CLIENT.public_hex, [(2, []), (3, [])],
                        work=[wire.Work(PRIMES.hash, "count", [(1 << 32) - 1], 1000, 1 << 20),
                              wire.Work(PRIMES.hash, "count", [-(1 << 31)], 1000, 1 << 20)]).signed(CLIENT)
    assert h.check(ok).code == 0


def test_a_task_the_sandbox_refuses_is_a_trap_receipt_and_the_worker_goes_on(tmp_path):
    """Defence behind admission: were a task the run refuses, or whose outcome no receipt can carry, ever
    committed (a chain from before those checks holds such tasks), the worker reports it as a trap with the
    reason, the same on every provider, and runs the next task, instead of dying on it over and over or
    resending a refused receipt forever."""
    import hashlib

    import wasmtime

    from edgepoc.chain.abci.network import init_network
    from edgepoc.chain.abci.worker import Worker
    from edgepoc.execution import FunctionType, ModuleInfo

    init_network(tmp_path / "net", 1, 0, seed=1)
    worker = Worker(tmp_path / "net" / "node0")
    worker.modules[PRIMES.hash] = PRIMES  # the worker's own cache of admitted modules
    task = {"id": "t1", "module": PRIMES.hash, "function": "count", "fuel": 5_000_000, "memory": 1 << 20}
    refused = worker._run({**task, "args": [1 << 32]})
    assert refused.status == "trap" and refused.result is None and "out of range" in refused.error
    assert worker._run({**task, "args": [1000]}).result == 168
    # an export returning more values than a receipt carries, admitted by a version without that bound
    many = " ".join(["i64"] * 17)
    wasm_bytes = wasmtime.wat2wasm(f'(module (func (export "r") (result {many}) {"i64.const 1 " * 17}))')
    digest = hashlib.sha256(wasm_bytes).hexdigest()
    worker.modules[digest] = ModuleInfo(digest, wasm_bytes, {"r": FunctionType((), ("i64",) * 17)})
    unreportable = worker._run({**task, "module": digest, "function": "r", "args": []})
    assert unreportable.status == "trap" and "at most 16 integers" in unreportable.error


def test_work_tasks_are_checked_assigned_and_receipts_accepted_once(tmp_path):
    h = setup(tmp_path)
    bad = wire.Work("ab" * 32, "count", [1], 1000, 1 << 20)
    res = h.check(wire.TaskBatch(CHAIN, CLIENT.public_hex, [(1, [])], work=[bad]).signed(CLIENT))
    assert res.code != 0 and "unknown module" in res.log
    res = h.check(wire.TaskBatch(CHAIN, CLIENT.public_hex, [(1, [])],
                                 work=[wire.Work(PRIMES.hash, "nope", [1], 1000, 1 << 20)]).signed(CLIENT))
    assert res.code != 0 and "not exported" in res.log
    b = work_batch(12, 100)
    assert h.check(b).code == 0
    h.height_with([b.tx()], 1.0)
    rows = h.app.store.work(b.ids)
    assert len(rows) == 12 and all(r["status"] == "assigned" for r in rows.values())
    by = {}
    for r in rows.values():
        by.setdefault(r["provider"], []).append(r)
    i, mine = next(iter(by.items()))
    other = (i + 1) % 4
    # someone else's receipt for my work, and one over the declared fuel: both ignored
    h.height_with([receipt_tx(other, mine), receipt_tx(i, mine, fuel=10**9)], 1.5)
    assert all(r["status"] == "assigned" for r in h.app.store.work([w["id"] for w in mine]).values())
    tx = receipt_tx(i, mine)
    assert h.check(tx).code == 0
    h.height_with([tx], 2.0)
    done = h.app.store.work([w["id"] for w in mine])
    assert all(r["status"] == "executed" and r["result"] == 168 for r in done.values())
    assert all(abs(r["measured_latency"] - 1.0) < 1e-6 for r in done.values()), "block time with receipt - with task"
    assert h.app.state.receipts[i] == len(mine)
    # the same receipt again: stale in CheckTx, ignored in a block
    assert h.check(tx).code != 0
    h.height_with([tx], 2.5)
    assert h.app.state.receipts[i] == len(mine)


def test_an_absent_validator_gets_no_work_and_its_work_is_reassigned(tmp_path):
    h = setup(tmp_path)
    b = work_batch(40, 1000)
    h.height_with([b.tx()], 1.0)
    held = h.app.store.open_work(3)  # its tasks, and any audit copies it holds
    assert held, "node 3 got some of the work"
    for k in range(3):  # node 3 stops signing
        h.height_with([], 1.2 + 0.1 * k, signers=(0, 1, 2))
    moved = h.app.store.work([r["id"] for r in held])
    assert all(r["provider"] != 3 and r["reassigned"] == 1 for r in moved.values())
    assert h.app.state.overdue[3] == len(held)
    b2 = work_batch(40, 2000)
    h.height_with([b2.tx()], 2.0, signers=(0, 1, 2))
    assert all(r["provider"] != 3 for r in h.app.store.work(b2.ids).values())
    # back: signs again, gets work again
    h.height_with([], 2.5)
    b3 = work_batch(40, 3000)
    h.height_with([b3.tx()], 3.0)
    assert any(r["provider"] == 3 for r in h.app.store.work(b3.ids).values())


def test_overdue_work_is_reassigned_and_costs_its_provider(tmp_path):
    h = setup(tmp_path, receipt_grace=1.0, overdue_cooldown=5)
    b = work_batch(20, 1000)
    h.height_with([b.tx()], 1.0)
    by: dict[int, list] = {}
    for r in h.app.store.work(b.ids).values():
        by.setdefault(r["provider"], []).append(r)
    victim = max(by, key=lambda i: len(by[i]))
    # everyone else returns all it holds, audit copies included (task ids, hence audits, are random here: an
    # unanswered audit copy would put its holder on cooldown too, and with everyone cooling down nothing moves)
    others = [(i, h.app.store.open_work(i)) for i in range(len(KEYS)) if i != victim]
    h.height_with([receipt_tx(i, rs) for i, rs in others if rs], 1.5)
    score_before = h.app.state.scores[victim]
    held = h.app.store.open_work(victim)  # its tasks, and any audit copy it holds (task ids are random here)
    h.height_with([], 5.0)  # the victim's deadlines passed without a receipt
    moved = h.app.store.work([r["id"] for r in by[victim]])
    assert all(r["reassigned"] == 1 and r["provider"] != victim and r["status"] == "assigned" for r in moved.values())
    assert h.app.state.cooldown_until[victim] == h.height + 5 - 0 or h.app.state.cooldown_until[victim] >= h.height
    assert h.app.state.overdue[victim] == len(held) >= len(by[victim])
    assert h.app.state.scores[victim] < score_before
    # its late receipts are ignored: each task ends with one accepted result, from its new provider
    h.height_with([receipt_tx(victim, by[victim])], 5.5)
    assert all(r["status"] == "assigned" for r in h.app.store.work([r["id"] for r in by[victim]]).values())


def fake_receipt_tx(i: int, row: dict) -> bytes:
    """What a worker that never runs the task sends: a made-up result, half the fuel (the `fake` test build)."""
    from edgepoc.execution import result_hash

    r = wire.Receipt(row["id"], "ok", 424242, result_hash("ok", 424242), row["fuel"] // 2)
    return wire.ReceiptBatch(CHAIN, KEYS_BY_ADDRESS[i].address, [r]).signed(KEYS_BY_ADDRESS[i]).tx()


@pytest.mark.parametrize("liar", ["wrong result", "never ran"])
def test_an_audit_catches_a_wrong_result_and_penalises_its_provider(tmp_path, liar):
    h = setup(tmp_path, audit_per_million=1_000_000)  # audit everything
    b = work_batch(8, 500)
    h.height_with([b.tx()], 1.0)
    task = b.ids[0]
    fam = {w["id"]: w for w in h.app.store.work_of_task(task)}
    main, a1 = fam[task], fam[task + "/a1"]
    assert main["provider"] != a1["provider"]
    lie = receipt_tx(main["provider"], [main], wrong=True) if liar == "wrong result" else \
        fake_receipt_tx(main["provider"], main)
    h.height_with([lie, receipt_tx(a1["provider"], [a1])], 1.5)
    fam = {w["id"]: w for w in h.app.store.work_of_task(task)}
    a2 = fam[task + "/a2"]
    assert a2["provider"] not in (main["provider"], a1["provider"]) and a2["status"] == "assigned"
    before = h.app.state.scores[main["provider"]]
    h.height_with([receipt_tx(a2["provider"], [a2])], 2.0)
    fixed = h.app.store.work([task])[task]
    assert fixed["audit"]["verdict"] == "failed" and fixed["audit"]["overturned"]
    assert fixed["result"] == 168, "the accepted result is the majority's"
    assert h.app.state.audits_failed[main["provider"]] == 1
    assert h.app.state.penalties[main["provider"]] == 1
    assert h.app.state.scores[main["provider"]] < before


def test_chain_verify_replays_work_and_receipts(tmp_path):
    from edgepoc.chain.abci.verify import verify_app_chain

    h = setup(tmp_path)
    b = work_batch(10, 100)
    h.height_with([b.tx()], 1.0)
    rows = list(h.app.store.work(b.ids).values())
    by: dict[int, list] = {}
    for r in rows:
        by.setdefault(r["provider"], []).append(r)
    h.height_with([receipt_tx(i, rs) for i, rs in by.items()], 1.5)
    st = h.app.state
    assert all(type(x) is int for x in [*st.scores, *st.balances, *st.capacity_factor]), "no float in the ledger"
    # verify reads a node home: lay one out around this store
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "cometbft" / "config").mkdir(parents=True)
    h.app.store.close()
    (home / "data" / "app.sqlite").write_bytes(h.path.read_bytes())
    for side in tmp_path.glob(h.path.name + "-*"):
        (home / "data" / ("app.sqlite" + side.name[len(h.path.name):])).write_bytes(side.read_bytes())
    (home / "cometbft" / "config" / "genesis.json").write_text(json.dumps({"app_state": h.genesis.to_dict()}))
    report = verify_app_chain(home)
    assert report.ok, report.problems
    assert report.blocks == h.height


def test_exports_are_bounded_by_what_a_task_carries_and_a_receipt_reports():
    """A module admitted with an export returning 17+ values ran, but no receipt could carry the result: every
    provider resent a refused receipt batch forever (holding up its other receipts too) and the task was passed
    from provider to provider. The exports' bounds are now the wire's."""
    from edgepoc.execution import wasm

    assert wasm.MAX_RESULTS == wire.MAX_RESULT_INTS and wasm.MAX_ARGS == wire.MAX_ARGS
    many = " ".join(["i64"] * 17)
    with pytest.raises(InputError, match="export 'r' returns 17 values > limit 16"):
        compile_module(f'(module (func (export "r") (result {many}) {"i64.const 1 " * 17}))'.encode(), max_bytes=1 << 20)
    with pytest.raises(InputError, match="export 'p' takes 17 parameters > limit 16"):
        compile_module(f'(module (func (export "p") (param {many})))'.encode(), max_bytes=1 << 20)
    sixteen = " ".join(["i64"] * 16)
    info = compile_module(f'(module (func (export "r") (result {sixteen}) {"i64.const -1 " * 16}))'.encode(),
                          max_bytes=1 << 20)
    res = run_task(info, "r", [], fuel=1000, memory_bytes=1 << 16)
    assert res.result == [-1] * 16
    wire.Receipt.from_dict(wire.Receipt("t", res.status, res.result, res.result_hash, res.fuel_used).to_dict(), "r")


def _module_tx(i: int) -> tuple[bytes, str]:
    """A distinct valid module (its export returns i) as a client-signed transaction, and its hash."""
    wasm = wasmtime_wat(f'(module (func (export "x") (result i32) i32.const {i}))')
    m = wire.ModuleTx(CHAIN, CLIENT.public_hex, wasm).signed(CLIENT)
    return m.tx(), m.hash


def wasmtime_wat(text: str) -> bytes:
    import wasmtime

    return wasmtime.wat2wasm(text)


def test_a_flood_of_modules_neither_crowds_tasks_out_of_blocks_nor_fills_the_mempool(tmp_path):
    """Every block carried every pending module before the tasks (up to 2 MB: ~6 of the largest), and CheckTx
    compiled and kept any number of them: one client posting distinct modules starved every client's tasks.
    Now a block carries at most max_block_modules, and a node holds at most max_pending_modules."""
    h = setup(tmp_path, max_block_modules=2, max_pending_modules=3)
    mods = [_module_tx(i) for i in range(5)]
    for tx, _ in mods[:3]:
        assert h.check(tx).code == 0
    busy = h.check(mods[3][0])
    assert busy.code != 0 and busy.log.startswith("busy: 3 modules already wait for blocks here (max_pending_modules 3")
    assert h.check(mods[0][0]).code == 0, "the same pending module again is not one more"
    tasks = work_batch(5, 500)
    proposal = h.height_with([tx for tx, _ in mods[:3]] + [tasks.tx()], 1.0)
    assert sum(h.app.store.module(d) is not None for _, d in mods[:3]) == 2, "two modules per block"
    assert tasks.tx() in proposal, "the tasks are not crowded out"
    assert h.check(mods[3][0]).code == 0, "the committed modules made room"
    # a proposer that packs more modules than the rule allows is refused
    many = [tx for tx, _ in mods[2:5]]
    status = h.app.process_proposal(pb.ProcessProposalRequest(
        txs=many, height=h.height + 1, time=ts(h.genesis.genesis_time + 1.5), hash=b"m" * 32,
        proposer_address=bytes.fromhex(h.genesis.validators[1].address)))
    assert status.status == pb.PROCESS_PROPOSAL_STATUS_REJECT

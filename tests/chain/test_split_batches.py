"""Splitting a batch the chain refused as more than one block takes from a client (`client.split_oversized`)."""
from __future__ import annotations

from edgepoc.chain.abci.client import split_oversized
from edgepoc.chain.abci.wire import TaskBatch
from edgepoc.chain.crypto import SigningKey, canonical, verify


def _refusal(first_id: str, fits: int) -> dict:
    return {"id": first_id, "reason": f"the batch is more work than one block takes from a client; split it: "
                                       f"its first {fits} tasks fit in one batch"}


def test_a_refused_batch_is_re_signed_in_parts_that_keep_the_tasks_and_their_order():
    key = SigningKey.generate()
    batch = TaskBatch("chain", key.public_hex, [(n, [0.1, 0.2]) for n in range(10)]).signed(key)
    other = TaskBatch("chain", key.public_hex, [(n, [0.1, 0.2]) for n in range(10, 12)]).signed(key)
    parts, redo = split_oversized([batch, other], [_refusal(batch.ids[0], 5)], key)
    assert redo == set(batch.ids)  # the batch not refused is left alone
    assert [len(body["tasks"]) for body, _ in parts] == [4, 4, 2]  # 80 % of what fitted
    signed = [TaskBatch("chain", key.public_hex, [(t["nonce"], t["demand"]) for t in body["tasks"]], body["sig"])
              for body, _ in parts]
    assert [t for p in signed for t in p.ids] == batch.ids and all(p.signature_ok() for p in signed)
    assert [ids for _, ids in parts] == [p.ids for p in signed]


def test_a_receipts_planned_batch_is_split_in_its_wire_form():
    """A resumed `submit --receipt` has the planned batches as (signed wire dict, ids): they split the same way,
    each part a wire dict the client's key signed, with its own ids."""
    key = SigningKey.generate()
    batch = TaskBatch("chain", key.public_hex, [(n, [0.1, 0.2]) for n in range(10)]).signed(key)
    planned = (batch.to_dict(), list(batch.ids))
    parts, redo = split_oversized([planned], [_refusal(batch.ids[3], 5)], key)
    assert redo == set(batch.ids) and [len(ids) for _, ids in parts] == [4, 4, 2]
    for body, ids in parts:
        unsigned = {k: v for k, v in body.items() if k != "sig"}
        assert verify(key.public_hex, canonical(unsigned), body["sig"])
        assert TaskBatch("chain", key.public_hex, [(t["nonce"], t["demand"]) for t in body["tasks"]]).ids == ids
    assert [t for _, ids in parts for t in ids] == batch.ids


def test_batches_another_key_signed_are_not_split():
    mine, theirs = SigningKey.generate(), SigningKey.generate()
    batch = TaskBatch("chain", theirs.public_hex, [(n, [0.1, 0.2]) for n in range(10)]).signed(theirs)
    for item in (batch, (batch.to_dict(), list(batch.ids))):
        assert split_oversized([item], [_refusal(batch.ids[0], 5)], mine) == ([], set())

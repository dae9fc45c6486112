"""Test builds of a Byzantine proposer: the honest application with its proposals corrupted.

`EDGEPOC_BYZANTINE=grab-all,wrong-latency,duplicate` (or "byzantine" in a node's app.json) makes a node
run this subclass instead of `PocApplication`. Only what the node proposes changes; it checks, votes and
commits like any node, so the tests see honest validators reject its blocks and the chain go on.

- grab-all: every task of its blocks to itself (the quality rule rejects it);
- wrong-latency: the claimed latency halved (the bit-for-bit re-simulation rejects it);
- duplicate: a task batch twice in the block (the "appears twice" rule rejects it);
- censor: the batches of one client (the smallest public key in its mempool) left out of its blocks (valid
  blocks: the other validators' mempool reports show it, and it is fined); censor:HEX leaves out the clients
  whose public key starts with HEX.
"""

from __future__ import annotations

from edgepoc.chain import consensus as rules
from edgepoc.chain.abci import wire
from edgepoc.chain.abci.app import PocApplication
from edgepoc.errors import InputError

BYZANTINE_MODES = ("grab-all", "wrong-latency", "duplicate", "censor")


class ByzantineApplication(PocApplication):
    def __init__(self, *args, modes: list[str], **kw):
        super().__init__(*args, **kw)
        bad = {m for m in modes if m not in BYZANTINE_MODES and not m.startswith("censor:")}
        if bad:
            raise InputError(f"byzantine: unknown modes {sorted(bad)}; known: {', '.join(BYZANTINE_MODES)}")
        self.byzantine = frozenset("censor" if m.startswith("censor:") else m for m in modes)
        self.censor_prefix = next((m.split(":", 1)[1].lower() for m in modes if m.startswith("censor:")), None)

    def _prepare_proposal(self, req):
        if "censor" not in self.byzantine:
            return super()._prepare_proposal(req)
        clients = []
        for j, tx in enumerate(req.txs):
            try:
                parsed = self._parse_tx(j, tx, verify_sigs=False)
            except Exception:
                parsed = None
            clients.append(parsed.client if isinstance(parsed, wire.TaskBatch) else None)
        named = [c for c in clients if c is not None]
        if not named:
            return super()._prepare_proposal(req)
        victim = min(named) if self.censor_prefix is None else None
        left_out = (lambda c: c == victim) if victim is not None else (lambda c: c.startswith(self.censor_prefix))
        kept = type(req)()
        kept.CopyFrom(req)
        del kept.txs[:]
        kept.txs.extend(tx for tx, c in zip(req.txs, clients) if c is None or not left_out(c))
        return super()._prepare_proposal(kept)

    def _allocate(self, state, height, tasks, view) -> wire.Allocation:
        if "grab-all" not in self.byzantine or self.me is None:
            return super()._allocate(state, height, tasks, view)
        assignment = [self.genesis.index_of(self.me)] * len(tasks)
        effects = rules.block_effects(self.genesis, state, tasks, assignment, view)
        return wire.Allocation(assignment, effects.claimed_latency, effects.shapley.values, effects.shapley.stderr,
                               "grab-all", None)

    def _proposal_txs(self, head, chosen, alloc) -> list[bytes]:
        if "wrong-latency" in self.byzantine:
            alloc.claimed_latency *= 0.5
        if "duplicate" in self.byzantine and chosen:
            chosen = [*chosen, chosen[0]]
        return super()._proposal_txs(head, chosen, alloc)

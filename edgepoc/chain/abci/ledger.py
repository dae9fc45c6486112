"""FinalizeBlock's work step: new work, receipts, audits, measured capacity and liveness, over the store.

The rules are `edgepoc.chain.work`'s pure functions; this module reads the committed work ledger
(SQLite: committed state only, so every node reads the same) and returns the rows the block changes,
which Commit writes in the block's one transaction. Order inside a block: (1) the block's work tasks
are assigned (and some picked for audit), (2) receipts are accepted or ignored, (3) audits decided,
(4) capacity factors updated, (5) work that is overdue or held by an unavailable provider reassigned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgepoc.chain import work as works
from edgepoc.chain.consensus import ChainState
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import greedy_assignment, simulate_state

if TYPE_CHECKING:
    from edgepoc.chain.abci.app import BlockTask, CheckedBlock, PocApplication


@dataclass
class WorkOutcome:
    rows: dict[str, dict] = field(default_factory=dict)  # work rows inserted or changed, by id
    penalised: list[int] = field(default_factory=list)  # providers an audit found wrong
    overdue_providers: list[int] = field(default_factory=list)  # providers that missed a deadline
    summary: dict = field(default_factory=dict)


def _new_row(t: BlockTask, wid: str, kind: str, height: int, position: int, provider: int, clock: float,
             deadline: float, simulated: float | None) -> dict:
    w = t.work
    return {"id": wid, "task": t.id, "kind": kind, "height": height, "position": position, "provider": provider,
            "task_time": clock, "assigned_time": clock, "deadline": deadline, "module": w.module,
            "function": w.function, "args": w.args, "fuel": w.fuel, "memory": w.memory, "status": "assigned",
            "result": None, "result_hash": None, "fuel_used": None, "receipt_height": None,
            "measured_latency": None, "simulated_latency": simulated, "reassigned": 0, "audit": None,
            "exec_status": None}


def apply_work(app: PocApplication, after: ChainState, checked: CheckedBlock, block_hash: str,
               clock: float) -> WorkOutcome:
    g, p, store = app.genesis, app.params, app.store
    h = after.height
    out = WorkOutcome()
    rows = out.rows
    events: list = []
    available = list(checked.view.available)
    names = [v.name for v in g.validators]

    # (1) the block's work tasks: the allocation's provider, a deadline in block time, some audited
    tasks = checked.tasks
    if tasks and any(t.work is not None for t in tasks):
        assignment, completion = checked.allocation.assignment, checked.effects.completion
        wids = [t.id for t in tasks if t.work is not None]
        picked = {t for t, yes in zip(wids, works.audit_picks(block_hash, wids, p.audit_per_million)) if yes}
        for i, t in enumerate(tasks):
            if t.work is None:
                continue
            prov = int(assignment[i])
            deadline = completion[i] + p.receipt_grace
            rows[t.id] = _new_row(t, t.id, "main", h, i, prov, clock, deadline, completion[i] - t.arrival)
            events.append(["assign", t.id, prov])
            if t.id in picked:
                other = works.pick_other(block_hash, t.id + "/a1", [prov], available)
                if other is not None:
                    rows[t.id + "/a1"] = _new_row(t, t.id + "/a1", "audit", h, i, other, clock, deadline, None)
                    rows[t.id]["audit"] = {"verdict": None}  # pending: step (3) looks only at these tasks
                    events.append(["audit", t.id, other])

    # (2) receipts: accepted only from the provider the work is assigned to, once, within its fuel
    ids = [r.task for rb in checked.receipts for r in rb.receipts]
    known = store.work(ids) if ids else {}
    per: dict[int, list[tuple[int, float]]] = {}
    touched: set[str] = set()
    accepted = ignored = 0
    for rb in checked.receipts:
        pi = g.index_of(rb.provider)
        for r in rb.receipts:
            row = rows.get(r.task) or known.get(r.task)
            if row is None or row["status"] != "assigned" or row["provider"] != pi or r.fuel > row["fuel"]:
                ignored += 1
                continue
            row = {**row, "status": "executed", "result": r.result, "result_hash": r.result_hash, "fuel_used": r.fuel,
                   "receipt_height": h, "measured_latency": clock - row["task_time"], "exec_status": r.status}
            rows[r.task] = row
            accepted += 1
            after.receipts[pi] += 1
            if r.status != "trap":  # a trap's fuel count is a lower bound (wasmtime): no rate read from it
                per.setdefault(pi, []).append((r.fuel, row["assigned_time"]))
            if row["kind"] != "main" or row.get("audit") is not None:
                touched.add(row["task"])  # an audited task: step (3) compares its runs
            events.append(["receipt", r.task, pi, r.result_hash, r.status])

    # (3) audits: two results agree, or a third run decides and the odd one out is penalised
    verdicts = {"passed": 0, "failed": 0, "third_runs": 0}
    by_task: dict[str, list[dict]] = {}
    for w in rows.values():
        by_task.setdefault(w["task"], []).append(w)
    for task in sorted(touched):
        fam = {w["id"]: w for w in store.work_of_task(task)}
        fam.update({w["id"]: w for w in by_task.get(task, [])})
        main, a1, a2 = fam.get(task), fam.get(task + "/a1"), fam.get(task + "/a2")
        if main is None or a1 is None or (main.get("audit") or {}).get("verdict"):
            continue
        if main["status"] != "executed" or a1["status"] != "executed":
            continue
        if main["result_hash"] == a1["result_hash"]:
            rows[task] = {**main, "audit": {"verdict": "passed", "auditors": [names[a1["provider"]]]}}
            after.audits_passed[main["provider"]] += 1
            after.audits_passed[a1["provider"]] += 1
            verdicts["passed"] += 1
            events.append(["verdict", task, "passed"])
        elif a2 is None:
            third = works.pick_other(block_hash, task + "/a2", [main["provider"], a1["provider"]], available)
            if third is None:
                rows[task] = {**main, "audit": {"verdict": "unresolved", "auditors": [names[a1["provider"]]]}}
                continue
            span = a1["deadline"] - a1["assigned_time"]
            rows[task + "/a2"] = {**a1, "id": task + "/a2", "provider": third, "assigned_time": clock,
                                  "deadline": clock + span, "status": "assigned", "result": None, "result_hash": None,
                                  "fuel_used": None, "receipt_height": None, "measured_latency": None,
                                  "exec_status": None}
            verdicts["third_runs"] += 1
            events.append(["third-run", task, third])
        elif a2["status"] == "executed":
            if a2["result_hash"] == main["result_hash"]:
                wrong, right = [a1["provider"]], [main["provider"], a2["provider"]]
                fixed = main
            elif a2["result_hash"] == a1["result_hash"]:
                wrong, right = [main["provider"]], [a1["provider"], a2["provider"]]
                fixed = {**main, "result": a1["result"], "result_hash": a1["result_hash"],
                         "exec_status": a1["exec_status"]}
            else:
                wrong, right, fixed = [], [], main
            for i in wrong:
                out.penalised.append(i)
                after.audits_failed[i] += 1
            for i in right:
                after.audits_passed[i] += 1
            rows[task] = {**fixed, "audit": {"verdict": "failed" if wrong else "unresolved",
                                             "wrong": [names[i] for i in wrong],
                                             "overturned": fixed is not main}}
            verdicts["failed"] += 1 if wrong else 0
            events.append(["verdict", task, [names[i] for i in wrong]])

    # (4) measured capacity from the fuel each provider reported over block time
    for pi, items in sorted(per.items()):
        fuel = sum(f for f, _ in items)
        start = max(after.last_receipt_time[pi], min(a for _, a in items))
        backlog = [w for w in store.backlog_ids(pi, clock - p.backlog_allowance) if w not in rows]
        declared = g.validators[pi].capacity[0] * p.fuel_per_unit
        after.capacity_factor[pi] = works.capacity_factor(p, after.capacity_factor[pi], declared, fuel, clock - start,
                                                          bool(backlog))
        after.last_receipt_time[pi] = clock

    # (5) liveness: overdue work, and the work of providers that stopped signing, goes elsewhere
    unavailable = [i for i, a in enumerate(available) if not a]
    stale = [w for w in store.overdue_work(clock, unavailable) if w["id"] not in rows or rows[w["id"]]["status"] == "assigned"]
    stale = [rows.get(w["id"], w) for w in stale]
    late = sorted({w["provider"] for w in stale if available[w["provider"]] and w["deadline"] < clock})
    for i in late:
        after.cooldown_until[i] = h + p.overdue_cooldown
    out.overdue_providers = late
    for w in stale:
        after.overdue[w["provider"]] += 1
    usable = [a and after.cooldown_until[i] < h + 1 for i, a in enumerate(available)]
    reassigned = 0
    if stale and any(usable):
        # main tasks: the kernel's greedy (earliest completion, lowest index on ties) on the queues as this
        # block left them, unusable providers masked out; they arrive now
        mains = [w for w in stale if w["kind"] == "main"]
        placed: dict[str, tuple[int, float]] = {}
        if mains:
            demand = np.array([works.work_demand(p, g.n_resources, w["fuel"], w["memory"]) for w in mains])
            inst = Instance.create(works.effective_capacity(g, after.capacity_factor, after.receipts), g.delays,
                                   [clock] * len(mains), demand, None, name=f"reassign-{h}")
            masked = works.masked_free_times(after.free_times, usable)
            a, _ = greedy_assignment(inst, masked)
            _, completion, free_after = simulate_state(inst, a, masked)
            after.free_times = [float(f) if u else old for f, old, u in zip(free_after, after.free_times, usable)]
            placed = {w["id"]: (int(k), float(c)) for w, k, c in zip(mains, a, completion)}
        for w in stale:
            if w["kind"] == "main":
                best, best_c = placed[w["id"]]
                rows[w["id"]] = {**w, "provider": best, "assigned_time": clock, "deadline": best_c + p.receipt_grace,
                                 "reassigned": w["reassigned"] + 1}
                events.append(["reassign", w["id"], w["provider"], best])
            else:
                fam = store.work_of_task(w["task"])
                taken = {x["provider"] for x in fam} | {x["provider"] for x in rows.values() if x["task"] == w["task"]}
                other = works.pick_other(block_hash, w["id"] + f"/r{h}", sorted(taken), usable)
                if other is None:
                    rows[w["id"]] = {**w, "status": "dropped"}
                    events.append(["drop", w["id"]])
                    continue
                rows[w["id"]] = {**w, "provider": other, "assigned_time": clock,
                                 "deadline": clock + (w["deadline"] - w["assigned_time"]), "reassigned": w["reassigned"] + 1}
                events.append(["reassign", w["id"], w["provider"], other])
            reassigned += 1
    after.work_digest = works.work_digest(after.work_digest, events)
    out.summary = {"assigned": sum(1 for w in rows.values() if w["assigned_time"] == clock and w["reassigned"] == 0
                                   and w["status"] == "assigned"),
                   "receipts": accepted, "ignored_receipts": ignored, "reassigned": reassigned,
                   "overdue_providers": [names[i] for i in late], **verdicts}
    return out

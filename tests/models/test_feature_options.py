"""The general model's feature options (issue 18 item 4), both off by default (the bundled models):
`GeneralConfig.time_scale` ("mean" processing time, or "median") and `GeneralConfig.dyn_input` (the head's
tanh sees the dynamic features "linear", or "log": sign(v) log(1 + |v|)). Each option travels in the
checkpoint and the `.npz`, and the NumPy path stays bit-identical to the torch-loaded one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgepoc.errors import InputError
from edgepoc.game.generators import alibaba, paper
from edgepoc.models.checkpoint import bundled_path, load_model, save_checkpoint
import torch

from edgepoc.models.general.decode import DYN_INPUTS, SCALE_RULES, onepass, time_scale, trajectory_features
from edgepoc.models.general.model import GeneralConfig, embedding
from edgepoc.models.general.portable import load_portable, npz_beside, task_features
from edgepoc.models.general.train import GeneralTrainConfig
from edgepoc.solvers.registry import SolveOptions, solve
from tests.models.test_portable import CONFIGS, random_model


def test_default_is_the_mean_and_the_bundled_models_keep_it():
    assert GeneralConfig().time_scale == "mean" and GeneralTrainConfig().time_scale == "mean"
    assert GeneralConfig().dyn_input == "linear" and GeneralTrainConfig().dyn_input == "linear"
    assert SCALE_RULES == ("mean", "median") and DYN_INPUTS == ("linear", "log")
    for kind in ("teacher", "student"):
        model, _ = load_model(bundled_path(kind), kind)
        assert model.config.time_scale == "mean" and model.head().scale == "mean"
        assert model.config.dyn_input == "linear" and model.head().dyn_input == "linear"
        h = load_portable(bundled_path(kind), kind).head()
        assert h.scale == "mean" and h.dyn_input == "linear"
        # since 2026-11-29 the bundled pair reads greedy AND priced pilots (docs/models.md, "Priced pilots"), the
        # priced one partly on a fixed plan where tails are heavy ("Mixed pilots")
        assert model.config.pilot == h.pilot == "mixed" and model.config.horizon == h.horizon == 50 and h.v is None


def test_time_scale_rules():
    inst = alibaba(3000, 0, n_tasks=200, providers=3)
    assert time_scale(inst) == float(inst.processing.mean())
    assert time_scale(inst, "median") == float(np.median(inst.processing))
    assert time_scale(inst, "median") < 0.5 * time_scale(inst)  # heavy tail: the mean is far above a typical task
    with pytest.raises(InputError):
        time_scale(inst, "max")
    a, b = task_features(inst), task_features(inst, "median")
    assert a.shape == b.shape and not np.array_equal(a, b)
    x = solve(inst, "greedy", SolveOptions()).assignment
    assert np.allclose(trajectory_features(inst, x, scale="median")[..., 0] * time_scale(inst, "median"),
                       trajectory_features(inst, x)[..., 0] * time_scale(inst))


@pytest.mark.parametrize("config", CONFIGS, ids=["student", "teacher"])
def test_a_median_model_round_trips_and_numpy_equals_torch(config, tmp_path):
    config = replace(config, time_scale="median")
    model = random_model(3, config)
    save_checkpoint(tmp_path / "m.pt", model)
    loaded, _ = load_model(tmp_path / "m.pt", config.kind)
    portable = load_portable(tmp_path / "m.pt", config.kind)
    assert loaded.config.time_scale == "median" and portable.config.time_scale == "median"
    for inst in (alibaba(3001, 1, n_tasks=120, providers=4), paper(3002, 0, n_tasks=80, providers=3)):
        emb = embedding(model, inst)
        assert np.array_equal(emb, portable.embed(inst))
        h = portable.head()
        assert h.scale == "median" and model.head().scale == "median"
        x1, f1, _ = onepass(inst, emb, model.head())
        x2, f2, _ = onepass(inst, portable.embed(inst), h)
        assert np.array_equal(x1, x2) and f1 == f2
        # the unit matters: the same weights in mean units decode from other features
        mean_model = random_model(3, replace(config, time_scale="mean"))
        assert not np.array_equal(emb, embedding(mean_model, inst)) or inst.n_tasks == 0


@pytest.mark.parametrize("config", CONFIGS, ids=["student", "teacher"])
def test_log_dyn_input_round_trips_and_the_compiled_head_equals_torch(config, tmp_path):
    config = replace(config, dyn_input="log")
    model = random_model(5, config)
    save_checkpoint(tmp_path / "m.pt", model)
    portable = load_portable(tmp_path / "m.pt", config.kind)
    assert load_model(tmp_path / "m.pt", config.kind)[0].config.dyn_input == "log"
    inst = alibaba(3003, 2, n_tasks=150, providers=3)
    emb = embedding(model, inst)
    assert np.array_equal(emb, portable.embed(inst))
    head = portable.head()
    assert head.dyn_input == "log" and head.with_flat(head.flat()).dyn_input == "log"
    x, f, scores = onepass(inst, emb, head, keep_scores=True)
    assert np.array_equal(x, onepass(inst, emb, model.head())[0])
    # the compiled head's scores along its own decode are the torch head's (float64)
    dyn = torch.from_numpy(trajectory_features(inst, x, head.horizon))
    with torch.no_grad():
        ref = model.double().scores(torch.from_numpy(emb), dyn).numpy()
    assert np.allclose(scores, ref, rtol=1e-10, atol=1e-10)
    # and "log" is not "linear": the same weights score differently on a heavy-tailed window
    lin = onepass(inst, emb, replace(head, dyn_input="linear"), keep_scores=True)[2]
    assert not np.allclose(scores, lin)


def test_the_log_pilot_prior_is_still_the_rollout_method():
    """`head_prior="log_pilot"`: minus log(1 + pilot regret) ranks providers as minus the regret does (up to
    near-ties that the log rounds together: the same total delay here)."""
    from edgepoc.game.kernel import simulate
    from edgepoc.models.general.model import GeneralAllocationModel
    from edgepoc.models.general.train import set_head_prior
    from edgepoc.solvers.rollout import rollout_assignment

    model = GeneralAllocationModel(GeneralConfig(hidden=8, gnn_layers=1, provider_hidden=4, pair_hidden=8,
                                                 head_hidden=4))
    set_head_prior(model, "log_pilot")
    head = model.head()
    assert head.c[6] == -1.0 and np.count_nonzero(head.c) == 1 and not head.w.any()
    for inst in (alibaba(3004, 0, n_tasks=300, providers=4), paper(3005, 0, n_tasks=200, providers=5)):
        x, total, _ = onepass(inst, np.zeros((inst.n_tasks, inst.n_providers, 4)), head)
        r = rollout_assignment(inst)
        assert np.mean(x == r) >= 0.98 and total == pytest.approx(simulate(inst, r), rel=1e-9)
    with pytest.raises(InputError):
        set_head_prior(model, "none")


def test_the_priced_pilot_prior_is_the_priced_rollout_method():
    """`pilot="priced"` with an untrained head decides exactly as `solve --method rollout --param base=priced` at the
    same look-ahead: the pilot features are the priced rollout's costs, its rates carried along the decode."""
    from edgepoc.models.general.decode import Head
    from edgepoc.solvers.rollout import DEFAULT_PRICE, rollout_assignment

    for inst, horizon in ((alibaba(3006, 0, n_tasks=300, providers=3), 50), (paper(3007, 0, n_tasks=150, providers=5), 20)):
        head = replace(Head.rollout_prior(4, horizon=horizon), pilot="priced")
        x, total, _ = onepass(inst, np.zeros((inst.n_tasks, inst.n_providers, 4)), head)
        assert np.array_equal(x, rollout_assignment(inst, horizon, price=DEFAULT_PRICE))
        greedy_pilots = onepass(inst, np.zeros((inst.n_tasks, inst.n_providers, 4)), replace(head, pilot="greedy"))[0]
        assert np.array_equal(greedy_pilots, rollout_assignment(inst, horizon))
        assert not np.array_equal(x, greedy_pilots)
    with pytest.raises(InputError, match="pilot"):
        trajectory_features(inst, x, pilot="best")


def test_the_mixed_pilot_prior_is_the_mixed_rollout_method():
    """An untrained head that reads only the mixed pilot's regret decides as `solve --method rollout --param
    base=mixed`: the model's feature and the no-model method are one cost, at the same fixed-plan share and
    look-ahead (half on the plan and 1.5 x as far on heavy tails; on light ones the mixed pilot IS the priced one),
    and on heavy tails both also run with no share and keep the better (`rollout.plan_shares`)."""
    from edgepoc.game.generators import heavy as heavy_tailed
    from edgepoc.game.kernel import simulate
    from edgepoc.models.general.decode import Head, best_onepass
    from edgepoc.solvers.rollout import (DEFAULT_PRICE, MIXED_HORIZON, fixed_plan_weight, mixed_horizon,
                                         rollout_assignment)

    heavy, light = alibaba(3006, 1, n_tasks=300, providers=3), paper(3007, 1, n_tasks=150, providers=4)
    assert fixed_plan_weight(heavy) == 0.5 and fixed_plan_weight(light) == 0.0
    assert mixed_horizon(MIXED_HORIZON, 0.5) == 75 and mixed_horizon(MIXED_HORIZON, 0.0) == MIXED_HORIZON == 50
    for inst in (heavy, light):
        head = replace(Head.rollout_prior(4, horizon=MIXED_HORIZON), pilot="mixed")
        head.c[:] = 0.0
        head.c[1] = -1.0  # "pilot5_regret": the mixed pilot's slot
        x = onepass(inst, np.zeros((inst.n_tasks, inst.n_providers, 4)), head)[0]
        w = fixed_plan_weight(inst)
        h = mixed_horizon(MIXED_HORIZON, w)
        assert np.array_equal(x, rollout_assignment(inst, h, price=DEFAULT_PRICE, mix=w))
        assert np.array_equal(x, rollout_assignment(inst, h, price=DEFAULT_PRICE)) == (w == 0.0)
        r = solve(inst, "rollout", SolveOptions(params={"base": "mixed"}))
        assert np.array_equal(r.assignment, x) and r.extra["mix"] == w and r.extra["horizon"] == h
        # the method and the model's deployed one-pass try the same shares and keep the same one
        assert np.array_equal(best_onepass(inst, np.zeros((inst.n_tasks, inst.n_providers, 4)), head)[0], x)
        both = trajectory_features(inst, x, MIXED_HORIZON, pilot="both")
        assert np.array_equal(trajectory_features(inst, x, MIXED_HORIZON, pilot="mixed"), both) == (w == 0.0)
    # on a tail where the share loses, both drop it
    bimodal = heavy_tailed(6200, 0, n_tasks=300, tail="bimodal", load=0.5)
    head = replace(Head.rollout_prior(4, horizon=MIXED_HORIZON), pilot="mixed")
    head.c[:] = 0.0
    head.c[1] = -1.0
    x, total, _, share = best_onepass(bimodal, np.zeros((300, bimodal.n_providers, 4)), head)
    r = solve(bimodal, "rollout", SolveOptions(params={"base": "mixed"}))
    assert share == 0.0 and r.extra["mix"] == 0.0 and r.extra["horizon"] == MIXED_HORIZON
    assert np.array_equal(r.assignment, x) and r.total_latency == total
    assert total < simulate(bimodal, rollout_assignment(bimodal, 75, price=DEFAULT_PRICE, mix=0.5))
    for params, word in (({"base": "priced", "mix": 0.3}, "mix"), ({"base": "mixed", "mix": 1.5}, "mix"),
                         ({"base": "mixed", "price": 0.0, "mix": 0.5}, "mix")):
        with pytest.raises(InputError, match=word):
            solve(inst, "rollout", SolveOptions(params=params))


def test_the_fixed_plan_share_follows_the_tail_of_the_task_sizes():
    """`fixed_plan_weight`: 0 up to a coefficient of variation of 0.8 of the tasks' sizes, 0.5 from 1.2, linear
    between; what the mixed pilot (model and rollout) uses on an instance."""
    from edgepoc.game.instance import Instance
    from edgepoc.solvers.rollout import fixed_plan_weight

    def sized(p):  # tasks whose processing times are proportional to p, the same on both providers
        inst = Instance.create(np.ones((2, 1)), np.zeros(2), np.arange(len(p), dtype=float),
                               np.asarray(p, dtype=float)[:, None] / 10, name="t")
        assert np.allclose(inst.processing[:, 0] / inst.processing[0, 0], np.asarray(p) / p[0])
        return inst

    assert fixed_plan_weight(sized([1.0, 1.0, 1.0, 1.0])) == 0.0
    assert fixed_plan_weight(sized([1.0])) == 0.0
    assert fixed_plan_weight(sized([1.0, 1.0, 1.0, 4.0])) == 0.0  # cv 0.75: a light tail
    assert fixed_plan_weight(sized([1.0] * 9 + [20.0])) == 0.5  # cv 1.97
    assert fixed_plan_weight(sized([1.0] * 7 + [6.0])) == pytest.approx(0.272, abs=0.005)  # cv 1.018


@pytest.mark.parametrize("config", CONFIGS, ids=["student", "teacher"])
@pytest.mark.parametrize("pilot,gate", [("priced", False), ("both", True), ("mixed", False)])
def test_a_priced_pilot_model_round_trips_and_the_compiled_head_equals_torch(config, pilot, gate, tmp_path):
    """Priced (or both) pilots and the head's gate travel in the checkpoint and the .npz; the compiled head's scores
    along its own decode are the torch head's, so training (torch) optimises what nodes decode (Numba)."""
    config = replace(config, pilot=pilot, horizon=30, gate=gate)
    model = random_model(7, config)
    save_checkpoint(tmp_path / "m.pt", model)
    portable = load_portable(tmp_path / "m.pt", config.kind)
    loaded = load_model(tmp_path / "m.pt", config.kind)[0]
    assert loaded.config.pilot == pilot and portable.config.pilot == pilot and portable.config.gate == gate
    head = portable.head()
    again = head.with_flat(head.flat())
    assert head.pilot == pilot and head.horizon == 30 and again.pilot == pilot
    assert (head.v is not None) == gate and np.array_equal(again.gate(), head.gate())
    if gate:
        assert head.v.any() and load_portable(npz_beside(tmp_path / "m.pt"), config.kind).config.gate
    inst = alibaba(3008, 1, n_tasks=160, providers=4)
    emb = embedding(model, inst)
    x, f, scores = onepass(inst, emb, head, keep_scores=True)
    assert np.array_equal(x, onepass(inst, portable.embed(inst), loaded.head())[0])
    dyn = torch.from_numpy(trajectory_features(inst, x, 30, pilot=pilot))
    with torch.no_grad():
        ref = model.double().scores(torch.from_numpy(emb), dyn).numpy()
    assert np.allclose(scores, ref, rtol=1e-10, atol=1e-10)


def test_train_general_rejects_a_bad_pilot_in_one_line(tmp_path):
    from tests.conftest import run_cli

    for args, word in ((["--pilot", "best"], "--pilot"), (["--horizon", "0"], "--horizon")):
        r = run_cli("train-general", "--out", str(tmp_path / "r"), *args)
        assert r.returncode != 0 and r.stderr.strip().startswith(f"error: {word}") and len(r.stderr.strip().splitlines()) == 1


def test_the_mixed_pilot_averages_the_priced_pilot_with_the_same_tasks_on_a_fixed_plan():
    """`pilot="mixed"` on a heavy-tailed window: feature 1 is the regret of half the priced pilot's cost plus half the
    cost of the same look-ahead tasks (1.5 x the horizon) on a FIXED plan (priced greedy's choices for them from the
    queues without task i), checked here against the kernel's own simulation of that plan; the other features
    are the "both" pilot's."""
    from edgepoc.game.kernel import simulate
    from edgepoc.models.general.decode import pilot_settings
    from edgepoc.solvers.rollout import decay_rates, fixed_plan_weight, priced_pilot_cost, priced_step

    inst = alibaba(3009, 0, n_tasks=60, providers=3)
    horizon = 12
    x = np.random.default_rng(0).integers(0, 3, 60)
    mixed = trajectory_features(inst, x, horizon, pilot="mixed")
    both = trajectory_features(inst, x, horizon, pilot="both")
    assert np.array_equal(np.delete(mixed, 1, axis=2), np.delete(both, 1, axis=2))
    _, price, memory, weight = pilot_settings(inst, "mixed")
    assert weight == fixed_plan_weight(inst) == 0.5  # a heavy-tailed window: half on the fixed plan
    scale = time_scale(inst)
    free, rate = np.zeros(3), np.zeros(3)
    for i in range(60):
        if i:
            decay_rates(rate, inst.arrival[i] - inst.arrival[i - 1], memory)
        end = min(60, i + 1 + horizon + horizon // 2)
        f, r, plan = free.copy(), rate.copy(), []  # the plan: priced greedy without task i
        for j in range(i + 1, end):
            decay_rates(r, inst.arrival[j] - inst.arrival[j - 1], memory)
            plan.append(priced_step(inst.arrival[j], inst.ready[j], inst.processing[j], f, r, price, memory)[0])
        cost = []
        for k in range(3):
            sub = inst.subset(slice(i, end))
            on_plan = simulate(sub, np.array([k] + plan), free)  # task i and the fixed plan, by the kernel
            c = max(free[k], inst.ready[i, k]) + inst.processing[i, k]
            adaptive = max(c - inst.arrival[i], 0.0) + priced_pilot_cost(
                inst.arrival, inst.ready, inst.processing, free, rate, k, c, i + 1, end, price, memory,
                np.empty(3), np.empty(3))
            cost.append((1 - weight) * adaptive + weight * on_plan)
        cost = np.array(cost)
        assert np.allclose(mixed[i, :, 1], (cost - cost.min()) / scale, rtol=1e-9, atol=1e-9), i
        k = x[i]
        free[k] = max(free[k], inst.ready[i, k]) + inst.processing[i, k]
        rate[k] += 1.0 / memory


def test_on_heavy_tails_the_deployed_one_pass_keeps_the_better_of_share_and_none():
    """The fixed-plan share was chosen on Alibaba windows; on other heavy tails it can cost a great deal (bimodal
    sizes: benchmarks/results/heavy-tails.md). So `solve`'s one-pass decodes a heavy-tailed instance with the
    instance's share and with none, and keeps the better; a light-tailed one is decoded once, as before."""
    from edgepoc.game.generators import heavy
    from edgepoc.game.kernel import simulate
    from edgepoc.models.general.decode import best_onepass, plan_shares

    for kind in ("teacher", "student"):
        m = load_portable(None, kind)
        head = m.head()
        seen_better = set()
        for inst in [heavy(6200, i, n_tasks=300, tail=t, load=0.5) for i, t in enumerate(("bimodal", "pareto"))] \
                + [alibaba(3006, 1, n_tasks=300, providers=3)]:
            emb = m.embed(inst)
            assert plan_shares(inst, head) == (0.5, 0.0)
            with_share = onepass(inst, emb, head)
            without = onepass(inst, emb, head, plan_share=0.0)
            assert not np.array_equal(with_share[0], without[0])  # two decodes that differ
            x, total, _, share = best_onepass(inst, emb, head)
            assert total == min(with_share[1], without[1]) == simulate(inst, x)
            assert share == (0.5 if with_share[1] <= without[1] else 0.0)
            seen_better.add(share)
            r = solve(inst, kind, SolveOptions(params={"decode": "onepass"}))
            assert np.array_equal(r.assignment, x) and r.extra["plan_share"] == share
        assert seen_better == {0.0, 0.5}, seen_better  # the share wins on the trace window, loses on the others
        light = paper(3007, 1, n_tasks=150, providers=4)
        assert plan_shares(light, head) == (0.0,)
        r = solve(light, kind, SolveOptions(params={"decode": "onepass"}))
        assert np.array_equal(r.assignment, onepass(light, m.embed(light), head)[0]) and "plan_share" not in r.extra

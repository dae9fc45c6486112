"""Fine-tuning the general model (issue 18 item 4): DAgger with GA relabelling (labels at the states the
model's own decode reaches) and POMO-style policy gradient on f(x)."""

from __future__ import annotations

import numpy as np

from edgepoc.game.generators import paper
from edgepoc.models.checkpoint import bundled_path, load_cached
from edgepoc.models.general.model import embedding
from edgepoc.models.general.decode import onepass, trajectory_features
from edgepoc.models.general.train import GeneralTrainConfig, dagger_finetune, dagger_sample, policy_gradient
from edgepoc.solvers.ga import GAConfig, PolicyModel


def test_one_segment_is_the_ga_label_with_its_own_features():
    inst = paper(5000, 0, n_tasks=40, providers=3)
    model, _ = load_cached(None, "teacher")
    emb = embedding(model, inst)
    s = dagger_sample(inst, emb, model.head(), seed=11, segment=100, window=100, generations=3)
    ga = PolicyModel(GAConfig(generations=3), seed=11).solve(inst, np.zeros(3)).assignment
    assert np.array_equal(s.labels, ga)
    assert np.array_equal(s.dyn, trajectory_features(inst, ga, model.config.horizon, pilot=model.config.pilot))


def test_segments_start_from_the_models_own_queues():
    inst = paper(5000, 1, n_tasks=60, providers=4)
    model, _ = load_cached(None, "teacher")
    emb = embedding(model, inst)
    head = model.head()
    s = dagger_sample(inst, emb, head, seed=3, segment=20, window=60, generations=2)  # the pilots see to the end
    assert s.labels.shape == (60,) and s.dyn.shape == (60, 4, trajectory_features(inst, s.labels).shape[2])
    pilot = model.config.pilot
    assert s.labels.min() >= 0 and s.labels.max() < 4
    # the first row of segment 2 is what the decoder sees after its own first 20 choices (not the labels')
    x_m = onepass(inst, emb, head)[0]
    mixed = np.concatenate([x_m[:20], s.labels[20:]])
    assert np.allclose(s.dyn[20], trajectory_features(inst, mixed, model.config.horizon, pilot=pilot)[20])


def test_dagger_finetune_runs_and_keeps_a_checkpoint(tmp_path):
    cfg = GeneralTrainConfig(count=2, val_count=1, es_generations=0)
    meta = dagger_finetune(bundled_path("teacher"), tmp_path, cfg, rounds=1, epochs=1, segment=50, window=60,
                           generations=1, show=False)
    assert (tmp_path / "teacher.pt").is_file() and (tmp_path / "log.json").is_file()
    assert meta["val_ratio_to_rollout"] <= meta["start_val_ratio_to_rollout"] + 1e-12  # best kept, never worse


def test_sampled_decode_at_low_temperature_is_the_argmax_decode():
    inst = paper(5000, 2, n_tasks=80, providers=3)
    model, _ = load_cached(None, "teacher")
    emb, head = embedding(model, inst), model.head()
    x_ref, f_ref, _ = onepass(inst, emb, head)
    x, f, _ = onepass(inst, emb, head, uniforms=np.full(80, 0.5), temperature=1e-9)
    assert np.array_equal(x, x_ref) and f == f_ref
    y, _, _ = onepass(inst, emb, head, uniforms=np.random.default_rng(0).random(80), temperature=10.0)
    assert not np.array_equal(y, x_ref)  # a high temperature explores


def test_policy_gradient_runs_and_never_returns_worse_than_its_start(tmp_path, monkeypatch):
    from edgepoc.models.general import train

    drawn = []
    real = train.mix_instances
    monkeypatch.setattr(train, "mix_instances", lambda *a: drawn.append(a) or real(*a))
    cfg = GeneralTrainConfig(count=2, val_count=1, mix="heavy")
    meta = policy_gradient(bundled_path("teacher"), tmp_path, cfg, epochs=1, samples=2, show=False)
    assert (tmp_path / "teacher.pt").is_file()
    assert meta["val_ratio_to_rollout"] <= meta["start_val_ratio_to_rollout"] + 1e-12
    assert drawn == [("heavy", 1000, 2), ("heavy", 2000, 1)]  # the configured mix, training and validation


def test_train_general_from_a_model_fine_tunes_its_head_on_new_pilots(tmp_path):
    """`train-general --from M --pilot P --horizon H`: the encoders kept, the head's ES on f(x) with the new pilot
    features; the result decodes with them and is never worse on validation than where it started."""
    import json

    from edgepoc.models.checkpoint import load_model
    from tests.conftest import run_cli

    r = run_cli("train-general", "--from", "bundled-student", "--out", str(tmp_path), "--count", "3",
                "--val-count", "2", "--es-generations", "2", "--es-pairs", "2", "--pilot", "mixed",
                "--horizon", "30")
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout.strip().splitlines()[-1])
    bundled_cfg = load_model(bundled_path("student"), "student")[0].config
    assert meta["from_pilot"] == {"pilot": bundled_cfg.pilot, "horizon": bundled_cfg.horizon}
    assert meta["from"] == "bundled-student" and meta["from_meta"]["params"] == meta["params"]
    assert meta["val_ratio_to_rollout"] <= meta["val_ratio_to_rollout_at_start"] + 1e-12
    model, _ = load_model(tmp_path / "student.pt", "student")
    bundled, _ = load_model(bundled_path("student"), "student")
    assert model.config.pilot == model.head().pilot == "mixed" and model.head().horizon == 30
    for name, w in bundled.state_dict().items():  # the encoders are the bundled student's
        if not name.startswith("head"):
            assert np.array_equal(w.numpy(), model.state_dict()[name].numpy()), name
    assert (tmp_path / "student.npz").is_file()
    for args, word in ((["--from", str(tmp_path / "none.pt")], "--from: no model file"),
                       (["--from", "bundled-teacher", "--data", str(tmp_path)], "--from")):
        bad = run_cli("train-general", "--out", str(tmp_path / "x"), *args)
        assert bad.returncode == 2 and bad.stderr.strip().startswith(f"error: {word}"), bad.stderr

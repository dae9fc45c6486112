"""Training the general model: a mixed market curriculum, imitation, then direct optimisation of f(x).

1. Instances: a mix (`training_mix`) of the `paper`, `varied` and `alibaba` presets, bursty arrivals and
   per-task delays, 2-12 providers, 1-4 resources (alibaba: 2), 100-600 tasks; instance `i` of a seed is
   the same whatever the count.
2. Imitation: GA labels (the paper's meta strategy, its default generation budget, so labels do not
   depend on machine speed); the dynamic features are computed along the label's own queue states
   (teacher forcing) and the whole network (encoders, pair embedding, head) learns the label's choice
   by cross-entropy on the per-step scores. The head starts as the rollout method, so what is learnt
   is the correction to the pilot.
3. Direct fine-tuning on f(x): evolution strategies (antithetic Gaussian perturbations, centred ranks,
   Adam) on the dynamic head, each candidate scored by the real one-pass decode (the compiled decoder
   the nodes run, the kernel's semantics) on the states the model itself visits: the on-policy step
   that imitation lacks. Fitness: mean of f(x) / f(rollout) over a mini-batch of instances.
4. Selection on a validation mix of another seed (never the benchmark's held-out seeds).

Distillation (`distill_general`) trains the student on the teacher's own trajectories: the student's
per-step softmax matches the teacher's (KL at a temperature) on the states the teacher visits, then
the same ES step fine-tunes the student's head on f(x).
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from edgepoc.files import atomic_path, write_atomic
from edgepoc.errors import InputError, Interrupted
from edgepoc.game.generators import alibaba, paper, varied
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import completion_time, simulate
from edgepoc.models.paper.allocation import count_parameters
from edgepoc.models.checkpoint import save_checkpoint
from edgepoc.models.general.model import GeneralAllocationModel, GeneralConfig, embedding, student_general_config
from edgepoc.models.general.decode import DEFAULT_HORIZON, DYN_FEATURES, N_DYN, Head, onepass, time_scale, trajectory_features
from edgepoc.solvers.rollout import decay_rates, rollout_assignment

FAMILIES = ("paper", "varied", "alibaba", "bursty", "task-delays")


def mixed_instance(seed: int, index: int, n_range: tuple[float, float] = (100, 600),
                   k_range: tuple[int, int] = (2, 12)) -> Instance:
    """Instance `index` of the training mix of `seed` (family, K, R, size drawn from (seed, index))."""
    rng = np.random.default_rng([seed, index, 7])
    family = FAMILIES[index % len(FAMILIES)]
    n = int(round(np.exp(rng.uniform(np.log(n_range[0]), np.log(n_range[1])))))
    k = int(rng.integers(k_range[0], k_range[1] + 1))
    r = int(rng.integers(1, 5))
    load = float(rng.uniform(0.7, 1.1))
    if family == "paper":
        inst = paper(seed, index, n_tasks=n, providers=k, resources=r, load=load)
    elif family == "varied":
        inst = varied(seed, index, n_tasks=n, providers=k, resources=r)
    elif family == "alibaba":
        inst = alibaba(seed, index, n_tasks=n, providers=k, load=load)
    elif family == "bursty":
        inst = varied(seed, index, n_tasks=n, providers=k, resources=r, load=load,
                      burstiness=float(rng.uniform(0.7, 1.0)))
    else:  # per-task delays: each task sees each provider's link at its own delay
        base = paper(seed, index, n_tasks=n, providers=k, resources=r, load=load)
        delays = base.provider_delay[None, :] * rng.uniform(0.2, 4.0, size=(n, k))
        inst = Instance.create(base.capacity, base.provider_delay, base.arrival, base.demand, task_delays=delays,
                               name=f"taskdelay-s{seed}-{index}")
    inst.name = f"mix-{family}-s{seed}-{index}-k{k}"
    return inst


def training_mix(seed: int, count: int, **kw) -> list[Instance]:
    return [mixed_instance(seed, i, **kw) for i in range(count)]


def heavy_tail_mix(seed: int, count: int) -> list[Instance]:
    """Half the training mix, half windows of the (heavy-tailed) Alibaba trace of 300-1000 tasks, 2-12
    providers, load 0.7-1.1: the curriculum where the one-pass decode is furthest from the GA."""
    out = training_mix(seed, count - count // 2)
    for i in range(count // 2):
        rng = np.random.default_rng([seed, i, 11])
        n = int(rng.integers(300, 1001))
        inst = alibaba(seed + 17, i, n_tasks=n, providers=int(rng.integers(2, 13)), load=float(rng.uniform(0.7, 1.1)))
        inst.name = f"heavy-alibaba-s{seed}-{i}"
        out.append(inst)
    return out


MIXES = ("standard", "heavy", "large")
LARGE_TASKS = (300, 1000)  # the `large` mix: the held-out benchmarks' size (1000 tasks) inside its range


def mix_instances(mix: str, seed: int, count: int) -> list[Instance]:
    """`count` instances of training mix `mix` (`MIXES`) drawn from `seed`."""
    if mix not in MIXES:
        raise InputError(f"mix: expected one of {', '.join(MIXES)}, got {mix!r}")
    if mix == "large":
        return training_mix(seed, count, n_range=LARGE_TASKS)
    return training_mix(seed, count) if mix == "standard" else heavy_tail_mix(seed, count)


@dataclass
class GeneralTrainConfig:
    seed: int = 1000  # training mix seed (validation: seed + 1000)
    count: int = 200
    val_count: int = 30
    imitation_epochs: int = 30
    lr: float = 2e-3
    es_generations: int = 300
    es_pairs: int = 16  # antithetic pairs per generation
    es_sigma: float = 0.05
    es_lr: float = 0.03
    es_batch: int = 24  # instances per generation
    threads: int = 1
    hidden: int = 64
    gnn_layers: int = 3
    label_generations: int | None = None  # GA generation budget (None: its default)
    time_scale: str = "mean"  # unit of the time features: "mean" (bundled) or "median" processing time
    dyn_input: str = "linear"  # the head's tanh input: "linear" (bundled) or "log" (bounded; decode.DYN_INPUTS)
    horizon: int = DEFAULT_HORIZON  # the long pilot's look-ahead in tasks
    gate: bool = False  # the head's gate: the linear (pilot) term's weights per pair c + V E_ik instead of c
    pilot: str = "greedy"  # the pilots' base policy: "greedy" (bundled before 2026-11-29) or "priced" (decode.PILOTS)
    mix: str = "standard"  # training and validation instances: "standard" (`training_mix`), "heavy"
    # (`heavy_tail_mix`: half of them Alibaba trace windows, where the one-pass decode is furthest from the GA)
    # or "large" (the standard families at 300-1000 tasks instead of 100-600)
    head_prior: str = "pilot"  # the head's linear term starts at minus the pilot regret ("pilot", bundled) or
    # minus its log ("log_pilot"): the same rollout decisions (log1p is monotone), on a scale the bounded
    # tanh correction can match on heavy-tailed windows, where the linear pilot regret reaches 50+

    def to_dict(self) -> dict:
        return asdict(self)


def _progress(show: bool) -> Progress:
    cols = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), TextColumn("{task.fields[status]}")]
    return Progress(*cols, console=Console(stderr=True), disable=not show)


def _start_run(out: str | Path, cfg: GeneralTrainConfig, stream: int) -> tuple[float, Path, np.random.Generator]:
    """What every training entry point does first: its clock, its output folder, torch's threads and the seeds
    of its own stream (train 0, distill 1, DAgger 2, policy gradient 3), so the stages draw different numbers."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed + stream)
    return t0, out, np.random.default_rng(cfg.seed + stream)


def ga_labels(instances: list[Instance], seed: int, generations: int | None, show: bool = True,
              cache: Path | None = None) -> list[np.ndarray]:
    """The GA's allocation of each instance (instance i with seed + i): the labels the imitation step copies.

    With `cache` each label is saved as it is made, beside a key of what decides it (the instance's numbers, its
    seed, the generations), so a run stopped part way continues from the labels it made, and a larger --count
    keeps the labels of the instances it shares; labels with another key are made afresh. Ctrl-C says how many
    are kept."""
    from edgepoc.solvers.registry import SolveOptions, solve

    keys = [_label_key(inst, seed + i, generations) for i, inst in enumerate(instances)]
    out = _cached_labels(cache, keys) if cache is not None else []
    params = {"generations": generations} if generations else {}
    with _progress(show) as bar:
        task = bar.add_task("GA labels", total=len(instances), completed=len(out), status="")
        try:
            for i in range(len(out), len(instances)):
                out.append(solve(instances[i], "ga", SolveOptions(seed=seed + i, params=dict(params))).assignment)
                if cache is not None:
                    _save_labels(cache, keys, out)
                bar.advance(task)
        except KeyboardInterrupt:
            if cache is None:
                raise
            raise Interrupted(f"{len(out)} of {len(instances)} GA labels are kept in {cache}; the same command "
                              "continues from them") from None
    return out


def _label_key(inst: Instance, seed: int, generations: int | None) -> str:
    h = hashlib.sha256(f"{seed}/{generations}".encode())
    for a in (inst.arrival, inst.demand, inst.capacity, inst.provider_delay, inst.task_delays):
        h.update(b"-" if a is None else np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()[:32]


def _cached_labels(path: Path, keys: list[str]) -> list[np.ndarray]:
    """The labels saved at `path` for the longest prefix of `keys` (none if no file, or a damaged one)."""
    try:
        with np.load(path) as rec:
            saved = [str(k) for k in rec["keys"]] if "keys" in rec.files else []
            n = 0
            while n < min(len(saved), len(keys)) and saved[n] == keys[n]:
                n += 1
            return [rec[f"x{i}"].astype(np.int64) for i in range(n)]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return []


def _save_labels(path: Path, keys: list[str], labels: list[np.ndarray]) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, keys=np.array(keys[:len(labels)]),
                            **{f"x{i}": x.astype(np.int16) for i, x in enumerate(labels)})


class Evaluator:
    """Instances with cached embeddings and rollout baselines: scores heads by real one-pass decodes."""

    def __init__(self, instances: list[Instance]):
        self.instances = instances
        self.baseline = np.array([simulate(inst, rollout_assignment(inst)) for inst in instances])
        self.emb: list[np.ndarray] = []

    def refresh(self, model: GeneralAllocationModel) -> None:
        model.eval()
        self.emb = [embedding(model, inst, exact=False) for inst in self.instances]

    def ratios(self, head: Head, idx: Iterable[int] | None = None) -> np.ndarray:
        idx = range(len(self.instances)) if idx is None else idx
        return np.array([onepass(self.instances[i], self.emb[i], head)[1] / max(self.baseline[i], 1e-12)
                         for i in idx])


@dataclass
class DaggerSample:
    """One instance's DAgger target: dynamic features (n, K, N_DYN) at states the model's own decode
    reaches, and the expert's choice (n,) at each of them."""

    dyn: np.ndarray
    labels: np.ndarray


def dagger_sample(inst: Instance, emb: np.ndarray, head: Head, seed: int, segment: int = 100, window: int = 160,
                  generations: int = 8) -> DaggerSample:
    """Relabel the states the model visits with the GA (DAgger).

    The model's one-pass decode gives its allocation `x_m`. At every `segment`-th task `i` the queues are
    those `x_m[:i]` built; the GA (its default settings, `generations` generations) allocates tasks
    `i .. i + window` from that state, and the segment's tasks `i .. i + segment` get the GA's choices
    as labels, with the dynamic features along the GA's choices from the model's state (scaled by the
    whole instance's time scale, look-ahead inside the window)."""
    from edgepoc.models.general.decode import _trajectory_features, pilot_settings
    from edgepoc.solvers.ga import GAConfig, PolicyModel

    n, kk = inst.n_tasks, inst.n_providers
    x_m, _, _ = onepass(inst, emb, head)
    scale = time_scale(inst, head.scale)
    dyn = np.empty((n, kk, N_DYN))
    labels = np.empty(n, dtype=np.int64)
    free = np.zeros(kk)
    rate = np.zeros(kk)  # the pilots' task rates (priced pilots), as of the last decided task's arrival
    mode, price, memory, mix = pilot_settings(inst, head.pilot)
    for lo in range(0, n, segment):
        hi = min(n, lo + segment)
        if lo > 0:
            decay_rates(rate, inst.arrival[lo] - inst.arrival[lo - 1], memory)
        sub = inst.subset(slice(lo, min(n, lo + window)))
        x_e = PolicyModel(GAConfig(generations=generations), seed=seed + lo).solve(sub, free.copy()).assignment
        out = np.empty((sub.n_tasks, kk, N_DYN))
        _trajectory_features(sub.arrival, sub.ready, sub.processing, free.copy(), rate.copy(),
                             np.ascontiguousarray(x_e), int(head.horizon), scale, mode, price, memory, mix, out)
        dyn[lo:hi] = out[:hi - lo]
        labels[lo:hi] = x_e[:hi - lo]
        for i in range(lo, hi):  # advance along the model's own choices
            if i > lo:
                decay_rates(rate, inst.arrival[i] - inst.arrival[i - 1], memory)
            k = x_m[i]
            free[k] = completion_time(free[k], inst.ready[i, k], inst.processing[i, k])
            rate[k] += 1.0 / memory
    return DaggerSample(dyn, labels)


def dagger_finetune(model_path: str | Path, out: str | Path, cfg: GeneralTrainConfig, rounds: int = 2,
                    epochs: int = 6, segment: int = 100, window: int = 160, generations: int = 8,
                    kind: str = "teacher", show: bool = True) -> dict:
    """DAgger from a trained general model: `rounds` times, relabel the states the current model visits
    on the training mix with the GA (`dagger_sample`), add them to the aggregate, and train on the
    aggregate by cross-entropy (`epochs`), keeping the best validation one-pass; then `cfg.es_generations`
    of ES on the head. Writes `<kind>.pt` and `log.json` into `out`."""
    from edgepoc.models.checkpoint import load_model

    t0, out, rng = _start_run(out, cfg, 2)
    model, _ = load_model(model_path, kind)
    train_inst = mix_instances(cfg.mix, cfg.seed, cfg.count)
    val_inst = mix_instances(cfg.mix, cfg.seed + 1000, cfg.val_count)
    train_eval, val_eval = Evaluator(train_inst), Evaluator(val_inst)
    val_eval.refresh(model)
    start_val = float(val_eval.ratios(model.head()).mean())
    log: list[dict] = [{"phase": "start", "step": 0, "val_ratio_to_rollout": start_val}]
    agg_inst: list[Instance] = []
    agg: list[DaggerSample] = []
    best = start_val
    for r in range(rounds):
        train_eval.refresh(model)
        head = model.head()
        with _progress(show) as bar:
            task = bar.add_task(f"DAgger round {r + 1}: GA relabelling", total=len(train_inst), status="")
            for i, inst in enumerate(train_inst):
                agg.append(dagger_sample(inst, train_eval.emb[i], head, cfg.seed + 7919 * r + i, segment, window,
                                         generations))
                agg_inst.append(inst)
                bar.advance(task)
        best = imitation(model, agg_inst, agg, epochs, cfg.lr, rng, val_eval, show, log=log)
        log.append({"phase": "dagger", "step": r + 1, "val_ratio_to_rollout": best, "samples": len(agg),
                    "seconds": time.perf_counter() - t0})
        save_checkpoint(out / f"{kind}.pt", model, {"val_ratio_to_rollout": best, "dagger_round": r + 1,
                                                    "from": str(model_path)})  # a run cut short keeps its rounds
        write_atomic(out / "log.json", json.dumps(log, indent=1))
    if cfg.es_generations > 0:
        best = evolve_head(model, train_eval, val_eval, cfg, rng, show, log=log)
    meta = {"params": count_parameters(model), "val_ratio_to_rollout": best, "start_val_ratio_to_rollout": start_val,
            "from": str(model_path), "seconds": time.perf_counter() - t0, "config": cfg.to_dict(),
            "dagger": {"rounds": rounds, "epochs": epochs, "segment": segment, "window": window,
                       "generations": generations}}
    save_checkpoint(out / f"{kind}.pt", model, meta)
    write_atomic(out / "log.json", json.dumps(log, indent=1))
    return meta


def policy_gradient(model_path: str | Path, out: str | Path, cfg: GeneralTrainConfig, epochs: int = 10,
                    samples: int = 8, temperature: float = 0.3, lr: float = 1e-4, kind: str = "teacher",
                    deadline_s: float | None = None, show: bool = True,
                    instances: list[Instance] | None = None) -> dict:
    """POMO-style policy gradient on f(x) from a trained general model, every weight (encoders and head).

    Per training instance: `samples` one-pass decodes sampled at `temperature` on the model's own states;
    advantage = (mean delay of the samples - delay) / mean delay (the samples' shared baseline, as POMO);
    loss = - sum advantage x log-probability of the sampled allocation (per-step softmax of the head's
    scores along that allocation's own queue states). Validation one-pass after every epoch; the best
    weights are kept and written to `out/<kind>.pt` (a run cut short keeps what it reached). `instances`:
    the training instances (default: the mix `cfg.mix` of `cfg.seed`; "heavy" weights the heavy-tailed
    trace windows); validation is always that mix of `cfg.seed + 1000`."""
    from edgepoc.models.checkpoint import load_model

    t0, out, rng = _start_run(out, cfg, 3)
    model, _ = load_model(model_path, kind)
    train_inst = instances if instances is not None else mix_instances(cfg.mix, cfg.seed, cfg.count)
    val_eval = Evaluator(mix_instances(cfg.mix, cfg.seed + 1000, cfg.val_count))
    val_eval.refresh(model)
    start = best = float(val_eval.ratios(model.head()).mean())
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    log: list[dict] = [{"phase": "start", "step": 0, "val_ratio_to_rollout": start}]
    inputs = [model.inputs(inst) for inst in train_inst]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with _progress(show) as bar:
        task = bar.add_task("policy gradient", total=epochs, status=f"val one-pass/rollout {best:.4f}")
        for epoch in range(1, epochs + 1):
            model.train()
            spread = []
            for j in rng.permutation(len(train_inst)):
                inst = train_inst[j]
                emb_t = model.embed_inputs(**inputs[j])
                emb = emb_t.detach().double().numpy()
                head = model.head()
                xs, fs = [], []
                for _ in range(samples):
                    x, f, _ = onepass(inst, emb, head, uniforms=rng.random(inst.n_tasks), temperature=temperature)
                    xs.append(x)
                    fs.append(f)
                fs = np.array(fs)
                base = fs.mean()
                if base <= 0 or fs.std() == 0:
                    continue
                adv = (base - fs) / base
                spread.append(float(fs.std() / base))
                loss = 0.0
                for x, a in zip(xs, adv):
                    dyn = torch.from_numpy(trajectory_features(inst, x, model.config.horizon,
                                                               scale=model.config.time_scale,
                                                               pilot=model.config.pilot)).float()
                    logp = F.log_softmax(model.scores(emb_t, dyn) / temperature, 1)
                    loss = loss - float(a) * logp[torch.arange(inst.n_tasks), torch.from_numpy(x)].sum()
                opt.zero_grad()
                (loss / samples).backward()
                opt.step()
                if deadline_s is not None and time.perf_counter() - t0 > deadline_s:
                    break
            val_eval.refresh(model)
            score = float(val_eval.ratios(model.head()).mean())
            log.append({"phase": "pg", "step": epoch, "val_ratio_to_rollout": score,
                        "sample_spread": float(np.mean(spread)) if spread else None,
                        "seconds": time.perf_counter() - t0})
            if score < best:
                best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
                save_checkpoint(out / f"{kind}.pt", model, {"val_ratio_to_rollout": best, "pg_epoch": epoch})
            write_atomic(out / "log.json", json.dumps(log, indent=1))
            bar.update(task, advance=1, status=f"val one-pass/rollout {score:.4f} (best {best:.4f})")
            if deadline_s is not None and time.perf_counter() - t0 > deadline_s:
                break
    model.load_state_dict(best_state)
    meta = {"params": count_parameters(model), "val_ratio_to_rollout": best, "start_val_ratio_to_rollout": start,
            "from": str(model_path), "seconds": time.perf_counter() - t0, "config": cfg.to_dict(),
            "policy_gradient": {"epochs": epochs, "samples": samples, "temperature": temperature, "lr": lr}}
    save_checkpoint(out / f"{kind}.pt", model, meta)
    write_atomic(out / "log.json", json.dumps(log, indent=1))
    return meta


def imitation(model: GeneralAllocationModel, instances: list[Instance], targets: list, epochs: int, lr: float,
              rng: np.random.Generator, val: Evaluator, show: bool = True, kl_temperature: float | None = None,
              log: list | None = None) -> float:
    """Cross-entropy on the label's choices (targets: allocations) or KL to a teacher's per-step scores
    (targets: (allocation, scores) pairs, `kl_temperature`), features along the targets' trajectories;
    a `DaggerSample` target brings its own features (the model's states) and labels.
    Keeps the weights with the best validation one-pass ratio; returns it."""
    dyn, inputs, labels, soft = [], [], [], []
    for inst, t in zip(instances, targets):
        inputs.append(model.inputs(inst))
        if isinstance(t, DaggerSample):  # features along the model's own states, expert labels
            dyn.append(torch.from_numpy(t.dyn).float())
            labels.append(torch.as_tensor(t.labels, dtype=torch.long))
            soft.append(None)
            continue
        x = t[0] if kl_temperature else t
        dyn.append(torch.from_numpy(trajectory_features(inst, x, model.config.horizon,
                                                        scale=model.config.time_scale, pilot=model.config.pilot)).float())
        labels.append(torch.as_tensor(np.asarray(x), dtype=torch.long))
        soft.append(torch.from_numpy(np.asarray(t[1])).float() if kl_temperature else None)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    val.refresh(model)
    best = float(val.ratios(model.head()).mean())
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    with _progress(show) as bar:
        task = bar.add_task("imitation", total=epochs, status=f"val one-pass/rollout {best:.4f}")
        for epoch in range(1, epochs + 1):
            model.train()
            for i in rng.permutation(len(instances)):
                opt.zero_grad()
                s = model.scores(model.embed_inputs(**inputs[i]), dyn[i])
                if soft[i] is not None:
                    loss = F.kl_div(F.log_softmax(s / kl_temperature, 1), F.softmax(soft[i] / kl_temperature, 1),
                                    reduction="batchmean")
                else:
                    loss = F.cross_entropy(s, labels[i])
                loss.backward()
                opt.step()
            val.refresh(model)
            score = float(val.ratios(model.head()).mean())
            if log is not None:
                log.append({"phase": "imitation", "step": epoch, "val_ratio_to_rollout": score})
            if score < best:
                best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
            bar.update(task, advance=1, status=f"val one-pass/rollout {score:.4f} (best {best:.4f})")
    model.load_state_dict(best_state)
    return best


def evolve_head(model: GeneralAllocationModel, train: Evaluator, val: Evaluator, cfg: GeneralTrainConfig,
                rng: np.random.Generator, show: bool = True, log: list | None = None) -> float:
    """ES on the dynamic head with the encoders fixed; keeps the best head on validation."""
    train.refresh(model)
    val.refresh(model)
    head = model.head()
    theta = head.flat()
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    best_head, best = head, float(val.ratios(head).mean())
    with _progress(show) as bar:
        task = bar.add_task("ES on f(x)", total=cfg.es_generations, status=f"val one-pass/rollout {best:.4f}")
        for gen in range(1, cfg.es_generations + 1):
            idx = rng.choice(len(train.instances), size=min(cfg.es_batch, len(train.instances)), replace=False)
            eps = rng.standard_normal((cfg.es_pairs, theta.size))
            fit = np.empty(2 * cfg.es_pairs)
            for j in range(cfg.es_pairs):
                fit[2 * j] = train.ratios(head.with_flat(theta + cfg.es_sigma * eps[j]), idx).mean()
                fit[2 * j + 1] = train.ratios(head.with_flat(theta - cfg.es_sigma * eps[j]), idx).mean()
            ranks = np.empty_like(fit)
            ranks[np.argsort(fit)] = np.arange(fit.size)
            ranks = ranks / (fit.size - 1) - 0.5  # centred ranks; low ratio = good
            grad = ((ranks[0::2] - ranks[1::2])[:, None] * eps).sum(0) / (cfg.es_pairs * cfg.es_sigma)
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad ** 2
            theta = theta - cfg.es_lr * (m / (1 - 0.9 ** gen)) / (np.sqrt(v / (1 - 0.999 ** gen)) + 1e-8)
            head = head.with_flat(theta)
            status = ""
            if gen % 5 == 0 or gen == cfg.es_generations:
                score = float(val.ratios(head).mean())
                if log is not None:
                    log.append({"phase": "es", "step": gen, "val_ratio_to_rollout": score,
                                "train_batch_ratio": float(fit.mean())})
                if score < best:
                    best, best_head = score, head
                status = f"val one-pass/rollout {score:.4f} (best {best:.4f})"
                bar.update(task, status=status)
            bar.advance(task)
    model.set_head(best_head)
    return best


HEAD_PRIORS = {"pilot": "pilot_regret", "log_pilot": "log_pilot_regret"}


def set_head_prior(model: GeneralAllocationModel, prior: str) -> None:
    """Start the head's linear term at minus one dynamic feature (`HEAD_PRIORS`), every other weight unchanged."""
    if prior not in HEAD_PRIORS:
        raise InputError(f"head prior: expected one of {', '.join(HEAD_PRIORS)}, got {prior!r}")
    with torch.no_grad():
        model.head_c.zero_()
        if model.config.pilot == "both" and prior == "pilot":  # half the greedy pilot's regret, half the priced one's
            model.head_c[DYN_FEATURES.index("pilot5_regret")] = -0.5
            model.head_c[DYN_FEATURES.index("pilot_regret")] = -0.5
        else:
            model.head_c[DYN_FEATURES.index(HEAD_PRIORS[prior])] = -1.0


def train_general(out: str | Path, cfg: GeneralTrainConfig, show: bool = True,
                  data: tuple[list[Instance], list[np.ndarray], list[Instance]] | None = None,
                  data_record: dict | None = None) -> dict:
    """Train a general teacher; writes `teacher.pt`, `config.json`, `log.json` into `out`.

    `data`: (training instances, their label allocations, validation instances), one's own labelled
    instances (`train-general --data`) instead of the generated mix; `data_record` says where they came
    from (kept in config.json)."""
    t0, out, rng = _start_run(out, cfg, 0)
    doc = cfg.to_dict() | ({"data": data_record or {}} if data is not None else {})
    write_atomic(out / "config.json", json.dumps(doc, indent=2))
    labels_path = out / "labels.npz"
    if data is not None:  # one's own labelled instances: no generated mix, no GA labelling here
        train_inst, labels, val_inst = data[0], [np.asarray(x, dtype=np.int64) for x in data[1]], data[2]
    else:
        train_inst, val_inst = mix_instances(cfg.mix, cfg.seed, cfg.count), mix_instances(cfg.mix, cfg.seed + 1000,
                                                                                        cfg.val_count)
        labels = ga_labels(train_inst, cfg.seed, cfg.label_generations, show, cache=labels_path)
    t_labels = time.perf_counter() - t0
    model = GeneralAllocationModel(GeneralConfig(hidden=cfg.hidden, gnn_layers=cfg.gnn_layers,
                                                 time_scale=cfg.time_scale, dyn_input=cfg.dyn_input,
                                                 horizon=cfg.horizon, pilot=cfg.pilot, gate=cfg.gate))
    set_head_prior(model, cfg.head_prior)
    log: list[dict] = []
    imitated = False
    try:
        train_eval, val_eval = Evaluator(train_inst), Evaluator(val_inst)
        imit = imitation(model, train_inst, labels, cfg.imitation_epochs, cfg.lr, rng, val_eval, show, log=log)
        save_checkpoint(out / "imitation.pt", model, {"val_ratio_to_rollout": imit})
        imitated = True
        best = evolve_head(model, train_eval, val_eval, cfg, rng, show, log=log)
    except KeyboardInterrupt:  # hours of work: say what a rerun keeps
        kept = ([f"the GA labels in {labels_path} (the same command reuses them)"] if data is None else []) + (
            [f"the imitation step's model in {out / 'imitation.pt'}"] if imitated else [])
        raise Interrupted("no teacher.pt was written" + (f"; kept: {' and '.join(kept)}" if kept else "")) from None
    label_ratio = float(np.mean([simulate(i, x) / b for i, x, b in zip(train_inst, labels, train_eval.baseline)]))
    meta = {"params": count_parameters(model), "val_ratio_to_rollout": best, "imitation_val_ratio": imit,
            "train_label_ratio_to_rollout": label_ratio, "seconds": time.perf_counter() - t0,
            "label_seconds": t_labels, "config": cfg.to_dict()}
    if data is not None:
        meta["data"] = data_record or {}
    save_checkpoint(out / "teacher.pt", model, meta)
    write_atomic(out / "log.json", json.dumps(log, indent=1))
    return meta


def finetune_head(model_path: str | Path, out: str | Path, cfg: GeneralTrainConfig, show: bool = True) -> dict:
    """ES on f(x) (`evolve_head`) for the head of a trained general model, teacher or student, with its encoders
    kept and its pilot features switched to `cfg.pilot` at look-ahead `cfg.horizon`: how a trained model moves to
    new pilot features without new GA labels or imitation. Writes `<kind>.pt` into `out`."""
    from edgepoc.models.checkpoint import bundled_path, is_general, load_model

    model, source = load_model(model_path)
    label = next((f"bundled-{k}" for k in ("teacher", "student")  # no machine path in a bundled model's record
                  if Path(model_path).resolve() == bundled_path(k).resolve()), str(model_path))
    if not is_general(model):
        raise InputError(f"--from: {str(model_path)!r} holds a paper-variant model, not a general one")
    t0, out, rng = _start_run(out, cfg, 5)
    before = {"pilot": model.config.pilot, "horizon": model.config.horizon}
    model.config.pilot, model.config.horizon = cfg.pilot, cfg.horizon
    train_eval = Evaluator(mix_instances(cfg.mix, cfg.seed, cfg.count))
    val_eval = Evaluator(mix_instances(cfg.mix, cfg.seed + 1000, cfg.val_count))
    val_eval.refresh(model)
    start = float(val_eval.ratios(model.head()).mean())
    log: list[dict] = []
    best = evolve_head(model, train_eval, val_eval, cfg, rng, show, log=log)
    meta = {"params": count_parameters(model), "from": label, "from_pilot": before,
            "val_ratio_to_rollout_at_start": start, "val_ratio_to_rollout": best,
            "seconds": time.perf_counter() - t0, "config": cfg.to_dict(),
            "from_meta": source.get("meta", {})}  # how the model it started from was made
    kind = model.config.kind
    save_checkpoint(out / f"{kind}.pt", model, meta)
    write_atomic(out / "log.json", json.dumps(log, indent=1))
    write_atomic(out / "config.json", json.dumps({**cfg.to_dict(), "from": label, "kind": kind}, indent=2))
    return meta


def distill_general(teacher_path: str | Path, out: str | Path, cfg: GeneralTrainConfig, epochs: int = 40,
                    temperature: float = 1.0, student: GeneralConfig | None = None, show: bool = True) -> dict:
    """Distil a general student from a general teacher; writes `student.pt` into `out`."""
    from edgepoc.models.checkpoint import load_model

    t0, out, rng = _start_run(out, cfg, 1)
    teacher, _ = load_model(teacher_path, "teacher")
    train_inst = mix_instances(cfg.mix, cfg.seed, cfg.count)
    val_inst = mix_instances(cfg.mix, cfg.seed + 1000, cfg.val_count)
    targets = []
    for inst in train_inst:
        x, _, s = onepass(inst, embedding(teacher, inst, exact=False), teacher.head(), keep_scores=True)
        targets.append((x, s))
    student = replace(student or student_general_config(), time_scale=teacher.config.time_scale,  # same features
                      dyn_input=teacher.config.dyn_input, horizon=teacher.config.horizon, pilot=teacher.config.pilot,
                      gate=teacher.config.gate)
    model = GeneralAllocationModel(student)
    model.set_head(replace(model.head(), a=np.zeros_like(model.head().a), b=np.zeros_like(model.head().b),
                           w=np.zeros_like(model.head().w), c=teacher.head().c.copy(), gain=1.0,
                           v=None if model.head().v is None else np.zeros_like(model.head().v)))
    train_eval, val_eval = Evaluator(train_inst), Evaluator(val_inst)
    val_eval.refresh(teacher)
    teacher_val = float(val_eval.ratios(teacher.head()).mean())
    log: list[dict] = []
    imit = imitation(model, train_inst, targets, epochs, cfg.lr, rng, val_eval, show, kl_temperature=temperature,
                     log=log)
    best = evolve_head(model, train_eval, val_eval, cfg, rng, show, log=log)
    meta = {"params": count_parameters(model), "teacher_params": count_parameters(teacher),
            "teacher": str(teacher_path), "val_ratio_to_rollout": best, "imitation_val_ratio": imit,
            "teacher_val_ratio_to_rollout": teacher_val, "gap_to_teacher_pct": 100.0 * (best / teacher_val - 1.0),
            "seconds": time.perf_counter() - t0, "config": cfg.to_dict()}
    save_checkpoint(out / "student.pt", model, meta)
    write_atomic(out / "log.json", json.dumps(log, indent=1))
    return meta

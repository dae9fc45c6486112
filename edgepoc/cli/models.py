"""`edgepoc train`, `distill`, `plot`: the deep model on the command line (SPEC §4-5, §9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgepoc.cli.common import check_number, parse_params, print_json, seed_option
from edgepoc.errors import InputError


def _labelled_sets(data: Optional[Path], test_data: Optional[Path], test_fraction: float, preset: str, seed: int,
                   count: int, test_count: int, n_tasks: Optional[int], labeler: str,
                   label_seconds: Optional[float], label_param: Optional[list[str]], from_run: Optional[Path],
                   run_dir: Path):
    """(train, test, record of where they came from): a data-set directory, a previous run's
    labels, or instances generated and labelled now (their labels are kept in RUN_DIR/labels-*.npz)."""
    from edgepoc.models import data as mdata

    if from_run is not None and not (from_run / "labels-train.npz").is_file():
        # a run trained from data-set folders keeps no label copy: use the folders its config names
        cfg = from_run / "config.json"
        source = json.loads(cfg.read_text()).get("data", {}) if cfg.is_file() else {}
        if not isinstance(source, dict) or "data" not in source:
            raise InputError(f"--from-run: {from_run} holds neither labels-train.npz nor a config.json naming its data")
        data, test_data = Path(source["data"]), source.get("test_data")
        test_data = Path(test_data) if test_data else None
        test_fraction = float(source.get("test_fraction", test_fraction))
        seed = int(source.get("split_seed", seed))
        from_run = None
    if from_run is not None:
        train = mdata.load_label_record(from_run / "labels-train.npz")
        test = mdata.load_label_record(from_run / "labels-test.npz")
        return train, test, {"from_run": str(from_run)}
    if data is not None:
        items = mdata.read_labelled(data)
        if test_data is not None:
            return items, mdata.read_labelled(test_data), {"data": str(data), "test_data": str(test_data)}
        if not 0 < test_fraction < 1:
            raise InputError(f"--test-fraction: must be in (0, 1), got {test_fraction}")
        n_test = max(1, int(round(test_fraction * len(items))))
        if n_test >= len(items):
            raise InputError(f"data: {len(items)} instances are too few to split off a test set")
        order = __import__("numpy").random.default_rng(seed).permutation(len(items))
        return ([items[i] for i in order[n_test:]], [items[i] for i in order[:n_test]],
                {"data": str(data), "test_fraction": test_fraction, "split_seed": seed})
    if count < 1 or test_count < 1:
        raise InputError("--count and --test-count must be >= 1")
    params = {"n_tasks": n_tasks} if n_tasks else {}
    lparams = parse_params(label_param)
    specs = {"train": {"preset": preset, "seed": seed, "count": count, "params": params},
             "test": {"preset": preset, "seed": seed + 1, "count": test_count, "params": params}}
    sets = {}
    for split, spec in specs.items():
        spec.update({"labeler": labeler, "label_seconds": label_seconds, "label_params": lparams})
        sets[split] = mdata.generated_labelled(preset, spec["seed"], count if split == "train" else test_count,
                                               labeler=labeler, seconds=label_seconds, params=lparams, **params)
        run_dir.mkdir(parents=True, exist_ok=True)
        mdata.save_label_record(run_dir / f"labels-{split}.npz", spec, sets[split])
    return sets["train"], sets["test"], specs


DATA_HELP = "Labelled data-set directory (edgepoc.game.dataset format)."


def train_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (config, log.csv, best.pt, last.pt)."),
    data: Optional[Path] = typer.Option(None, "--data", help=DATA_HELP),
    test_data: Optional[Path] = typer.Option(None, "--test-data", help="Held-out labelled set (else split --data)."),
    test_fraction: float = typer.Option(0.2, help="Share of --data held out when --test-data is not given."),
    from_run: Optional[Path] = typer.Option(None, "--from-run", help="Reuse the labels kept by an earlier run."),
    preset: str = typer.Option("paper", help="Without --data: generate instances of this preset..."),
    count: int = typer.Option(40, help="...this many for training..."),
    test_count: int = typer.Option(10, help="...this many held out (next seed) for validation..."),
    n_tasks: Optional[int] = typer.Option(None, "--n-tasks", help="...with this many tasks (preset default)..."),
    labeler: str = typer.Option("ga", help="...labelled by this method (the paper: ga)."),
    label_seconds: Optional[float] = typer.Option(None, help="Time budget per instance for the labeler."),
    label_param: Optional[list[str]] = typer.Option(None, "--label-param", help="Labeler setting key=value."),
    seed: int = typer.Option(0, callback=seed_option, help="Seed for data, initial weights and batch order."),
    epochs: int = typer.Option(150),
    patience: int = typer.Option(30, help="Stop after this many epochs without a better validation score."),
    select_on: str = typer.Option("guided_delay", help="Validation score: guided_delay, delay (argmax) or loss."),
    batch_size: int = typer.Option(8, help="Instances (graphs) per mini-batch."),
    lr: float = typer.Option(2e-3),
    loss: str = typer.Option("mse", help="mse (paper Eq. 4) or ce."),
    hidden: int = typer.Option(96, help="GNN width."),
    gnn_layers: int = typer.Option(3),
    conv: str = typer.Option("graph", help="graph (GraphConv) or gcn (GCNConv)."),
    rnn_hidden: int = typer.Option(32),
    decoder_hidden: int = typer.Option(96, help="0: the paper's single linear decoder layer."),
    edge_window: int = typer.Option(2, help="Link each task to this many neighbours on each side (arrival order)."),
    queue_features: bool = typer.Option(False, "--queue-features/--no-queue-features",
                                        help="Add greedy-dispatch queue-state columns to the task features."),
    threads: int = typer.Option(2, help="Torch CPU threads."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt."),
) -> None:
    """Train the teacher (ResourceAllocationModel) on labelled instances; prints a JSON summary."""
    import time

    # the checks before the imports: PyTorch and PyG take seconds to load, a typo is refused at once
    check_number("--lr", lr, open_low=True)
    check_number("--test-fraction", test_fraction, 0.0, 1.0, open_low=True, open_high=True)
    if epochs < 1:  # before the labels: no epoch would save the best.pt the summary reads
        raise InputError(f"--epochs: must be >= 1, got {epochs}")
    from edgepoc.models.paper.allocation import ModelConfig
    from edgepoc.models.features import FeatureConfig
    from edgepoc.models.paper.train import TrainConfig, train_model

    t0 = time.perf_counter()
    if resume and data is None and from_run is None:
        from_run = out  # a resumed generated run reuses its own labels
    train, test, record = _labelled_sets(data, test_data, test_fraction, preset, seed, count, test_count, n_tasks,
                                         labeler, label_seconds, label_param, from_run, out)
    inst = train[0].instance
    features = FeatureConfig(inst.n_providers, inst.n_resources, edge_window, queue_features)
    cfg = TrainConfig(model=ModelConfig("teacher", features, hidden, gnn_layers, conv, rnn_hidden, "gru",
                                        decoder_hidden),
                      loss=loss, lr=lr, batch_size=batch_size, epochs=epochs, patience=patience,
                      select_on=select_on, seed=seed,
                      threads=threads, data=record)
    summary = train_model(train, test, cfg, out, resume=resume)
    summary["train_seconds"] = summary["seconds"]
    summary["seconds"] = time.perf_counter() - t0  # the whole command, labelling included
    print_json(summary)


def distill_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (config, distill_log.csv; best.pt for a "
                             "paper-variant teacher, student.pt and .npz for a general one)."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="Teacher checkpoint (default: the bundled one)."),
    data: Optional[Path] = typer.Option(None, "--data", help=DATA_HELP),
    test_data: Optional[Path] = typer.Option(None, "--test-data"),
    test_fraction: float = typer.Option(0.2),
    from_run: Optional[Path] = typer.Option(None, "--from-run", help="Reuse the labels kept by a training run."),
    preset: str = typer.Option("paper"),
    count: Optional[int] = typer.Option(None, help="Training instances: generated and labelled for a paper-variant "
                                                   "teacher (default 40); of the training mix for a general one "
                                                   "(default 200)."),
    test_count: Optional[int] = typer.Option(None, help="Held-out instances (default 10); a general teacher's "
                                                        "validation mix (default 30)."),
    n_tasks: Optional[int] = typer.Option(None, "--n-tasks"),
    labeler: str = typer.Option("ga"),
    label_seconds: Optional[float] = typer.Option(None),
    label_param: Optional[list[str]] = typer.Option(None, "--label-param"),
    seed: int = typer.Option(0, callback=seed_option),
    epochs: int = typer.Option(150),
    patience: int = typer.Option(30),
    batch_size: int = typer.Option(8),
    lr: float = typer.Option(3e-3),
    hidden: int = typer.Option(16, help="Student GNN width (its size is a setting)."),
    rnn_hidden: int = typer.Option(8),
    decoder_hidden: int = typer.Option(16),
    alpha: float = typer.Option(0.7, help="Weight of the soft-target term (1 - alpha on the labels)."),
    temperature: float = typer.Option(2.0, help="Softmax temperature of the soft targets."),
    threads: int = typer.Option(2),
    es_generations: int = typer.Option(300, help="General teacher only: ES generations on the student's head."),
) -> None:
    """Distil a small student from a teacher checkpoint; prints a JSON summary.

    A general teacher (the bundled one, or one from `train-general`) gives a general student trained on
    the teacher's own decodes of the training mix (`--seed`: 1000 by default there); the data options
    apply to a paper-variant teacher."""
    import time

    check_number("--lr", lr, open_low=True)  # before PyTorch loads (seconds): a typo is refused at once
    check_number("--alpha", alpha, 0.0, 1.0)
    check_number("--temperature", temperature, open_low=True)
    check_number("--test-fraction", test_fraction, 0.0, 1.0, open_low=True, open_high=True)
    from edgepoc.models.checkpoint import bundled_path, is_general, load_model
    from edgepoc.models.paper.distill import DistillConfig, distill

    t0 = time.perf_counter()
    teacher_path = teacher or bundled_path("teacher")
    if is_general(load_model(teacher_path, "teacher")[0]):
        from edgepoc.models.general.model import student_general_config
        from edgepoc.models.general.train import GeneralTrainConfig, distill_general

        if (count is not None and count < 1) or (test_count is not None and test_count < 1):
            raise InputError("--count and --test-count must be >= 1")
        gcfg = GeneralTrainConfig(seed=seed if seed else GeneralTrainConfig.seed, threads=threads,
                                  es_generations=es_generations, count=count or GeneralTrainConfig.count,
                                  val_count=test_count or GeneralTrainConfig.val_count)
        student = student_general_config(hidden=hidden, provider_hidden=rnn_hidden, pair_hidden=decoder_hidden)
        summary = distill_general(teacher_path, out, gcfg, epochs=epochs, temperature=temperature, student=student)
        summary["seconds"] = time.perf_counter() - t0
        print_json(summary)
        return
    train, test, record = _labelled_sets(data, test_data, test_fraction, preset, seed,
                                         40 if count is None else count, 10 if test_count is None else test_count,
                                         n_tasks, labeler, label_seconds, label_param, from_run, out)
    cfg = DistillConfig(hidden=hidden, rnn_hidden=rnn_hidden, decoder_hidden=decoder_hidden, alpha=alpha,
                        temperature=temperature, lr=lr, batch_size=batch_size, epochs=epochs, patience=patience,
                        seed=seed, threads=threads, data=record)
    summary = distill(teacher_path, train, test, cfg, out)
    summary["distill_seconds"] = summary["seconds"]
    summary["seconds"] = time.perf_counter() - t0  # the whole command, labelling included
    print_json(summary)


def train_general_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (config.json, labels.npz, teacher.pt, log.json)."),
    data: Optional[Path] = typer.Option(None, "--data", help=DATA_HELP + " Train on these labelled instances "
                                                             "(any K and R) instead of the generated mix."),
    test_data: Optional[Path] = typer.Option(None, "--test-data", help="With --data: validation set (else split "
                                                                       "--data)."),
    test_fraction: float = typer.Option(0.2, help="With --data: share held out for validation when --test-data "
                                                  "is not given (split by --seed)."),
    seed: int = typer.Option(1000, callback=seed_option, help="Seed of the training mix (validation: seed + 1000)."),
    count: int = typer.Option(200, help="Training instances (mixed families, 2-12 providers, 1-4 resources); "
                                        "with --data: the data set's."),
    val_count: int = typer.Option(30, help="Validation instances (checkpoint selection); with --data: the "
                                           "held-out ones."),
    imitation_epochs: int = typer.Option(30, help="Epochs of imitation of the GA labels."),
    es_generations: int = typer.Option(300, help="Generations of evolution strategies on f(x)."),
    es_pairs: int = typer.Option(16, help="Antithetic perturbation pairs per generation."),
    label_generations: Optional[int] = typer.Option(None, help="GA generations per label (default: the GA's "
                                                                "own, 20)."),
    hidden: int = typer.Option(64, help="Task encoder (GNN) width."),
    gnn_layers: int = typer.Option(3),
    threads: int = typer.Option(1, help="Torch CPU threads."),
    time_scale: str = typer.Option("mean", help="Unit of every time feature: the instance's 'mean' processing "
                                                "time (the bundled models) or its 'median' (robust to heavy tails)."),
    dyn_input: str = typer.Option("linear", help="What the head's tanh layer sees of the dynamic features: "
                                                 "'linear' (the bundled models) or 'log' (sign(v) log(1+|v|))."),
    head_prior: str = typer.Option("pilot", help="The head's linear term starts at minus the pilot regret "
                                                 "('pilot', the bundled models) or minus its log ('log_pilot')."),
    pilot: str = typer.Option("greedy", help="The pilot features' base policy: 'greedy', 'priced' (greedy that "
                                             "charges for holding a busy provider; see `solve --method rollout`), "
                                             "'both' (greedy and priced) or 'mixed' (both, the priced pilot's cost "
                                             "averaged with the same tasks' cost on a fixed plan)."),
    horizon: int = typer.Option(20, help="The long pilot's look-ahead in tasks."),
    mix: str = typer.Option("standard", help="Training and validation instances: 'standard' (five families "
                                             "alike, 100-600 tasks), 'heavy' (half of them Alibaba trace "
                                             "windows) or 'large' (the standard mix at 300-1000 tasks)."),
    gate: bool = typer.Option(False, help="Gate the head's linear (pilot) term by the pair embedding: weights "
                                          "c + V E_ik per task and provider instead of one c."),
    from_model: Optional[Path] = typer.Option(None, "--from", help="Start from a trained general model (teacher "
                                                                   "or student; 'bundled-teacher' or "
                                                                   "'bundled-student' for the bundled ones): keep "
                                                                   "its encoders and head, skip GA labels and "
                                                                   "imitation, and run only the ES on f(x) with "
                                                                   "this run's --pilot and --horizon; writes "
                                                                   "<kind>.pt."),
) -> None:
    """Train the general teacher (any K and R): GA labels, imitation, then ES on f(x); prints a JSON summary.

    With --data, one's own labelled instances (the data sets `train` reads) replace the generated mix
    and its GA labels; their labels are imitated, then ES fine-tunes on f(x) as usual."""
    # the checks that need no PyTorch first (it takes seconds to load): most typos are refused at once
    from edgepoc.models.general.decode import DYN_INPUTS, PILOTS, SCALE_RULES

    if pilot not in PILOTS:
        raise InputError(f"--pilot: expected one of {', '.join(PILOTS)}, got {pilot!r}")
    if not 1 <= horizon <= 1000:
        raise InputError(f"--horizon: must be 1-1000 tasks, got {horizon}")
    if time_scale not in SCALE_RULES:
        raise InputError(f"--time-scale: expected one of {', '.join(SCALE_RULES)}, got {time_scale!r}")
    if dyn_input not in DYN_INPUTS:
        raise InputError(f"--dyn-input: expected one of {', '.join(DYN_INPUTS)}, got {dyn_input!r}")
    if min(count, val_count, es_pairs) < 1 or min(imitation_epochs, es_generations) < 0:
        raise InputError("train-general: counts and pairs must be >= 1, epochs and generations >= 0")
    if label_generations is not None and label_generations < 1:
        raise InputError(f"--label-generations: must be >= 1, got {label_generations}")
    if test_data is not None and data is None:
        raise InputError("--test-data: needs --data")
    from edgepoc.models.general.train import HEAD_PRIORS, MIXES, GeneralTrainConfig, train_general

    if mix not in MIXES:
        raise InputError(f"--mix: expected one of {', '.join(MIXES)}, got {mix!r}")
    if head_prior not in HEAD_PRIORS:
        raise InputError(f"--head-prior: expected one of {', '.join(HEAD_PRIORS)}, got {head_prior!r}")
    if from_model is not None:
        from edgepoc.models.checkpoint import bundled_path
        from edgepoc.models.general.train import finetune_head

        if data is not None:
            raise InputError("--from: fine-tunes on the generated mix; it does not take --data")
        source = {"bundled-teacher": bundled_path("teacher"), "bundled-student": bundled_path("student")}.get(
            str(from_model), from_model)
        if not Path(source).is_file():
            raise InputError(f"--from: no model file {str(source)!r}")
        cfg = GeneralTrainConfig(seed=seed, count=count, val_count=val_count, es_generations=es_generations,
                                 es_pairs=es_pairs, threads=threads, pilot=pilot, horizon=horizon, mix=mix)
        print_json(finetune_head(source, out, cfg))
        return
    own = None
    record = None
    if data is not None:
        train, test, record = _labelled_sets(data, test_data, test_fraction, "paper", seed, count, val_count, None,
                                             "ga", None, None, None, out)
        own = ([it.instance for it in train], [it.assignment for it in train], [it.instance for it in test])
        count, val_count = len(train), len(test)
    cfg = GeneralTrainConfig(seed=seed, count=count, val_count=val_count, imitation_epochs=imitation_epochs,
                             es_generations=es_generations, es_pairs=es_pairs, hidden=hidden, gnn_layers=gnn_layers,
                             threads=threads, label_generations=label_generations, time_scale=time_scale,
                             dyn_input=dyn_input, head_prior=head_prior, pilot=pilot, horizon=horizon,
                             mix=mix, gate=gate)
    print_json(train_general(out, cfg, data=own, data_record=record))


def plot_cmd(
    run_dir: Path = typer.Argument(..., help="A training or distillation run directory (paper variant or general)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Figure folder (default RUN_DIR/figures)."),
) -> None:
    """Write the paper's figures (4-14 from training, 15-17 from distillation) as PNGs; a general-model run
    (train-general, or distill of a general teacher) gives its imitation and ES curves."""
    from edgepoc.models.plots import plot_run

    made = plot_run(run_dir, out)
    print_json({"figures": [str(p) for p in made]})


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("distill")(distill_cmd)
    app.command("train-general")(train_general_cmd)
    app.command("plot")(plot_cmd)

"""`edgepoc train-rl`: train the RL baselines (SPEC §8) — SB3 DQN or MADDPG — and save checkpoints.

The run directory gets config.json (every setting, seed included), log.jsonl (one line per
validation), best.pt (best validation delay) and last.pt; `edgepoc solve --method dqn|maddpg
--model DIR/best.pt` uses them. The summary is printed as JSON on stdout, the progress bar on stderr.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from edgepoc.cli.common import parse_params, print_json, seed_option
from edgepoc.errors import InputError

ALGOS = ("dqn", "maddpg")


def _config(algo: str, fields: dict):
    """The algorithm's config with `fields` set; unknown names and non-positive sizes are input errors."""
    if algo == "dqn":
        from edgepoc.solvers.rl.config import DQNConfig as Config
    elif algo == "maddpg":
        from edgepoc.solvers.rl.config import MADDPGConfig as Config
    else:
        raise InputError(f"--algo: unknown algorithm {algo!r}; known: {', '.join(ALGOS)}")
    known = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise InputError(f"--param: {algo} has no setting {unknown[0]!r}; known: {', '.join(known)}")
    cfg = Config(**fields)
    for name in ("steps", "n_tasks", "val_n_tasks", "providers", "eval_every", "val_count", "threads", "batch_size", "buffer_size"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{name}: must be a whole number >= 1, got {value!r}")
    if cfg.providers < 2:
        raise InputError(f"providers: need at least 2 providers to dispatch between, got {cfg.providers}")
    if not 0 <= cfg.gamma < 1:
        raise InputError(f"gamma: must be in [0, 1), got {cfg.gamma}")
    if algo == "maddpg":
        if cfg.reward not in ("latency", "regret"):
            raise InputError(f"reward: expected 'latency' or 'regret', got {cfg.reward!r}")
        if not cfg.reward_clip > 0 or cfg.logit_reg < 0:
            raise InputError("reward_clip must be > 0 and logit_reg >= 0")
    return cfg


def train_rl_cmd(
    algo: str = typer.Option(..., "--algo", "-a", help="dqn (Stable-Baselines3) or maddpg."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (config.json, log.jsonl, best.pt, last.pt)."),
    seed: int = typer.Option(0, callback=seed_option, help="Seed for training instances, initial weights, exploration."),
    steps: int = typer.Option(100_000, help="Environment steps (one dispatched task each)."),
    preset: str = typer.Option("paper", help="Generator preset of the training and validation instances."),
    n_tasks: Optional[int] = typer.Option(None, "--n-tasks",
                                          help="Tasks per training episode (default: dqn 1000, maddpg 200)."),
    val_n_tasks: int = typer.Option(1000, "--val-n-tasks", help="Tasks per validation instance."),
    providers: int = typer.Option(3, help="Providers per instance (a checkpoint serves only this many)."),
    eval_every: int = typer.Option(10_000, help="Steps between validations; the best is kept as best.pt."),
    val_count: int = typer.Option(2, help="Validation instances (held out: their own seed)."),
    threads: int = typer.Option(1, help="Torch CPU threads."),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p",
                                              help="Any other setting of the algorithm's config, key=value "
                                                   "(e.g. gamma=0.5, net_arch=[64,64])."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train DQN or MADDPG on generated instances; prints a JSON summary (best validation delay / greedy)."""
    algo = algo.lower()
    fields = {"seed": seed, "steps": steps, "preset": preset, "val_n_tasks": val_n_tasks, "providers": providers,
              **({"n_tasks": n_tasks} if n_tasks is not None else {}), "eval_every": eval_every, "val_count": val_count, "threads": threads, **parse_params(param)}
    cfg = _config(algo, fields)
    from edgepoc.game.generators import PRESETS

    if cfg.preset not in PRESETS:
        raise InputError(f"--preset: unknown preset {cfg.preset!r}; known: {', '.join(PRESETS)}")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} exists and is not a directory")
    if algo == "dqn":
        from edgepoc.solvers.rl.dqn import train_dqn as train
    else:
        from edgepoc.solvers.rl.maddpg import train_maddpg as train
    print_json(train(cfg, out, progress=not quiet))


def register(app: typer.Typer) -> None:
    app.command("train-rl")(train_rl_cmd)

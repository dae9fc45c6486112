"""DQN dispatcher: Stable-Baselines3's DQN trained on `DispatchEnv`, applied greedily on its Q-values.

The checkpoint keeps only the Q-network's weights and the config (a few kB), so solving needs
PyTorch but not Stable-Baselines3's saved-zip machinery. Rewards are normalised by the instance's
typical processing time during training; solving re-simulates with the kernel as every method does.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn

from edgepoc.game.instance import Instance
from edgepoc.progress import progress_bar
from edgepoc.solvers.rl.common import (TrainLog, Validation, check_providers, load_checkpoint, model_label,
                                       require_positive, save_rl_checkpoint, shortlist_label, shortlist_play,
                                       single_provider, torch_threads, trained_count)
from edgepoc.solvers.rl.config import DQNConfig
from edgepoc.solvers.rl.env import DispatchEnv, play, preset_source
from edgepoc.solvers.rl.features import observation_size

if TYPE_CHECKING:
    from edgepoc.solvers.registry import SolveOptions

FORMAT = "edgepoc-dqn/1"


def q_network(n_providers: int, net_arch: list[int]) -> nn.Sequential:
    """The same MLP as SB3's `QNetwork.q_net` for these sizes, so its state dict loads into it."""
    from stable_baselines3.common.torch_layers import create_mlp

    return nn.Sequential(*create_mlp(observation_size(n_providers), n_providers, list(net_arch)))


def greedy_q_policy(net: nn.Module) -> Callable[[np.ndarray], int]:
    def choose(obs: np.ndarray) -> int:
        with torch.inference_mode():
            return int(net(torch.from_numpy(obs)[None]).argmax(1)[0])
    return choose


def train_dqn(config: DQNConfig, out: str | Path, progress: bool = True) -> dict:
    """Train, validating every `eval_every` steps; writes best.pt, last.pt, config.json, log.jsonl in `out`."""
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger

    require_positive("steps", config.steps)
    torch_threads(config.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    env = DispatchEnv(preset_source(config.preset, seed=config.train_seed, n_tasks=config.n_tasks,
                                    providers=config.providers), n_providers=config.providers, reward_scale="auto")
    val = Validation.make(config.preset, config.val_seed, config.val_count, n_tasks=config.val_n_tasks,
                          providers=config.providers)
    play_env = DispatchEnv(val.instances, n_providers=config.providers)
    model = DQN("MlpPolicy", env, learning_rate=config.learning_rate, buffer_size=config.buffer_size,
                learning_starts=config.learning_starts, batch_size=config.batch_size, gamma=config.gamma,
                train_freq=config.train_freq, target_update_interval=config.target_update_interval,
                exploration_fraction=config.exploration_fraction,
                exploration_final_eps=config.exploration_final_eps, policy_kwargs={"net_arch": config.net_arch},
                seed=config.seed, device="cpu", verbose=0)
    # Our own log is TrainLog; SB3's default logger would leave an empty /tmp/SB3-<time> folder per run.
    model.set_logger(Logger(folder=None, output_formats=[]))
    log = TrainLog(out)
    last = {"ratio": float("nan")}

    def save(path: Path, step: int, ratio: float) -> None:
        save_rl_checkpoint(path, FORMAT, config, {"n_providers": config.providers, "step": step,
                                                "val_ratio_to_greedy": ratio,
                                                "state_dict": model.q_net.q_net.state_dict()})

    def evaluate(step: int) -> float:
        net = model.q_net.q_net
        ratio = val.score(lambda inst: play(play_env, inst, greedy_q_policy(net)))
        last["ratio"] = ratio
        if log.record(step, ratio, exploration=round(model.exploration_rate, 3)):
            save(out / "best.pt", step, ratio)
        return ratio

    bar = progress_bar()

    class Progress(BaseCallback):
        def __init__(self, task) -> None:
            super().__init__()
            self.task = task

        def _on_step(self) -> bool:
            n = self.num_timesteps
            if n % config.eval_every == 0:
                ratio = evaluate(n)
                bar.update(self.task, status=f"val/greedy {ratio:.3f} (best {log.best:.3f})")
            bar.update(self.task, completed=n)
            return True

    with bar:
        bar.disable = not progress
        task = bar.add_task("DQN", total=config.steps, status="")
        model.learn(total_timesteps=config.steps, callback=Progress(task))
    ratio = evaluate(config.steps) if config.steps % config.eval_every else last["ratio"]
    save(out / "last.pt", config.steps, ratio)
    return {"algo": "dqn", "steps": config.steps, "best_val_ratio_to_greedy": log.best,
            "last_val_ratio_to_greedy": ratio, "seconds": round(time.perf_counter() - log.t0, 1),
            "checkpoint": str(out / "best.pt")}


@lru_cache(maxsize=16)
def _load(path: str | None, n_providers: int) -> tuple[nn.Module, int]:
    doc = load_checkpoint(path, "dqn", FORMAT, n_providers)
    net = q_network(doc["n_providers"], doc["config"]["net_arch"])
    net.load_state_dict(doc["state_dict"])
    net.eval()
    return net, int(doc["n_providers"])


def solve_dqn(instance: Instance, options: SolveOptions) -> tuple[np.ndarray, dict]:
    """Dispatch every task to the provider with the highest Q-value (`options.model`: checkpoint)."""
    trivial = single_provider(instance, options, "dqn")
    if trivial is not None:
        return trivial
    net, k = _load(options.model, trained_count(options, "dqn", instance))
    if instance.n_providers > k:  # more providers than it was trained for: each task among its k best finishers
        choose = greedy_q_policy(net)
        x = shortlist_play(instance, options.free_times, k,
                           lambda rows, task: choose(np.concatenate([rows.ravel(), task])))
        return x, {"model": shortlist_label(options, "dqn", k, instance)}
    check_providers(instance, k, "dqn")
    x = play(DispatchEnv([instance], n_providers=k), instance, greedy_q_policy(net), options.free_times)
    return x, {"model": model_label(options.model, "dqn", k)}

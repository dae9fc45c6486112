"""MADDPG (Lowe et al. 2017) on `MarketEnv`: decentralised bidding actors, centralised critics.

Each provider k has an actor `mu_k(o_k) -> bid in [0, 1]` that sees only its own observation, and a
critic `Q_k(o_1..o_K, b_1..b_K)` that sees every observation and every bid (training only). Critics
learn from a shared replay buffer with target networks (TD(0), soft updates); each actor follows the
gradient of its critic with its own bid replaced by `mu_k(o_k)` (the other bids as they were taken).
Exploration is Gaussian noise on the bids, annealed. The reward is the community's: minus the task's
latency beyond the least any provider could have given it ("regret", capped, in typical processing
times), the same for every agent, so the agents are paid for letting the fastest provider win.

Three settings made it learn here (docs/rl.md has the measurements): the regret reward with a cap
(raw latency let an early bad policy grow the queues and swamp the critics), 200-task training
episodes, and the reference implementation's small penalty on the actors' pre-sigmoid output (a
saturated bidder wins every task and its gradient vanishes).

A small self-contained implementation (docs/rl.md says why not TorchRL's pieces, which do install
here), one file, read top to bottom like CleanRL; all settings are in `MADDPGConfig`.
"""

from __future__ import annotations

import copy
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
from edgepoc.solvers.rl.config import MADDPGConfig
from edgepoc.solvers.rl.env import preset_source
from edgepoc.solvers.rl.market import FINISH, MarketEnv, agent_observation_size, winner

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from edgepoc.solvers.registry import SolveOptions

FORMAT = "edgepoc-maddpg/1"


def mlp(inp: int, hidden: list[int], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(inp, h), nn.ReLU()]
        inp = h
    layers.append(nn.Linear(inp, out))
    return nn.Sequential(*layers)


class Actors(nn.Module):
    """One bidding actor per provider; `forward(obs (B, K, d)) -> bids (B, K)` in [0, 1]."""

    def __init__(self, n_providers: int, obs_size: int, hidden: list[int]) -> None:
        super().__init__()
        self.nets = nn.ModuleList([mlp(obs_size, hidden, 1) for _ in range(n_providers)])

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.cat([net(obs[:, k]) for k, net in enumerate(self.nets)], dim=1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(obs))


class Critics(nn.Module):
    """One centralised critic per provider: `forward(obs (B, K, d), bids (B, K)) -> Q (B, K)`."""

    def __init__(self, n_providers: int, obs_size: int, hidden: list[int]) -> None:
        super().__init__()
        self.nets = nn.ModuleList([mlp(n_providers * (obs_size + 1), hidden, 1) for _ in range(n_providers)])

    def forward(self, obs: torch.Tensor, bids: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([obs.flatten(1), bids], dim=1)
        return torch.cat([net(joint) for net in self.nets], dim=1)


class ReplayBuffer:
    def __init__(self, size: int, k: int, d: int, rng: np.random.Generator) -> None:
        self.obs = np.zeros((size, k, d), np.float32)
        self.next_obs = np.zeros((size, k, d), np.float32)
        self.bids = np.zeros((size, k), np.float32)
        self.reward = np.zeros(size, np.float32)
        self.done = np.zeros(size, np.float32)
        self.size, self.pos, self.full, self.rng = size, 0, False, rng

    def add(self, obs: np.ndarray, bids: np.ndarray, reward: float, next_obs: np.ndarray, done: float) -> None:
        i = self.pos
        self.obs[i], self.bids[i], self.reward[i], self.next_obs[i], self.done[i] = obs, bids, reward, next_obs, done
        self.pos = (i + 1) % self.size
        self.full = self.full or self.pos == 0

    def sample(self, n: int) -> tuple[torch.Tensor, ...]:
        idx = self.rng.integers(0, self.size if self.full else self.pos, size=n)
        return tuple(torch.from_numpy(a[idx]) for a in (self.obs, self.bids, self.reward, self.next_obs, self.done))


def _soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.mul_(1 - tau).add_(s, alpha=tau)


def bid_policy(actors: Actors) -> Callable[[np.ndarray], int]:
    """Deterministic bids for every provider at once: obs (K, d) -> winner index."""
    def choose(obs: np.ndarray) -> int:
        with torch.inference_mode():
            return winner(actors(torch.from_numpy(obs)[None])[0].numpy())
    return choose


def play_market(env: MarketEnv, instance: Instance, choose: Callable[[np.ndarray], int],
                free_times: ArrayLike | None = None) -> np.ndarray:
    """One auction per task of `instance`, the bids from `choose(obs (K, d)) -> winner`."""
    env.reset(options={"instance": instance, "free_times": free_times})
    q = env.queue
    while not q.done:
        q.assign(choose(env.observe_all()))
    return q.assignment.copy()


def train_maddpg(config: MADDPGConfig, out: str | Path, progress: bool = True) -> dict:
    """Train; writes best.pt (by validation delay / greedy), last.pt, config.json, log.jsonl in `out`."""
    require_positive("steps", config.steps)
    torch_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    k, d = config.providers, agent_observation_size(config.providers)
    env = MarketEnv(preset_source(config.preset, seed=config.train_seed, n_tasks=config.n_tasks, providers=k),
                    n_providers=k, reward_scale="auto", reward=config.reward)
    val = Validation.make(config.preset, config.val_seed, config.val_count, n_tasks=config.val_n_tasks, providers=k)
    play_env = MarketEnv(val.instances, n_providers=k)
    actors, critics = Actors(k, d, config.hidden), Critics(k, d, config.hidden)
    actors_target, critics_target = copy.deepcopy(actors), copy.deepcopy(critics)
    actor_opt = torch.optim.Adam(actors.parameters(), lr=config.actor_lr)
    critic_opt = torch.optim.Adam(critics.parameters(), lr=config.critic_lr)
    buffer = ReplayBuffer(min(config.buffer_size, config.steps), k, d, rng)
    log = TrainLog(out)
    last_ratio = float("nan")

    def save(path: Path, step: int, ratio: float) -> None:
        save_rl_checkpoint(path, FORMAT, config, {"n_providers": k, "obs_size": d, "step": step,
                                                "val_ratio_to_greedy": ratio, "actors": actors.state_dict()})

    def update() -> tuple[float, float]:
        obs, bids, reward, next_obs, done = buffer.sample(config.batch_size)
        with torch.no_grad():
            q_next = critics_target(next_obs, actors_target(next_obs))
            target = reward[:, None] + config.gamma * (1 - done[:, None]) * q_next
        critic_loss = ((critics(obs, bids) - target) ** 2).mean()
        critic_opt.zero_grad()
        critic_loss.backward()
        critic_opt.step()
        # actor k: the critic k's value with bid k replaced by mu_k(o_k), the other bids as taken
        logits = actors.logits(obs)
        mine = torch.sigmoid(logits)
        eye = torch.eye(k, dtype=torch.bool)
        joint = torch.where(eye[None], mine[:, None, :], bids[:, None, :])  # (B, K agents, K bids)
        q = torch.stack([critics.nets[j](torch.cat([obs.flatten(1), joint[:, j]], dim=1))[:, 0]
                         for j in range(k)], dim=1)
        # as in the reference MADDPG code: a small penalty on the pre-squash output keeps the bids off
        # the sigmoid's flat ends, where a saturated bidder would win every task and stop learning
        actor_loss = -q.mean() + config.logit_reg * (logits ** 2).mean()
        actor_opt.zero_grad()
        actor_loss.backward()
        actor_opt.step()
        _soft_update(critics_target, critics, config.tau)
        _soft_update(actors_target, actors, config.tau)
        return critic_loss.item(), actor_loss.item()

    bar = progress_bar()
    bar.disable = not progress
    env.reset(seed=config.seed)
    obs = env.observe_all()
    losses = (float("nan"), float("nan"))
    with bar:
        task = bar.add_task("MADDPG", total=config.steps, status="")
        for step in range(1, config.steps + 1):
            frac = min(1.0, step / max(1.0, config.noise_fraction * config.steps))
            noise = config.noise_start + frac * (config.noise_end - config.noise_start)
            if step <= config.learning_starts:
                bids = rng.random(k).astype(np.float32)
            else:
                with torch.no_grad():
                    bids = actors(torch.from_numpy(obs)[None])[0].numpy()
                bids = np.clip(bids + rng.normal(0.0, noise, k), 0.0, 1.0).astype(np.float32)
            reward = max(env.auction(bids)[2], -config.reward_clip)
            done = env.queue.done
            next_obs = env.observe_all()
            buffer.add(obs, bids, reward, next_obs, float(done))
            if done:
                env.reset()
                next_obs = env.observe_all()
            obs = next_obs
            if step > config.learning_starts and step % config.train_freq == 0:
                losses = update()
            if step % config.eval_every == 0 or step == config.steps:
                actors.eval()
                last_ratio = val.score(lambda inst: play_market(play_env, inst, bid_policy(actors)))
                actors.train()
                if log.record(step, last_ratio, noise=round(noise, 3), critic_loss=losses[0], actor_loss=losses[1]):
                    save(out / "best.pt", step, last_ratio)
                bar.update(task, status=f"val/greedy {last_ratio:.3f} (best {log.best:.3f})")
            bar.update(task, completed=step)
    save(out / "last.pt", config.steps, last_ratio)
    return {"algo": "maddpg", "steps": config.steps, "best_val_ratio_to_greedy": log.best,
            "last_val_ratio_to_greedy": last_ratio, "seconds": round(time.perf_counter() - log.t0, 1),
            "checkpoint": str(out / "best.pt")}


@lru_cache(maxsize=16)
def _load(path: str | None, n_providers: int) -> tuple[Actors, int]:
    doc = load_checkpoint(path, "maddpg", FORMAT, n_providers)
    actors = Actors(doc["n_providers"], doc["obs_size"], doc["config"]["hidden"])
    actors.load_state_dict(doc["actors"])
    actors.eval()
    return actors, int(doc["n_providers"])


def solve_maddpg(instance: Instance, options: SolveOptions) -> tuple[np.ndarray, dict]:
    """Every provider bids with its actor; each task goes to the best bid (`options.model`: checkpoint)."""
    trivial = single_provider(instance, options, "maddpg")
    if trivial is not None:
        return trivial
    actors, k = _load(options.model, trained_count(options, "maddpg", instance))
    if instance.n_providers > k:  # more providers than bidders: each task auctioned among its k best finishers
        choose = bid_policy(actors)

        def auction(rows: np.ndarray, task: np.ndarray) -> int:
            # the market's agent rows: own columns, the task, every shortlisted provider's finish
            return choose(np.concatenate([rows, np.broadcast_to(task, (k, task.size)),
                                          np.broadcast_to(rows[:, FINISH], (k, k))], axis=1))
        x = shortlist_play(instance, options.free_times, k, auction)
        return x, {"model": shortlist_label(options, "maddpg", k, instance)}
    check_providers(instance, k, "maddpg")
    x = play_market(MarketEnv([instance], n_providers=k), instance, bid_policy(actors), options.free_times)
    return x, {"model": model_label(options.model, "maddpg", k)}

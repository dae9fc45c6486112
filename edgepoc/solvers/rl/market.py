"""`MarketEnv`: the multi-party game of the paper as a PettingZoo parallel environment.

Every provider is an agent. When a task arrives each agent sees the task and the queues (its own
columns of `features.dispatch_provider_features`, the task features, and every provider's finish latency)
and places a bid in [0, 1]; the task goes to the highest bid, ties to the lowest provider index.
The queue then advances through the shared kernel. Every agent receives the same reward, minus the
task's latency (the community's loss), so winning a task one would serve slowly costs the bidder
as much as everyone: cooperation — letting the provider that finishes first take the task — pays.

`reward="regret"` (what training uses) subtracts from that latency the least latency any provider
could have given the task on the current queues: still one community reward, but bounded when a
poor early policy lets the queues grow, which otherwise swamps the critics (measured: validation
delay 40-160x greedy's after 30k steps with the raw latency, see docs/rl.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.solvers.rl.env import InstanceSource, QueueStepper, list_source, preset_source
from edgepoc.solvers.rl.features import FEATURE_CLIP, PROVIDER_COLUMNS, TASK_COLUMNS, dispatch_provider_features, \
    dispatch_task_features, time_scale

FINISH = PROVIDER_COLUMNS.index("finish")


def agent_observation_size(n_providers: int) -> int:
    return len(PROVIDER_COLUMNS) + len(TASK_COLUMNS) + n_providers


def winner(bids: np.ndarray) -> int:
    """The highest bid wins; ties go to the lowest provider index (np.argmax keeps the first)."""
    return int(np.argmax(bids))


class MarketEnv(ParallelEnv):
    """One episode = one instance; each step every provider bids for the arriving task."""

    metadata = {"name": "edgepoc_market_v0", "render_modes": []}

    def __init__(self, source: InstanceSource | Sequence[Instance] | None = None, n_providers: int = 3,
                 reward_scale: float | str = 1.0, reward: str = "latency") -> None:
        if reward not in ("latency", "regret"):
            raise InputError(f"reward: expected 'latency' or 'regret', got {reward!r}")
        if source is None:
            source = preset_source("paper", providers=n_providers)
        elif not callable(source):
            source = list_source(source)
        self.source = source
        self.n_providers = int(n_providers)
        self.reward_scale = reward_scale
        self.reward = reward
        self.possible_agents = [f"provider_{k}" for k in range(self.n_providers)]
        self.agents: list[str] = []
        size = agent_observation_size(self.n_providers)
        self._obs_space = gym.spaces.Box(0.0, FEATURE_CLIP, shape=(size,), dtype=np.float32)
        self._act_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.queue: QueueStepper | None = None
        self._rng = np.random.default_rng()
        self._scale = 1.0
        self._factor = 1.0

    def observation_space(self, agent: str) -> gym.spaces.Box:
        return self._obs_space

    def action_space(self, agent: str) -> gym.spaces.Box:
        return self._act_space

    def observe_all(self) -> np.ndarray:
        """(K, d) float32: row k is provider k's observation of the arriving task."""
        q = self.queue
        if q.done:
            return np.zeros((self.n_providers, self._obs_space.shape[0]), dtype=np.float32)
        cols = dispatch_provider_features(q.instance, q.index, q.free, self._scale)
        task = dispatch_task_features(q.instance, q.index, self._scale)
        k = self.n_providers
        return np.concatenate([cols, np.broadcast_to(task, (k, task.size)),
                               np.broadcast_to(cols[:, FINISH], (k, k))], axis=1)

    def state(self) -> np.ndarray:
        """The centralised critic's view: every agent's observation, concatenated."""
        return self.observe_all().ravel()

    def _obs_dict(self) -> dict[str, np.ndarray]:
        rows = self.observe_all()
        return {a: rows[k] for k, a in enumerate(self.possible_agents)}

    def reset(self, seed: int | None = None,
              options: dict | None = None) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        options = options or {}
        instance = options.get("instance") or self.source(self._rng)
        if instance.n_providers != self.n_providers:
            raise InputError(f"instance {instance.name}: has {instance.n_providers} providers, "
                             f"this market (and its policy) is for {self.n_providers}")
        self.queue = QueueStepper(instance, options.get("free_times"))
        self._scale = time_scale(instance)
        self._factor = 1.0 / self._scale if self.reward_scale == "auto" else float(self.reward_scale)
        self.agents = list(self.possible_agents) if instance.n_tasks else []
        return self._obs_dict(), {a: {} for a in self.possible_agents}

    def auction(self, bids: np.ndarray) -> tuple[int, float, float]:
        """Give the arriving task to the best bid; returns (winner, the task's latency, the reward)."""
        q = self.queue
        best = 0.0
        if self.reward == "regret":
            inst, i = q.instance, q.index
            best = max(0.0, float((np.maximum(inst.ready[i], q.free) + inst.processing[i]).min() - inst.arrival[i]))
        k = winner(bids)
        latency = q.assign(k)
        loss = latency - best if self.reward == "regret" else latency
        return k, latency, (-loss * self._factor if self._factor != 1.0 else -loss)

    def step(self, actions: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, bool],
                                                           dict[str, bool], dict[str, dict[str, Any]]]:
        if self.queue is None or self.queue.done:
            raise RuntimeError("step() called on a finished episode; call reset()")
        bids = np.array([float(np.asarray(actions[a]).reshape(-1)[0]) for a in self.possible_agents])
        k, latency, reward = self.auction(bids)
        done = self.queue.done
        obs = self._obs_dict()
        agents = self.possible_agents
        infos = {a: {"latency": latency, "winner": k} for a in agents}
        if done:
            for a in agents:
                infos[a]["assignment"] = self.queue.assignment.copy()
            self.agents = []
        return (obs, {a: reward for a in agents}, {a: done for a in agents}, {a: False for a in agents}, infos)

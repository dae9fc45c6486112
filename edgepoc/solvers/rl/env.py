"""`DispatchEnv`: the dispatch problem as a Gymnasium environment, one step per arriving task.

The observation is the arriving task and the providers' queues relative to its arrival
(`features.dispatch_observation`); the action is the provider; the reward is minus the task's
latency. Each step runs the shared kernel (`kernel._run`) on that one task with the providers'
free times carried over, so with `reward_scale=1` the episode return is exactly `-f(x)`, bit for bit.
Training uses `reward_scale="auto"`: latency divided by the instance's typical processing time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from edgepoc.errors import InputError
from edgepoc.game.generators import generate
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import _free_times, _run
from edgepoc.solvers.rl.features import FEATURE_CLIP, dispatch_observation, observation_size, time_scale

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

InstanceSource = Callable[[np.random.Generator], Instance]


class QueueStepper:
    """The providers' queues of one instance, advanced one task at a time by the shared kernel."""

    def __init__(self, instance: Instance, free_times=None) -> None:
        self.instance = instance
        self.free = _free_times(instance, free_times)
        self.index = 0
        self.assignment = np.full(instance.n_tasks, -1, dtype=np.int64)
        self._empty = np.empty(0, dtype=np.float64)

    @property
    def done(self) -> bool:
        return self.index >= self.instance.n_tasks

    def assign(self, provider: int) -> float:
        """Send the current task to `provider`; returns its latency `max(0, C_i - a_i)`."""
        i = self.index
        inst = self.instance
        self.assignment[i] = provider
        latency = _run(inst.arrival[i:i + 1], inst.ready[i:i + 1], inst.processing[i:i + 1],
                       self.assignment[i:i + 1], self.free, self._empty)
        self.index += 1
        return float(latency)


def preset_source(preset: str = "paper", seed: int = 0, **params: Any) -> InstanceSource:
    """Fresh instances of a generator preset, a new index each episode (reproducible from `seed`)."""
    def draw(rng: np.random.Generator) -> Instance:
        return generate(preset, seed=seed, start_index=int(rng.integers(0, 2**31 - 1)), count=1, **params)[0]
    return draw


def list_source(instances: Sequence[Instance]) -> InstanceSource:
    """Instances drawn uniformly from a fixed list."""
    if not instances:
        raise InputError("instances: need at least one instance")
    items = list(instances)
    return lambda rng: items[int(rng.integers(0, len(items)))]


class DispatchEnv(gym.Env):
    """One episode = one instance; each step dispatches the next arriving task to a provider.

    `reset(options={"instance": inst, "free_times": f})` plays a given instance (how the solver
    uses a trained policy); otherwise the instance comes from `source`.
    """

    metadata = {"render_modes": []}

    def __init__(self, source: InstanceSource | Sequence[Instance] | None = None, n_providers: int = 3,
                 reward_scale: float | str = 1.0) -> None:
        if source is None:
            source = preset_source("paper", providers=n_providers)
        elif not callable(source):
            source = list_source(source)
        if not (reward_scale == "auto" or (isinstance(reward_scale, (int, float)) and reward_scale > 0)):
            raise InputError(f"reward_scale: expected a positive number or 'auto', got {reward_scale!r}")
        self.source = source
        self.n_providers = int(n_providers)
        self.reward_scale = reward_scale
        self.action_space = gym.spaces.Discrete(self.n_providers)
        self.observation_space = gym.spaces.Box(0.0, FEATURE_CLIP, shape=(observation_size(self.n_providers),),
                                                dtype=np.float32)
        self.queue: QueueStepper | None = None
        self._scale = 1.0
        self._reward_factor = 1.0

    def _observe(self) -> np.ndarray:
        q = self.queue
        if q.done:  # terminal observation: nothing arrives; zeros keep it inside the space
            return np.zeros(self.observation_space.shape, dtype=np.float32)
        return dispatch_observation(q.instance, q.index, q.free, self._scale)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        instance = options.get("instance") or self.source(self.np_random)
        if instance.n_providers != self.n_providers:
            raise InputError(f"instance {instance.name}: has {instance.n_providers} providers, "
                             f"this environment (and its policy) is for {self.n_providers}")
        self.queue = QueueStepper(instance, options.get("free_times"))
        self._scale = time_scale(instance)
        self._reward_factor = 1.0 / self._scale if self.reward_scale == "auto" else float(self.reward_scale)
        return self._observe(), {"instance": instance.name, "time_scale": self._scale}

    def step(self, action: int | np.integer) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.queue is None or self.queue.done:
            raise RuntimeError("step() called on a finished episode; call reset()")
        latency = self.queue.assign(int(action))
        reward = -latency * self._reward_factor if self._reward_factor != 1.0 else -latency
        terminated = self.queue.done
        info = {"latency": latency}
        if terminated:
            info["assignment"] = self.queue.assignment.copy()
        return self._observe(), reward, terminated, False, info


def play(env: DispatchEnv, instance: Instance, choose: Callable[[np.ndarray], int],
         free_times: ArrayLike | None = None) -> np.ndarray:
    """Run one episode of `instance` with the policy `choose(obs) -> provider`; returns the assignment."""
    obs, _ = env.reset(options={"instance": instance, "free_times": free_times})
    done = instance.n_tasks == 0
    while not done:
        obs, _, done, _, _ = env.step(choose(obs))
    return env.queue.assignment.copy()

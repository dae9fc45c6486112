"""The settings of the RL baselines' training runs, apart from the code that trains them.

They import nothing heavy, so `edgepoc train-rl` checks its settings before PyTorch and Stable-Baselines3 load
(seconds): a typo in a --param is refused at once. Each config is written beside its run's checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DQNConfig:
    """Everything a DQN run depends on (written beside its checkpoints)."""

    seed: int = 0
    steps: int = 200_000  # environment steps (= dispatched tasks)
    preset: str = "paper"
    n_tasks: int = 1000  # tasks per training episode
    val_n_tasks: int = 1000  # tasks per validation instance (the benchmark's size)
    providers: int = 3
    gamma: float = 0.5  # short horizon: a task's own latency dominates; the look-ahead is a bonus
    learning_rate: float = 5e-4
    buffer_size: int = 100_000
    batch_size: int = 128
    learning_starts: int = 2_000
    train_freq: int = 4
    target_update_interval: int = 2_000
    exploration_fraction: float = 0.2
    exploration_final_eps: float = 0.02
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    eval_every: int = 10_000  # steps between validations (best checkpoint kept)
    val_count: int = 2
    threads: int = 1

    @property
    def train_seed(self) -> int:
        return 1_000 + self.seed  # training instances never overlap the held-out seeds 0..999

    @property
    def val_seed(self) -> int:
        return 500_000 + self.seed


@dataclass
class MADDPGConfig:
    """Everything a MADDPG run depends on (written beside its checkpoints)."""

    seed: int = 0
    steps: int = 100_000  # environment steps (= auctioned tasks)
    preset: str = "paper"
    n_tasks: int = 200  # tasks per training episode: short episodes reset the queues an early bad policy grows
    val_n_tasks: int = 1000  # tasks per validation instance (the benchmark's size)
    providers: int = 3
    gamma: float = 0.5
    reward: str = "regret"  # MarketEnv reward used for training: "regret" or "latency"
    reward_clip: float = 5.0  # per-task loss cap (in typical processing times), keeps |Q| bounded
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    tau: float = 0.01  # soft target update
    buffer_size: int = 100_000
    batch_size: int = 256
    learning_starts: int = 2_000
    train_freq: int = 4  # environment steps per gradient step
    noise_start: float = 0.3  # std of the Gaussian bid noise, annealed linearly ...
    noise_end: float = 0.02  # ... to this over `noise_fraction` of the run
    noise_fraction: float = 0.5
    logit_reg: float = 1e-3  # penalty on the actors' pre-sigmoid output
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    eval_every: int = 10_000
    val_count: int = 2
    threads: int = 1

    @property
    def train_seed(self) -> int:
        return 2_000 + self.seed

    @property
    def val_seed(self) -> int:
        return 600_000 + self.seed

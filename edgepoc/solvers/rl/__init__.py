"""Reinforcement-learning baselines (SPEC §8): a DQN dispatcher and MADDPG bidding providers.

`env` is the single-agent dispatch environment (one step per arriving task), `market` the
multi-agent one (every provider bids for each task); both step the shared queue kernel, so their
returns are the game's own objective. `dqn` and `maddpg` train and apply the policies.
"""

"""The edge resource trading game: instances, the queue simulation kernel, metrics, generators, files."""

from edgepoc.game.instance import Instance
from edgepoc.game.kernel import (
    simulate,
    simulate_completion,
    simulate_population,
    simulate_state,
    greedy_assignment,
)
from edgepoc.game.metrics import evaluate

__all__ = [
    "Instance",
    "simulate",
    "simulate_completion",
    "simulate_population",
    "simulate_state",
    "greedy_assignment",
    "evaluate",
]

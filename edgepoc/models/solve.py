"""`teacher` and `student` as registered allocation methods (`edgepoc solve --method teacher`).

`options.model` is a checkpoint path (None: the one bundled in the package); `options.params`
takes the decoder settings (`decode=argmax|guided|sample|search`, `budget_ms`, `samples`, ...);
`options.seconds` is the decoder's time budget when `budget_ms` is not given.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
import torch

from edgepoc.game.instance import Instance
from edgepoc.errors import InputError
from edgepoc.models.checkpoint import bundled_path, bundled_provider_counts, load_cached
from edgepoc.models.decode import DecodeOptions, decode
from edgepoc.models.features import to_graph


def model_probabilities(model, inst: Instance, free_times=None) -> np.ndarray:
    """`P` (n, K) for one instance."""
    data = to_graph(inst, model.config.features, free_times=free_times)
    with torch.inference_mode():
        return model(data).numpy()


@lru_cache(maxsize=1)
def warm_decoders() -> None:
    """Load the compiled decoder and kernel once, so the first solve's budget is not spent on it."""
    inst = Instance.create([[1.0], [1.0]], [0.0, 0.0], [0.0, 0.1], [[0.5], [0.5]], name="warm-up")
    decode(inst, np.full((2, 2), 0.5), DecodeOptions("search", budget_s=0.0))


def _solve(kind: str, instance: Instance, options) -> tuple[np.ndarray, dict]:
    path = options.model
    counts = bundled_provider_counts(kind) if path is None else ()
    if counts:  # the bundled model for this provider count (none bundled: load_cached names the missing file)
        if instance.n_providers not in counts:
            raise InputError(f"model: no bundled {kind} for {instance.n_providers} providers (bundled: "
                             f"{', '.join(map(str, counts))}); train one with `edgepoc train` and pass --model")
        path = bundled_path(kind, instance.n_providers)
    model, doc = load_cached(path, kind)
    warm_decoders()
    opts = DecodeOptions.from_params(dict(options.params), options.seconds, options.seed)
    t0 = time.perf_counter()
    p = model_probabilities(model, instance, options.free_times)
    infer = time.perf_counter() - t0
    x, info = decode(instance, p, opts, options.free_times, started_at=t0)
    info.update({"model": options.model or f"bundled {kind}", "inference_seconds": infer})
    return x, info


def solve_teacher(instance: Instance, options) -> tuple[np.ndarray, dict]:
    """The teacher's allocation (ResourceAllocationModel + decoder)."""
    return _solve("teacher", instance, options)


def solve_student(instance: Instance, options) -> tuple[np.ndarray, dict]:
    """The distilled student's allocation, with the same decoders."""
    return _solve("student", instance, options)

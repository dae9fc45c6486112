"""`teacher` and `student` as registered allocation methods (`edgepoc solve --method teacher`).

`options.model` is a checkpoint path (None: the one bundled in the package: the general model, any
K and R). A general checkpoint takes `decode=onepass|search` (default `search`), `sweeps` (the search's
work budget), `budget_ms` or `--seconds` (a wall-clock budget instead, explicit only), `kick_fraction`,
`swap_window`, `temperature`. A paper-variant checkpoint (fixed K, `edgepoc train`) takes the decoder
settings of `edgepoc.models.decode` (`decode=argmax|guided|sample|search`, `budget_ms`, ...).

A general checkpoint with its `.npz` beside it (the bundled ones have it) runs without PyTorch: this module
imports torch only for a checkpoint that needs it (`edgepoc.models.portable`).
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

from edgepoc.errors import EdgepocError, InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import greedy_assignment
from edgepoc.models.decode import DecodeOptions, decode
from edgepoc.models.onepass import SEARCH_KEYS, onepass, search, search_options, softmax_weights
from edgepoc.models.portable import PortableModel, as_portable, load_portable

GENERAL_DECODERS = ("onepass", "search")


def model_probabilities(model, inst: Instance, free_times=None) -> np.ndarray:
    """`P` (n, K) for one instance."""
    import torch

    from edgepoc.models.features import to_graph

    data = to_graph(inst, model.config.features, free_times=free_times)
    with torch.inference_mode():
        return model(data).numpy()


@lru_cache(maxsize=1)
def warm_decoders() -> None:
    """Load the compiled decoder and kernel once, so the first solve's budget is not spent on it."""
    inst = Instance.create([[1.0], [1.0]], [0.0, 0.0], [0.0, 0.1], [[0.5], [0.5]], name="warm-up")
    decode(inst, np.full((2, 2), 0.5), DecodeOptions("search", budget_s=0.0))


def solve_general(model, instance: Instance, options) -> tuple[np.ndarray, dict]:
    """One-pass decode of a general model (a `PortableModel` or the torch one), then (default) the
    work-budgeted search from it. Both forms run the same float64 forward pass (`portable`)."""
    model = as_portable(model)
    params = dict(options.params)
    method = str(params.pop("decode", "search"))
    if method not in GENERAL_DECODERS:
        raise InputError(f"decode: expected one of {', '.join(GENERAL_DECODERS)}, got {method!r}")
    unknown = set(params) - SEARCH_KEYS
    if unknown:
        raise InputError(f"--param: unknown model setting(s) {sorted(unknown)}; known: decode, {', '.join(sorted(SEARCH_KEYS))}")
    opts = search_options(params, options.seconds, options.seed)
    t0 = time.perf_counter()
    emb = model.embed(instance)
    infer = time.perf_counter() - t0
    x, total, scores = onepass(instance, emb, model.head(), options.free_times, keep_scores=method == "search")
    info = {"decode": "onepass", "onepass_latency": total, "inference_seconds": infer,
            "onepass_seconds": time.perf_counter() - t0}
    if method == "search":
        g, _ = greedy_assignment(instance, options.free_times)
        weights = softmax_weights(scores, (instance.n_tasks, instance.n_providers), opts.temperature)
        x, extra = search(instance, [("onepass", x), ("greedy", g)], weights, opts, options.free_times)
        info.update(extra)
    return x, info


def load_general_or_torch(path: str | None, kind: str):
    """The checkpoint's model: torch-free (`PortableModel`) when a matching `.npz` exists, else loaded by torch."""
    model = load_portable(path, kind)
    if model is not None:
        return model
    try:
        from edgepoc.models.checkpoint import load_cached
    except ModuleNotFoundError as exc:
        raise EdgepocError(f"model: {path or f'the bundled {kind}'} has no .npz weight file beside it and PyTorch "
                           f"is not installed to read the checkpoint ({exc})") from None
    return load_cached(path, kind)[0]


def is_general(model) -> bool:
    return getattr(model.config, "variant", "paper") == "general"


def _solve(kind: str, instance: Instance, options) -> tuple[np.ndarray, dict]:
    model = load_general_or_torch(options.model, kind)
    if is_general(model):
        weights = "npz" if isinstance(model, PortableModel) else "pt"
        x, info = solve_general(model, instance, options)
        info.update({"model": options.model or f"bundled {kind}", "weights": weights})
        return x, info
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

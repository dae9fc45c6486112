"""The learned methods and the no-model search control as registered allocation methods (`edgepoc solve`).

`teacher` / `student`: `options.model` is a checkpoint path (None: the one bundled in the package: the
general model, any K and R). A general checkpoint takes `decode=onepass|search` (default `search`),
`sweeps` (the search's work budget), `budget_ms` or `--seconds` (a wall-clock deadline instead, explicit
only), `kick_window`, `kick_fraction`, `swap_window`, `temperature`, `samples`, `starts` (the search's sampled one-pass
starts; `edgepoc.models.general.decode`). A paper-variant
checkpoint (fixed K, `edgepoc train`) takes `decode=argmax|guided|sample|search`, `budget_ms`, ...
(`edgepoc.models.paper.decode`). `search`: the shared search loop from greedy (point kicks, with `kick_window=0`, uniform).

A general checkpoint with its `.npz` beside it (the bundled ones have it) runs without PyTorch: this module
imports torch only for a checkpoint that needs it (`edgepoc.models.general.portable`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from edgepoc.errors import EdgepocError
from edgepoc.game.instance import Instance, warm_up_instance
from edgepoc.game.kernel import greedy_assignment
from edgepoc.models.budget import Budget
from edgepoc.models.decoding import DEFAULT_SWEEPS, DecodeOptions, search, uniform_weights, warm_search
from edgepoc.models.general.decode import (EMBEDDING_MAX_PROVIDERS, Head, decode_embedding, general_decode_options,
                                           onepass, uses_embedding)
from edgepoc.models.general.portable import PortableModel, as_portable, dense, load_portable
from edgepoc.models.paper.decode import decode_probabilities, paper_decode_options

if TYPE_CHECKING:
    from torch import nn

    from edgepoc.models.general.model import GeneralAllocationModel
    from edgepoc.solvers.registry import SolveOptions


def model_probabilities(model: nn.Module, inst: Instance, free_times: np.ndarray | None = None) -> np.ndarray:
    """`P` (n, K) for one instance."""
    import torch

    from edgepoc.models.features import to_graph

    data = to_graph(inst, model.config.features, free_times=free_times)
    with torch.inference_mode():
        return model(data).numpy()


_WARM = False


def warm_up() -> None:
    """Compile (or load from Numba's cache) every decoding strategy and the kernel once per process, outside
    any clock, on a 4-task instance with the same array types as a real call."""
    global _WARM
    if _WARM:
        return
    _WARM = True
    inst = warm_up_instance()
    onepass(inst, np.zeros((4, 2, 2)), Head.rollout_prior(2), keep_scores=True)
    onepass(inst, np.zeros((4, 2, 2)), Head.rollout_prior(2), uniforms=np.full(4, 0.5))
    dense(np.ones((1, 2)), np.ones((3, 2)), np.zeros(3))
    decode_probabilities(inst, np.full((4, 2), 0.5), DecodeOptions("guided"))
    warm_search()


def solve_general(model: PortableModel | GeneralAllocationModel, instance: Instance,
                  options: SolveOptions) -> tuple[np.ndarray, dict]:
    """A general model (a `PortableModel` or the torch one): its embedding, then the one-pass decode and
    (default) the search from it. Both forms run the same float64 forward pass (`portable`)."""
    model = as_portable(model)
    opts = general_decode_options(dict(options.params), options.seconds, options.seed)
    opts.progress = options.progress
    if opts.budget.is_deadline:
        warm_up()  # a wall-clock budget includes inference, never compiling
    t0 = time.perf_counter()
    head = model.head()
    embedded = uses_embedding(instance.n_providers)
    # far past the trained market sizes the head decides from the dynamic features alone (decode.py)
    emb = model.embed(instance) if embedded else np.zeros((instance.n_tasks, instance.n_providers, head.b.shape[0]))
    infer = time.perf_counter() - t0
    x, info = decode_embedding(instance, emb, head, opts, options.free_times, started_at=t0)
    info["inference_seconds"] = infer
    if not embedded:
        info["embedding"] = f"none: {instance.n_providers} providers, over the {EMBEDDING_MAX_PROVIDERS} it is used for"
    return x, info


def load_general_or_torch(path: str | None, kind: str) -> PortableModel | nn.Module:
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


def is_general(model: PortableModel | nn.Module) -> bool:
    return getattr(model.config, "variant", "paper") == "general"


def _solve(kind: str, instance: Instance, options) -> tuple[np.ndarray, dict]:
    model = load_general_or_torch(options.model, kind)
    if is_general(model):
        weights = "npz" if isinstance(model, PortableModel) else "pt"
        x, info = solve_general(model, instance, options)
        info.update({"model": options.model or f"bundled {kind}", "weights": weights})
        return x, info
    warm_up()
    opts = paper_decode_options(dict(options.params), options.seconds, options.seed)
    opts.progress = options.progress
    t0 = time.perf_counter()
    p = model_probabilities(model, instance, options.free_times)
    infer = time.perf_counter() - t0
    x, info = decode_probabilities(instance, p, opts, options.free_times, started_at=t0)
    info.update({"model": options.model or f"bundled {kind}", "inference_seconds": infer})
    return x, info


def solve_teacher(instance: Instance, options: SolveOptions) -> tuple[np.ndarray, dict]:
    """The teacher's allocation (ResourceAllocationModel + decoder)."""
    return _solve("teacher", instance, options)


def solve_student(instance: Instance, options: SolveOptions) -> tuple[np.ndarray, dict]:
    """The distilled student's allocation, with the same decoders."""
    return _solve("student", instance, options)


def solve_search_control(instance: Instance, options: SolveOptions) -> tuple[np.ndarray, dict]:
    """The no-model control: the same search loop from greedy, kicks uniform over providers, same budget."""
    opts = DecodeOptions.from_params(dict(options.params), options.seconds, options.seed, strategies=("search",),
                                     default_strategy="search", default_budget=Budget.work(DEFAULT_SWEEPS),
                                     what="search")
    opts.progress = options.progress
    x, _ = greedy_assignment(instance, options.free_times)
    found = search(instance, [("greedy", x)], uniform_weights(instance), opts, options.free_times)
    return found.assignment, found.info(opts.budget)

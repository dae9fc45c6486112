"""The general model without PyTorch: its config, its input features, its float64 forward pass, its weight file.

An edge node runs the general student (and can run the teacher) from here: NumPy only, no torch, no PyG.
This forward pass is the ONLY exact one. `edgepoc.models.general.model.embedding(model, inst)` (the torch
model's exact path, used by `solve --method student|teacher` when a checkpoint has no `.npz` beside it)
converts the torch model's weights and calls this same code, so a torch-loaded and a NumPy-loaded model
give the bit-identical embedding, and so the same allocation, on every node.

Why not torch's float64 forward: its matrix products go through BLAS, whose summation order (blocking,
FMA, vector width) depends on the library and the CPU, and NumPy's `@` is the same story. Here every
dense layer is a fixed-order sum, `b + x_0 w_0 + x_1 w_1 + ...`, each step rounded to float64 by IEEE
rules whatever the machine: compiled by Numba without fast-math (LLVM then neither fuses a multiply into
an add nor reorders a sum), and tested bit for bit against the same sum in elementwise NumPy ufuncs
(`dense_reference`), which neither fuse nor reorder either. It agrees with torch's float64 forward to ~1e-15 relative (tests/models/test_portable.py);
the one-pass decode that follows is float64 Numba (`edgepoc.models.general.decode`).

Weight file: `edgepoc-model-npz/1`, a `.npz` written beside a general checkpoint `X.pt` as `X.npz`
(`save_checkpoint` does it; `python -m edgepoc.models.general.portable X.pt` for an older one). It holds the
config as JSON, every weight array exactly as in the `.pt` (float32), and the SHA-256 of the `.pt` it was
exported from: a `.npz` that does not match its `.pt` is not used (`load_portable` says so and the torch
path loads the `.pt`). A `.npz` can also be passed on its own (`--model X.npz`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numba as nb
import numpy as np

from edgepoc.files import atomic_path
from edgepoc.errors import EdgepocError
from edgepoc.game.instance import Instance
from edgepoc.models.general.decode import DEFAULT_HORIZON, N_DYN, Head, time_scale

if TYPE_CHECKING:
    from edgepoc.models.general.model import GeneralAllocationModel

log = logging.getLogger("edgepoc.models")

NPZ_FORMAT = "edgepoc-model-npz/1"
TASK_DIM = 11
PROVIDER_DIM = 6
PAIR_DIM = 5


@dataclass
class GeneralConfig:
    """Shape of a general teacher or student; stored in its checkpoint (`variant: general`)."""

    kind: str = "teacher"
    hidden: int = 64  # task encoder width
    gnn_layers: int = 3  # 0: no message passing (the student)
    edge_window: int = 3
    provider_hidden: int = 32
    pair_hidden: int = 64
    head_hidden: int = 16
    horizon: int = DEFAULT_HORIZON
    variant: str = "general"
    time_scale: str = "mean"  # unit of every time feature (decode.SCALE_RULES); older checkpoints: "mean"
    dyn_input: str = "linear"  # the head's tanh input (decode.DYN_INPUTS); older checkpoints: "linear"
    pilot: str = "greedy"  # the pilot features' base policy (decode.PILOTS); older checkpoints: "greedy"
    gate: bool = False  # the head's gate V (the linear term's weights per pair: c + V E_ik); older checkpoints: none

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneralConfig":
        return cls(**d)


def student_general_config(hidden: int = 12, provider_hidden: int = 8, pair_hidden: int = 16,
                           head_hidden: int = 8) -> GeneralConfig:
    return GeneralConfig(kind="student", hidden=hidden, gnn_layers=0, edge_window=0, provider_hidden=provider_hidden,
                         pair_hidden=pair_hidden, head_hidden=head_hidden)


# ------------------------------------------------------------------------------------------- features


FEATURE_LIMIT = 1e6  # far beyond any feature of a real instance; keeps degenerate ones (all times ~1e-300) finite


def _float32(a: np.ndarray) -> np.ndarray:
    """Features as float32, clipped so that an instance with absurd time ratios gives large, finite inputs
    rather than inf/NaN ones (which would turn every score into NaN)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(np.clip(np.nan_to_num(a, nan=0.0), -FEATURE_LIMIT, FEATURE_LIMIT), dtype=np.float32)


def task_features(inst: Instance, scale_rule: str = "mean") -> np.ndarray:
    """(n, TASK_DIM) float32, unit-free (times / mean processing time), no K or R in the shape."""
    n = inst.n_tasks
    scale = time_scale(inst, scale_rule)
    p = inst.processing / scale
    d = inst.delays / scale
    a = inst.arrival / scale
    prev_gap = np.diff(a, prepend=a[0]) if n else a
    next_gap = np.append(np.diff(a), 0.0) if n else a
    ahead = np.minimum(np.arange(n) + 10, n - 1) if n else np.arange(0)
    span10 = (a[ahead] - a) / np.maximum(ahead - np.arange(n), 1) if n else a
    cols = [np.log1p(p.min(1)), np.log1p(p.mean(1)), np.log1p(p.max(1)), d.min(1), d.mean(1),
            np.log1p(prev_gap), np.log1p(next_gap), np.log1p(span10),
            np.log1p(inst.demand.mean(1)), np.log1p(inst.demand.max(1)), np.arange(n) / max(n - 1, 1)]
    return _float32(np.stack(cols, axis=1))


def provider_features(inst: Instance, scale_rule: str = "mean") -> np.ndarray:
    """(K, PROVIDER_DIM) float32: relative speed, share of the market's rate, delay, capacity shape, 1/K."""
    scale = time_scale(inst, scale_rule)
    k = inst.n_providers
    rate = scale / np.maximum(inst.processing.mean(0), 1e-12)
    cap = inst.capacity / inst.capacity.mean()
    cols = [np.log(rate), rate / rate.sum(), inst.provider_delay / scale, np.log(cap.mean(1)),
            np.log(cap.max(1) / cap.min(1)), np.full(k, 1.0 / k)]
    return _float32(np.stack(cols, axis=1))


def pair_features(inst: Instance, scale_rule: str = "mean") -> np.ndarray:
    """(n, K, PAIR_DIM) float32: p_ik and delta_ik, each absolute and relative to the task's best provider."""
    scale = time_scale(inst, scale_rule)
    p = inst.processing / scale
    d = inst.delays / scale
    rank = p.argsort(1).argsort(1) / max(inst.n_providers - 1, 1)
    cols = [np.log1p(p), np.log(p / np.maximum(p.min(1, keepdims=True), 1e-12)), d, d - d.min(1, keepdims=True), rank]
    return _float32(np.stack(cols, axis=2))


# ------------------------------------------------------------------------------------- forward pass


@nb.njit(cache=True, nogil=True)
def _dense_rows(x, wt, b, out):
    """out[r] = b + x[r, 0] wt[0] + x[r, 1] wt[1] + ...: each product rounded, then added, in input order
    (no fast-math: LLVM neither fuses nor reorders, so every CPU gives the same bits; the loop over outputs
    is the vectorised one, each output's own sum keeps its order)."""
    for r in range(x.shape[0]):
        for o in range(wt.shape[1]):
            out[r, o] = b[o]
        for j in range(wt.shape[0]):
            xv = x[r, j]
            for o in range(wt.shape[1]):
                out[r, o] += xv * wt[j, o]


def dense(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """`x @ w.T + b` in float64 with a fixed summation order: `b + x[..., 0] w[:, 0] + x[..., 1] w[:, 1] + ...`
    (compiled; `dense_reference` is the same sum in elementwise NumPy, bit for bit)."""
    rows = np.ascontiguousarray(x, dtype=np.float64).reshape(-1, x.shape[-1])
    out = np.empty((rows.shape[0], w.shape[0]))
    _dense_rows(rows, np.ascontiguousarray(w.T, dtype=np.float64),
                np.zeros(w.shape[0]) if b is None else np.ascontiguousarray(b, dtype=np.float64), out)
    return out.reshape(x.shape[:-1] + (w.shape[0],))


def dense_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """`dense` written with elementwise NumPy ufuncs (which neither fuse nor reorder): the specification the
    compiled one is tested against."""
    out = np.zeros(x.shape[:-1] + (w.shape[0],)) if b is None else np.broadcast_to(b, x.shape[:-1] + b.shape).copy()
    for j in range(w.shape[1]):
        out += x[..., j, None] * w[:, j]
    return out


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def window_sum(h: np.ndarray, window: int) -> np.ndarray:
    """Row i: the sum of rows i-window..i+window except i itself (PyG `GraphConv`'s "add" aggregation
    over `features.window_edges`), added in a fixed order: offset 1 left, 1 right, 2 left, 2 right, ..."""
    out = np.zeros_like(h)
    n = h.shape[0]
    for off in range(1, min(window, n - 1) + 1):
        out[off:] += h[:-off]
        out[:-off] += h[off:]
    return out


def expected_shapes(c: GeneralConfig) -> dict[str, tuple[int, ...]]:
    """Every weight a general model of config `c` has, by its torch `state_dict` name."""
    s: dict[str, tuple[int, ...]] = {}
    if c.gnn_layers > 0:
        dims = [TASK_DIM] + [c.hidden] * c.gnn_layers
        for layer in range(c.gnn_layers):
            s[f"tasks.gnn.convs.{layer}.lin_rel.weight"] = (dims[layer + 1], dims[layer])
            s[f"tasks.gnn.convs.{layer}.lin_rel.bias"] = (dims[layer + 1],)
            s[f"tasks.gnn.convs.{layer}.lin_root.weight"] = (dims[layer + 1], dims[layer])
        s["tasks.gnn.fc.weight"] = (c.hidden, c.hidden)
        s["tasks.gnn.fc.bias"] = (c.hidden,)
    else:
        s["tasks.mlp.0.weight"] = (c.hidden, TASK_DIM)
        s["tasks.mlp.0.bias"] = (c.hidden,)
        s["tasks.mlp.2.weight"] = (c.hidden, c.hidden)
        s["tasks.mlp.2.bias"] = (c.hidden,)
    s["providers.phi.0.weight"] = (c.provider_hidden, PROVIDER_DIM)
    s["providers.phi.0.bias"] = (c.provider_hidden,)
    s["providers.rho.0.weight"] = (c.provider_hidden, 2 * c.provider_hidden)
    s["providers.rho.0.bias"] = (c.provider_hidden,)
    s["pair_task.weight"] = (c.pair_hidden, c.hidden)
    s["pair_task.bias"] = (c.pair_hidden,)
    s["pair_provider.weight"] = (c.pair_hidden, c.provider_hidden)
    s["pair_static.weight"] = (c.pair_hidden, PAIR_DIM)
    s["pair_out.weight"] = (c.head_hidden, c.pair_hidden)
    s["pair_out.bias"] = (c.head_hidden,)
    s["head_a"] = (c.head_hidden, N_DYN)
    s["head_b"] = (c.head_hidden,)
    s["head_w"] = (c.head_hidden,)
    s["head_c"] = (N_DYN,)
    s["head_gain"] = ()
    if c.gate:
        s["head_v"] = (N_DYN, c.head_hidden)
    return s


class PortableModel:
    """A general model's weights as float64 arrays and its exact forward pass: `embed(inst)`, `head()`."""

    def __init__(self, config: GeneralConfig, state: dict[str, np.ndarray], source: str = "weights"):
        want = expected_shapes(config)
        missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
        bad = [k for k in want if k in state and tuple(np.shape(state[k])) != want[k]]
        if missing or extra or bad:
            first = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}" if extra
                     else f"{bad[0]} has shape {tuple(np.shape(state[bad[0]]))}, expected {want[bad[0]]}")
            raise EdgepocError(f"model: weights in {source} do not match its config ({first})")
        self.config = config
        self.weights = {k: np.asarray(state[k], dtype=np.float64) for k in want}
        bad = [k for k, v in self.weights.items() if not np.isfinite(v).all()]
        if bad:  # NaN scores would decode as "every task on provider 0" without a word
            raise EdgepocError(f"model: weights in {source} are not finite ({bad[0]})")

    def _tasks(self, x: np.ndarray) -> np.ndarray:
        w, c = self.weights, self.config
        if c.gnn_layers == 0:
            h = relu(dense(x, w["tasks.mlp.0.weight"], w["tasks.mlp.0.bias"]))
            return relu(dense(h, w["tasks.mlp.2.weight"], w["tasks.mlp.2.bias"]))
        h = x
        for layer in range(c.gnn_layers):
            p = f"tasks.gnn.convs.{layer}."
            z = dense(window_sum(h, c.edge_window), w[p + "lin_rel.weight"], w[p + "lin_rel.bias"])
            z += dense(h, w[p + "lin_root.weight"])
            h = relu(z)
        return relu(dense(h, w["tasks.gnn.fc.weight"], w["tasks.gnn.fc.bias"]))

    def _providers(self, providers: np.ndarray) -> np.ndarray:
        w = self.weights
        h = relu(dense(providers, w["providers.phi.0.weight"], w["providers.phi.0.bias"]))
        total = np.zeros(h.shape[1])
        for row in h:  # the market's mean, rows added in provider order
            total += row
        market = np.broadcast_to(total / h.shape[0], h.shape)
        return relu(dense(np.concatenate([h, market], axis=1), w["providers.rho.0.weight"], w["providers.rho.0.bias"]))

    def embed_inputs(self, tasks: np.ndarray, providers: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """E (n, K, head_hidden) float64 from the three feature arrays (any float dtype)."""
        w = self.weights
        h = self._tasks(np.asarray(tasks, dtype=np.float64))  # (n, hidden)
        g = self._providers(np.asarray(providers, dtype=np.float64))  # (K, provider_hidden)
        z = dense(np.asarray(pairs, dtype=np.float64), w["pair_static.weight"])  # (n, K, pair_hidden)
        z += dense(h, w["pair_task.weight"], w["pair_task.bias"])[:, None, :]
        z += dense(g, w["pair_provider.weight"])[None, :, :]
        return dense(relu(z), w["pair_out.weight"], w["pair_out.bias"])

    def embed(self, inst: Instance) -> np.ndarray:
        """The static pair embedding E (n, K, head_hidden), float64, bit-identical on every machine."""
        r = self.config.time_scale
        return self.embed_inputs(task_features(inst, r), provider_features(inst, r), pair_features(inst, r))

    def head(self) -> Head:
        w = self.weights
        return Head(w["head_a"].copy(), w["head_b"].copy(), w["head_w"].copy(), w["head_c"].copy(),
                    float(w["head_gain"]), self.config.horizon, self.config.time_scale,
                    self.config.dyn_input, self.config.pilot, w["head_v"].copy() if self.config.gate else None)


def as_portable(model: PortableModel | GeneralAllocationModel) -> PortableModel:
    """A `PortableModel` as it is, or a torch `GeneralAllocationModel` converted (its weights as they are now)."""
    if isinstance(model, PortableModel):
        return model
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    return PortableModel(model.config, state, source="the model")


# -------------------------------------------------------------------------------------- weight file


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def write_npz(path: str | Path, config: dict, state: dict[str, np.ndarray], source_sha256: str = "") -> Path:
    """Write an `edgepoc-model-npz/1` file atomically; the same weights give the same bytes (fixed zip dates)."""
    path = Path(path)
    entries = {"format": np.array(NPZ_FORMAT), "config": np.array(json.dumps(config, sort_keys=True)),
               "source_sha256": np.array(source_sha256)}
    entries.update({f"w/{k}": np.asarray(v) for k, v in sorted(state.items())})
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
        for name, arr in entries.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, _npy(arr))
    return path


def read_npz(path: str | Path) -> tuple[dict, dict[str, np.ndarray], str]:
    """`(config dict, weights as stored, sha256 of the .pt it was exported from)`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            fmt = str(z["format"]) if "format" in z.files else None
            if fmt != NPZ_FORMAT:
                raise EdgepocError(f"model: {str(path)!r} is not an {NPZ_FORMAT} file")
            config = json.loads(str(z["config"]))
            state = {k[2:]: z[k] for k in z.files if k.startswith("w/")}
            sha = str(z["source_sha256"]) if "source_sha256" in z.files else ""
    except EdgepocError:
        raise
    except Exception as exc:  # missing, truncated, not a zip, ...
        raise EdgepocError(f"model: {str(path)!r} is not a readable weight file ({type(exc).__name__})") from None
    return config, state, sha


def _bundled_folder() -> Path:
    return Path(str(resources.files("edgepoc.models").joinpath("bundled")))


def npz_beside(pt_path: str | Path) -> Path:
    return Path(pt_path).with_suffix(".npz")


@lru_cache(maxsize=8)
def _load(npz: str, npz_mtime: float, pt: str | None, pt_mtime: float, kind: str) -> PortableModel | None:
    config_d, state, sha = read_npz(npz)
    if pt is not None and sha != file_sha256(pt):
        log.warning("model: %s was not exported from %s (its SHA-256 differs); loading the .pt with PyTorch "
                    "(re-export: python -m edgepoc.models.general.portable %s)", npz, pt, pt)
        return None
    if config_d.get("variant") != "general":
        raise EdgepocError(f"model: {npz!r} does not hold a general model")
    try:
        config = GeneralConfig.from_dict(config_d)
    except TypeError as exc:
        raise EdgepocError(f"model: {npz!r} has an invalid config ({exc})") from None
    if config.kind != kind:
        raise EdgepocError(f"model: {npz!r} holds a {config.kind}, expected a {kind}")
    return PortableModel(config, state, source=repr(npz))


def load_portable(path: str | Path | None, kind: str) -> PortableModel | None:
    """The model of checkpoint `path` (None: the bundled `kind`) without PyTorch, or None when there is no
    matching `.npz` (then the `.pt` needs the torch loader, `edgepoc.models.checkpoint.load_cached`)."""
    if path is None:
        pt = _bundled_folder() / f"{kind}.pt"
        npz = _bundled_folder() / f"{kind}.npz"
    elif Path(path).suffix == ".npz":
        pt, npz = None, Path(path)
        if not npz.is_file():
            raise EdgepocError(f"model: weight file {str(npz)!r} does not exist")
    else:
        pt, npz = Path(path), npz_beside(path)
    if not npz.is_file():
        return None
    pt = pt if pt is not None and pt.is_file() else None
    return _load(str(npz.resolve()), npz.stat().st_mtime, str(pt.resolve()) if pt else None,
                 pt.stat().st_mtime if pt else 0.0, kind)


def export_npz(pt_path: str | Path, npz_path: str | Path | None = None) -> Path:
    """Write the `.npz` of general checkpoint `pt_path` (default: beside it). Needs PyTorch (to read the `.pt`)."""
    from edgepoc.models.checkpoint import read_checkpoint

    doc = read_checkpoint(pt_path)
    if doc.get("config", {}).get("variant") != "general":
        raise EdgepocError(f"model: {str(pt_path)!r} is a paper-variant checkpoint; only general models run without PyTorch")
    state = {k: v.detach().cpu().numpy() for k, v in doc["state_dict"].items()}
    PortableModel(GeneralConfig.from_dict(doc["config"]), state, source=repr(str(pt_path)))  # checks the shapes
    return write_npz(npz_path or npz_beside(pt_path), doc["config"], state, file_sha256(pt_path))


if __name__ == "__main__":  # python -m edgepoc.models.general.portable CKPT.pt [...]: export the .npz beside each
    import sys

    for arg in sys.argv[1:]:
        print(f"wrote {export_npz(arg)}")

"""Checkpoints: weights + the config that built them (+ training state for resuming).

Format `edgepoc-model/1`, a `torch.save` dict loaded with `weights_only=True` (no pickled code).
Anything wrong with a file (missing, truncated, another format, weights that do not fit the
config) is one `EdgepocError` line naming the file.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edgepoc.files import atomic_path
from edgepoc.errors import EdgepocError
from edgepoc.models.paper.allocation import ModelConfig, ResourceAllocationModel
from edgepoc.models.paper.student import StudentModel

if TYPE_CHECKING:
    from edgepoc.models.general.portable import GeneralConfig

FORMAT = "edgepoc-model/1"
BUNDLED = {"teacher": "teacher.pt", "student": "student.pt"}


def build_model(config: ModelConfig | GeneralConfig) -> nn.Module:
    """Instantiate the class a config describes (the general variant, or the paper's fixed-K one)."""
    from edgepoc.models.general.model import GeneralAllocationModel, GeneralConfig

    if isinstance(config, GeneralConfig):
        if config.kind not in ("teacher", "student"):
            raise EdgepocError(f"model: unknown kind {config.kind!r} (expected teacher or student)")
        return GeneralAllocationModel(config)
    if config.kind == "teacher":
        return ResourceAllocationModel(config)
    if config.kind == "student":
        return StudentModel(config)
    raise EdgepocError(f"model: unknown kind {config.kind!r} (expected teacher or student)")


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any] | None = None,
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a checkpoint. A general model also
    gets its torch-free weight file beside it (`X.npz`, `edgepoc.models.general.portable`), which edge nodes load."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "config": model.config.to_dict(),
           "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
           "meta": meta or {}}
    if train_state is not None:
        doc["train_state"] = train_state
    with atomic_path(path) as tmp:
        torch.save(doc, tmp)
    if is_general(model):
        from edgepoc.models.general.portable import export_npz

        export_npz(path)
    return path


def _not_a_file(path: Path) -> str:
    """Why `path` is not a checkpoint file, in words."""
    return "is a folder, expected a checkpoint file" if path.is_dir() else "does not exist"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, validated as far as its format."""
    path = Path(path)
    if not path.is_file():
        raise EdgepocError(f"model: checkpoint {str(path)!r} {_not_a_file(path)}")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a zip, pickled code, ...
        raise EdgepocError(f"model: {str(path)!r} is not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise EdgepocError(f"model: {str(path)!r} is not an {FORMAT} checkpoint")
    return doc


def config_from_dict(d: dict) -> ModelConfig | GeneralConfig:
    """A checkpoint's config: `variant: general` (the size-free model) or the paper's fixed-K `ModelConfig`."""
    from edgepoc.models.general.model import GeneralConfig

    if d.get("variant") == "general":
        return GeneralConfig.from_dict(d)
    return ModelConfig.from_dict(d)


def is_general(model: nn.Module) -> bool:
    return getattr(model.config, "variant", "paper") == "general"


def load_model(path: str | Path, expect_kind: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """`(model in eval mode, checkpoint dict)`; a student loads without its teacher."""
    doc = read_checkpoint(path)
    try:
        config = config_from_dict(doc["config"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise EdgepocError(f"model: {str(path)!r} has an invalid config ({exc})") from None
    if expect_kind and config.kind != expect_kind:
        raise EdgepocError(f"model: {str(path)!r} holds a {config.kind}, expected a {expect_kind}")
    model = build_model(config)
    try:
        model.load_state_dict(doc["state_dict"])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()
        raise EdgepocError(
            f"model: weights in {str(path)!r} do not match its config ({first[0] if first else exc})") from None
    model.eval()
    return model, doc


def bundled_path(kind: str) -> Path:
    """Where the checkpoint shipped in the package lives: ONE general teacher and ONE general student
    (`teacher.pt`, `student.pt`) that serve every provider and resource count."""
    folder = resources.files("edgepoc.models").joinpath("bundled")
    return Path(str(folder.joinpath(BUNDLED[kind])))


@lru_cache(maxsize=8)
def _cached(path: str, mtime: float, expect_kind: str | None):
    return load_model(path, expect_kind)


def load_cached(path: str | Path | None, kind: str) -> tuple[nn.Module, dict[str, Any]]:
    """Load once per process (solvers are called per block); `None` means the bundled model."""
    p = Path(path) if path else bundled_path(kind)
    if not p.is_file():
        if path is None:
            maker = "edgepoc distill" if kind == "student" else "edgepoc train-general"
            raise EdgepocError(f"model: no bundled {kind} in this install; make one with `{maker}` and pass --model CKPT")
        raise EdgepocError(f"model: checkpoint {str(p)!r} {_not_a_file(p)}")
    return _cached(str(p.resolve()), p.stat().st_mtime, kind)

"""The builds a node runs, and the check that they are the ones its genesis names.

ProcessProposal re-executes the proposer's allocation and compares results bit for bit, so every node must
run the same edgepoc, CometBFT, wasmtime (the tasks' execution), NumPy (the allocation's floats) and Python.
`edgepoc network genesis` pins the coordinator's builds in genesis (`builds`); `edgepoc node` refuses to
start when its own differ, naming the component. A genesis without `builds` checks nothing.

Only the standard library is imported here: the check runs before the node loads the application.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path

from edgepoc.errors import EdgepocError

# What `network genesis` pins by default; any other installed distribution (e.g. "torch") may be named too.
COMPONENTS = ("edgepoc", "cometbft", "wasmtime", "numpy", "python")


@functools.lru_cache(maxsize=64)
def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


@functools.lru_cache(maxsize=4)
def cometbft_version(binary: str | None = None) -> str:
    """`cometbft version` of the binary a node starts ("absent" without one)."""
    if binary is None:
        from edgepoc.chain.abci.node import cometbft_binary

        try:
            binary = cometbft_binary()
        except EdgepocError:
            return "absent"
    try:
        out = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = out.stdout.strip().splitlines()
    return lines[0].strip()[:64] if out.returncode == 0 and lines else "unknown"


def component_version(name: str, cometbft: str | None = None) -> str:
    """This machine's version of one component."""
    if name == "python":
        return platform.python_version()
    if name == "cometbft":
        return cometbft_version(cometbft)
    if name == "edgepoc":
        v = _dist_version("edgepoc")
        if v == "absent":
            from edgepoc import __version__

            v = __version__
        return v
    return _dist_version(name)


def local_builds(components: tuple[str, ...] | list[str] = COMPONENTS, cometbft: str | None = None) -> dict[str, str]:
    """component -> version on this machine."""
    return {c: component_version(c, cometbft) for c in components}


def mismatches(required: dict[str, str], cometbft: str | None = None) -> list[str]:
    """One phrase per component whose version here is not the required one, e.g. "numpy 2.1.3 (genesis: 2.0.0)"."""
    out = []
    for name, want in required.items():
        have = component_version(name, cometbft)
        if have != want:
            out.append(f"{name} {have} (genesis: {want})")
    return out


def check_builds(required: dict[str, str], cometbft: str | None = None, who: str = "node") -> None:
    """Raise, in one line naming every mismatched component, unless this machine runs the `required` builds."""
    bad = mismatches(required, cometbft)
    if bad:
        raise EdgepocError(f"{who}: build mismatch: this machine runs {'; '.join(bad)}; every node must run the "
                           "builds genesis names (ProcessProposal's determinism depends on them): install those")


def genesis_builds(home: Path) -> dict[str, str]:
    """The `builds` a node's genesis names ({} when none or unreadable: the node reports that when it loads it)."""
    try:
        doc = json.loads((Path(home) / "cometbft" / "config" / "genesis.json").read_text())
        builds = (doc.get("app_state") or {}).get("builds") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in builds.items()} if isinstance(builds, dict) else {}


def check_node(home: Path, cometbft: str | None = None) -> dict[str, str]:
    """A node's start-up check: its builds against its genesis'. Returns the builds it checked."""
    required = genesis_builds(home)
    try:
        name = json.loads((Path(home) / "app.json").read_text()).get("name") or Path(home).name
    except (OSError, ValueError, AttributeError):
        name = Path(home).name
    check_builds(required, cometbft, who=f"node {name}")
    return required

"""Generate the Python protobuf/gRPC code of CometBFT's ABCI from its own .proto files (install step).

The .proto files come from the Go module cache that building CometBFT filled (`go mod download -json`
names the folders), so the wire code always matches the pinned CometBFT version. Output: the
gitignored package folder `edgepoc/chain/abci/gen/` (`python -m edgepoc.chain.abci.genproto`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

COMETBFT_VERSION = "v1.0.1"
GOGOPROTO_VERSION = "v1.7.0"  # what cometbft v1.0.1's go.mod requires
GEN = Path(__file__).resolve().parent / "gen"
# The ABCI service and every file it imports (transitively).
PROTO_DIRS = ["cometbft/abci/v1", "cometbft/types/v1", "cometbft/crypto/v1", "cometbft/version/v1",
              "cometbft/libs/bits/v1"]


def module_dirs() -> dict[str, Path]:
    """The module-cache folders of CometBFT and gogoproto (downloads them if absent)."""
    mods = [f"github.com/cometbft/cometbft@{COMETBFT_VERSION}", f"github.com/cosmos/gogoproto@{GOGOPROTO_VERSION}"]
    try:
        out = subprocess.run(["go", "mod", "download", "-json", *mods], capture_output=True, text=True, check=True,
                             cwd="/", env=None).stdout
    except FileNotFoundError:
        raise SystemExit("error: go is not installed (needed to fetch CometBFT's .proto files)") from None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"error: go mod download failed: {exc.stderr.strip()[:300]}") from None
    dirs: dict[str, Path] = {}
    dec = json.JSONDecoder()
    i = 0
    while i < len(out):
        if out[i].isspace():
            i += 1
            continue
        doc, i = dec.raw_decode(out, i)
        dirs[doc["Path"]] = Path(doc["Dir"])
    return dirs


def generate(out: Path = GEN) -> Path:
    from grpc_tools import protoc  # installed with the package (grpcio-tools)
    import grpc_tools

    dirs = module_dirs()
    cmt = dirs["github.com/cometbft/cometbft"] / "proto"
    gogo = dirs["github.com/cosmos/gogoproto"]
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    tmp = out.with_name("gen.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = [str(p.relative_to(cmt)) for d in PROTO_DIRS for p in sorted((cmt / d).glob("*.proto"))]
    files.append("gogoproto/gogo.proto")
    args = ["protoc", f"-I{cmt}", f"-I{gogo}", f"-I{well_known}", f"--python_out={tmp}", f"--grpc_python_out={tmp}",
            *files]
    if protoc.main(args) != 0:
        raise SystemExit("error: protoc failed on CometBFT's .proto files")
    for d in {Path(f).parent for f in files} | {Path(f).parent.parent for f in files}:
        while str(d) not in (".", ""):
            (tmp / d / "__init__.py").touch()
            d = d.parent
    (tmp / "VERSION").write_text(f"cometbft {COMETBFT_VERSION}\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


if __name__ == "__main__":
    path = generate()
    print(f"generated CometBFT {COMETBFT_VERSION} ABCI code in {path}", file=sys.stderr)

"""The generated ABCI protobuf/gRPC modules (from CometBFT's own .proto files, `make install`).

protoc names the modules after the .proto paths (`cometbft.abci.v1.types_pb2`), so the generated
folder goes on `sys.path` once, here; everything else imports `pb`, `grpc_pb` and `cmt` from this module.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgepoc.errors import EdgepocError

GEN = Path(__file__).resolve().parent / "gen"
if not (GEN / "cometbft" / "abci" / "v1" / "types_pb2.py").exists():
    raise EdgepocError(f"the generated ABCI code is missing ({GEN}); run `make install`")
if str(GEN) not in sys.path:
    sys.path.insert(0, str(GEN))

from cometbft.abci.v1 import service_pb2_grpc as grpc_pb  # noqa: E402
from cometbft.abci.v1 import types_pb2 as pb  # noqa: E402
from cometbft.crypto.v1 import keys_pb2 as crypto_pb  # noqa: E402

__all__ = ["pb", "grpc_pb", "crypto_pb"]

"""The node's container file pins what the install pins (no container engine runs in this CI to build it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent


def test_the_container_file_pins_the_same_builds_as_the_install():
    text = (ROOT / "deploy" / "container" / "Containerfile").read_text()
    make = (ROOT / "Makefile").read_text()
    comet = re.search(r"COMETBFT_VERSION := (v[0-9.]+)", make).group(1)
    assert f"cometbft/cmd/cometbft@{comet}" in text
    assert "torch==2.13.0" in text and 'ENTRYPOINT ["edgepoc", "node", "--home", "/home/node"]' in text
    assert "genproto" in text, "the ABCI code is generated from the pinned CometBFT's .proto files"
    assert "COPY" in text and "priv_validator_key" not in text, "keys are mounted, never baked in"

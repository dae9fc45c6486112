"""The provider's side of a multi-machine network by the issue's names: `edgepoc provider init` on each
machine, `edgepoc network genesis --providers providers.toml` from public files only."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_provider_init_and_a_genesis_from_a_providers_file(tmp_path):
    for i, cap in enumerate(["1.2,0.8", "0.9,1.1"]):
        r = run_cli("provider", "init", "--out", str(tmp_path / f"p{i}"), "--name", f"edge{i}", "--capacity", cap,
                    "--delay", "0.03", "--bind", f"127.0.0.1:{27100 + 10 * i}", "--api-bind",
                    f"127.0.0.1:{27101 + 10 * i}", "--rpc-port", str(27102 + 10 * i), "--abci-port",
                    str(27103 + 10 * i), "--metrics", "off")
        assert r.returncode == 0, r.stderr[-1500:]
        public = json.loads(r.stdout.strip().splitlines()[-1])
        assert public["name"] == f"edge{i}" and "priv" not in json.dumps(public).lower()
    r = run_cli("provider", "init", "--out", str(tmp_path / "arb"), "--arbiter", "--bind", "127.0.0.1:27190")
    assert r.returncode == 0, r.stderr[-1500:]
    (tmp_path / "providers.toml").write_text(
        'provider = ["p0/provider.json", "p1/provider.json"]\narbiter = "arb/arbiter.json"\nchain_id = "edge-net"\n'
        '[params]\nliveness_window = 3\n')
    r = run_cli("network", "genesis", "--providers", str(tmp_path / "providers.toml"), "--out",
                str(tmp_path / "genesis.json"))
    assert r.returncode == 0, r.stderr[-1500:]
    doc = json.loads((tmp_path / "genesis.json").read_text())
    app = doc["app_state"]
    assert doc["chain_id"] == "edge-net" and [v["name"] for v in app["validators"]] == ["edge0", "edge1"]
    assert app["params"]["liveness_window"] == 3 and app["validators"][0]["capacity"] == [1.2, 0.8]
    (tmp_path / "bad.toml").write_text('provider = "p0.json"\n')
    r = run_cli("network", "genesis", "--providers", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "g2.json"))
    assert r.returncode != 0 and "a list of public files" in r.stderr and "Traceback" not in r.stderr

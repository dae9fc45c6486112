"""The real multi-machine flow (issue 19), as each provider runs it, on loopback in separate folders.

Four providers and the arbiter each make their own keys in their own folder (`network keygen`); a
coordinator builds the genesis from the public files only (`network genesis`, watched by an audit hook: it
opens nothing else); each provider joins with its own keys (`network join`) and starts with `network up`;
tasks commit and `chain verify` passes; no private key is found outside its own key file. A node whose builds
differ from the genesis' refuses to start, naming the component; bad provider files get one-line errors;
`network service` writes a unit systemd accepts. As root, the flow runs once more with each provider in a
network namespace of its own (marked slow).
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgepoc.chain.abci import network
from edgepoc.chain.abci.client import random_batches, submit, wait_committed
from edgepoc.chain.crypto import SigningKey
from edgepoc.chain.httpapi import HttpClient
from edgepoc.errors import EdgepocError
from tests.chain.cometnet import FAST

EDGEPOC = [sys.executable, "-m", "edgepoc"]
K = 4


def edgepoc(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEPOC, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, (r.args, r.stdout[-2000:], r.stderr[-2000:])
    return r


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0, r.stdout
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def keygen(folder: Path, name: str, i: int, ports: dict) -> Path:
    """The last provider binds every interface and advertises 127.0.0.1 (bind and advertise differ)."""
    out = folder / name
    p = ports[name]
    bind = ["--bind", f"127.0.0.1:{p[0]}", "--api-bind", f"127.0.0.1:{p[1]}"] if i < K - 1 else \
        ["--bind", f"0.0.0.0:{p[0]}", "--advertise", f"127.0.0.1:{p[0]}", "--api-bind", f"0.0.0.0:{p[1]}"]
    r = ok(edgepoc("network", "keygen", "--name", name, "--capacity", f"1.{i},0.{8 - i}", "--delay", f"0.0{i + 1}",
                   *bind, "--rpc-port", p[2], "--abci-port", p[3], "--metrics", f"127.0.0.1:{p[4]}", "--out", out))
    assert json.loads(r.stdout) == json.loads((out / "provider.json").read_text())
    return out


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """Keys made in five folders (as on five machines), the public files copied to the coordinator's."""
    root = tmp_path_factory.mktemp("flow")
    names = [f"prov{i}" for i in range(K)]
    ports = {n: [network.free_port() for _ in range(5)] for n in names}
    homes = [keygen(root, n, i, ports) for i, n in enumerate(names)]
    arb = root / "arbiter-machine"
    ok(edgepoc("network", "keygen", "--arbiter", "--bind", f"127.0.0.1:{network.free_port()}", "--out", arb))
    coord = root / "coordinator"
    coord.mkdir()
    public = []
    for h in homes:
        dst = coord / f"{h.name}.json"
        shutil.copy(h / "provider.json", dst)
        public.append(dst)
    shutil.copy(arb / "arbiter.json", coord / "arbiter.json")
    state = {"root": root, "homes": homes, "arbiter": arb, "coord": coord, "public": public, "ports": ports}
    try:
        yield state
    finally:
        for h in [*homes, arb]:
            if (h / "network.json").exists():
                network.down(h)


def _genesis_args(flow, out: Path, *extra: str) -> list[str]:
    args = ["network", "genesis", "--arbiter", flow["coord"] / "arbiter.json", "--chain-id", "flow-test", "--out", out]
    for f in flow["public"]:
        args += ["--provider", f]
    for k, v in FAST.items():
        args += ["-p", f"{k}={v}"]
    return [*args, *extra]


def test_keys_stay_in_their_folder_and_public_files_hold_no_private_material(flow):
    for h in flow["homes"]:
        pub = json.loads((h / "provider.json").read_text())
        assert set(pub) == set(network.PROVIDER_FIELDS)
        text = (h / "provider.json").read_text()
        for f in ("priv_validator_key.json", "node_key.json"):
            key = h / "cometbft" / "config" / f
            assert key.stat().st_mode & 0o777 == 0o600
            assert json.loads(key.read_text())["priv_key"]["value"] not in text
        assert (h.stat().st_mode & 0o777) == 0o700
    arb = flow["arbiter"]
    assert (arb / "arbiter_key.json").stat().st_mode & 0o777 == 0o600
    assert SigningKey.load(arb / "arbiter_key.json").private_hex() not in (arb / "arbiter.json").read_text()
    assert "private" not in (arb / "arbiter.json").read_text()
    # keys are never overwritten
    again = edgepoc("network", "keygen", "--name", "x", "--capacity", "1,1", "--delay", "0.01",
                    "--bind", "127.0.0.1:1", "--out", flow["homes"][0])
    assert "already holds keys" in one_line_error(again)


def test_genesis_from_public_files_only_then_join_up_commit_verify(flow):
    t0 = time.monotonic()
    coord = flow["coord"]
    genesis = coord / "genesis.json"
    # The genesis command under an audit hook: every file it opens is recorded; none may be a provider's folder.
    opened = coord / "opened.txt"
    hook = ("import sys\n"
            f"log = open({str(opened)!r}, 'w')\n"
            "def h(ev, args):\n"
            "    if ev == 'open' and isinstance(args[0], (str, bytes)):\n"
            "        log.write(str(args[0]) + '\\n'); log.flush()\n"
            "sys.addaudithook(h)\n"
            "from edgepoc.cli.main import main\n"
            "sys.argv = ['edgepoc'] + sys.argv[1:]\n"
            "main()\n")
    r = subprocess.run([sys.executable, "-c", hook, *map(str, _genesis_args(flow, genesis))], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    paths = opened.read_text().splitlines()
    for h in [*flow["homes"], flow["arbiter"]]:
        assert not [p for p in paths if str(h) in p], f"genesis opened a file of {h}"
    assert not [p for p in paths if "priv_validator" in p or "node_key" in p or "arbiter_key" in p]
    doc = json.loads(genesis.read_text())
    app = doc["app_state"]
    assert [v["name"] for v in app["validators"]] == [h.name for h in flow["homes"]]
    assert app["validators"][1]["capacity"] == [1.1, 0.7] and app["validators"][1]["delay"] == 0.02
    assert set(app["builds"]) == {"edgepoc", "cometbft", "wasmtime", "numpy", "python"}
    assert app["network"]["arbiter_url"] == json.loads((flow["arbiter"] / "arbiter.json").read_text())["url"]

    # each provider joins with its own keys (the arbiter too), then starts with `network up`
    for h in [*flow["homes"], flow["arbiter"]]:
        ok(edgepoc("network", "join", "--genesis", genesis, "--home", h))
    h0 = flow["homes"][0]
    cfg = (h0 / "cometbft" / "config" / "config.toml").read_text()
    assert network._toml_value(cfg, "", "filter_peers") == "true"
    assert network._toml_value(cfg, "", "proxy_app") == f"127.0.0.1:{flow['ports']['prov0'][3]}"
    assert network._toml_value(cfg, "rpc", "laddr") == f"tcp://127.0.0.1:{flow['ports']['prov0'][2]}"
    assert network._toml_value(cfg, "p2p", "external_address") == f"127.0.0.1:{flow['ports']['prov0'][0]}"
    peers = network._toml_value(cfg, "p2p", "persistent_peers").split(",")
    assert sorted(peers) == sorted(f"{p['node_id']}@{p['p2p']}" for p in app["network"]["providers"][1:])
    assert json.loads((h0 / "app.json").read_text())["allowed_peers"] == [p["node_id"] for p in
                                                                         app["network"]["providers"]]
    assert (h0 / "cometbft" / "config" / "genesis.json").read_bytes() == genesis.read_bytes()
    last = flow["homes"][-1]
    cfg = (last / "cometbft" / "config" / "config.toml").read_text()
    port = flow["ports"][last.name][0]
    assert network._toml_value(cfg, "p2p", "laddr") == f"tcp://0.0.0.0:{port}"
    assert network._toml_value(cfg, "p2p", "external_address") == f"127.0.0.1:{port}"
    assert app["network"]["providers"][-1]["api"] == f"http://127.0.0.1:{flow['ports'][last.name][1]}"

    procs = [subprocess.Popen([*EDGEPOC, "network", "up", "--dir", str(h), "--wait", "90"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for h in [*flow["homes"], flow["arbiter"]]]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    api = HttpClient(f"http://127.0.0.1:{flow['ports']['prov1'][1]}", timeout=10)
    try:
        key = SigningKey.generate()
        ids, rejected = submit(api, random_batches(300, 2, key, "flow-test", 0, seed=3, batch=100))
        assert not rejected and len(ids) == 300
        res = wait_committed(api, ids, 60)
        assert not res.missing, res
        st = api.get("/status")
        assert st["builds"] == app["builds"]
    finally:
        api.close()
    status = ok(edgepoc("network", "status", "--dir", flow["homes"][2], "--json"))
    rows = json.loads(status.stdout)
    assert [r["name"] for r in rows] == [h.name for h in flow["homes"]] and all("height" in r for r in rows)
    v = ok(edgepoc("chain", "verify", "--home", flow["homes"][3]))
    rep = json.loads(v.stdout.strip().splitlines()[-1])
    assert rep["ok"] and rep["tasks"] >= 300, rep
    assert_keys_stayed_home(flow)
    print(f"provider flow: genesis, join x{K}, up, 300 tasks committed, verify in {time.monotonic() - t0:.1f} s")


def assert_keys_stayed_home(flow) -> None:
    """After the whole flow, every private key is in its own key file and nowhere else under the test's root
    (not in the coordinator's folder, another provider's, a genesis, a config, a log or a store)."""
    secrets = {}
    for h in flow["homes"]:
        for f in ("priv_validator_key.json", "node_key.json"):
            path = h / "cometbft" / "config" / f
            secrets[path] = json.loads(path.read_text())["priv_key"]["value"].encode()
    path = flow["arbiter"] / "arbiter_key.json"
    secrets[path] = json.loads(path.read_text())["private_key"].encode()
    for f in flow["root"].rglob("*"):
        if not f.is_file() or f in secrets:
            continue
        data = f.read_bytes()
        for origin, secret in secrets.items():
            assert secret not in data, f"the private key of {origin} is also in {f}"


def test_a_node_on_other_builds_refuses_to_start_naming_the_component(flow, tmp_path):
    """A genesis pinning another NumPy: join warns, `network up` and `edgepoc node` refuse with the reason."""
    genesis = tmp_path / "pinned.json"
    ok(edgepoc(*_genesis_args(flow, genesis, "--build", "numpy=0.0.1")))
    assert json.loads(genesis.read_text())["app_state"]["builds"]["numpy"] == "0.0.1"
    home = tmp_path / "prov0-copy"  # the same keys (a test shortcut), fresh ports so the real node can run
    shutil.copytree(flow["homes"][0] / "cometbft" / "config", home / "cometbft" / "config")
    local = json.loads((flow["homes"][0] / "local.json").read_text())
    local.update(p2p_bind=f"127.0.0.1:{network.free_port()}", api_bind=f"127.0.0.1:{network.free_port()}",
                 rpc_port=network.free_port(), abci_port=network.free_port(), metrics=None)
    (home / "local.json").write_text(json.dumps(local))
    j = ok(edgepoc("network", "join", "--genesis", genesis, "--home", home))
    assert "warning: build mismatch" in j.stderr and "numpy" in j.stderr
    up = edgepoc("network", "up", "--dir", home, "--wait", "60")
    assert up.returncode != 0
    assert "build mismatch" in up.stderr and "numpy" in up.stderr and "(genesis: 0.0.1)" in up.stderr, up.stderr
    assert network.running_pid(home, "prov0") is None
    line = one_line_error(edgepoc("node", "--home", home))
    assert "build mismatch" in line and "numpy" in line and "(genesis: 0.0.1)" in line
    if (flow["homes"][0] / "data" / "app.sqlite").exists():  # a folder with a store joins one chain only
        line = one_line_error(edgepoc("network", "join", "--genesis", genesis, "--home", flow["homes"][0]))
        assert "already runs another genesis" in line


def _bad(tmp_path: Path, good: dict, file: str, **change) -> Path:
    d = {**good, **change}
    for k in [k for k, v in change.items() if v is None]:
        d.pop(k)
    path = tmp_path / f"{file}.json"
    path.write_text(json.dumps(d))
    return path


def test_bad_provider_files_get_one_line_errors(flow, tmp_path):
    good = [json.loads(p.read_text()) for p in flow["public"]]
    arbiter = flow["coord"] / "arbiter.json"

    def genesis(*files, extra=()):
        """What `network genesis` says (in-process: the CLI prints the same message as one line)."""
        kw = {"chain_id": extra[1]} if extra[:1] == ("--chain-id",) else {"params": dict([extra[1].split("=")])} \
            if extra else {}
        with pytest.raises(EdgepocError) as e:
            network.build_genesis(list(files), arbiter, **kw)
        msg = str(e.value)
        assert "\n" not in msg and msg
        return msg
    p = flow["public"]
    # through the CLI: one line on stderr, nothing written
    line = one_line_error(edgepoc("network", "genesis", "--arbiter", arbiter, "--out", tmp_path / "g.json",
                                  "--provider", p[0], "--provider", p[1], "--provider", p[0]))
    assert "duplicate name" in line and not (tmp_path / "g.json").exists()
    cases = [
        ((p[0], p[1], p[0]), (), "duplicate name"),
        ((p[0], _bad(tmp_path, good[1], "samekey", name="other", public_key=good[0]["public_key"],
                     address=good[0]["address"])), (), "duplicate public key"),
        ((p[0], _bad(tmp_path, good[1], "sameport", p2p=good[0]["p2p"])), (), "duplicate host:port"),
        ((p[0], _bad(tmp_path, good[1], "apiport", api="http://" + good[0]["p2p"])), (), "duplicate host:port"),
        ((p[0], _bad(tmp_path, good[1], "negcap", capacity=[1.0, -0.5])), (), "capacity"),
        ((p[0], _bad(tmp_path, good[1], "onecap", capacity=[1.0])), (), "same resources"),
        ((p[0], _bad(tmp_path, good[1], "strcap", capacity="fast")), (), "capacity"),
        ((p[0], _bad(tmp_path, good[1], "delay", delay=-1)), (), "delay"),
        ((p[0], _bad(tmp_path, good[1], "wildcard", p2p="0.0.0.0:26656")), (), "not an address others can reach"),
        ((p[0], _bad(tmp_path, good[1], "noport", p2p="10.0.0.1")), (), "HOST:PORT"),
        ((p[0], _bad(tmp_path, good[1], "addr", address="00" * 20)), (), "does not match its public_key"),
        ((p[0], _bad(tmp_path, good[1], "secret", priv_key="abcd")), (), "private key material"),
        ((p[0], _bad(tmp_path, good[1], "missing", node_id=None)), (), "missing field(s) node_id"),
        ((p[0], _bad(tmp_path, good[1], "extra", color="red")), (), "unknown field(s) color"),
        ((p[0], _bad(tmp_path, good[1], "badname", name="no spaces")), (), "is not a name"),
        ((p[0], tmp_path / "absent.json"), (), "does not exist"),
        ((p[0], arbiter), (), "is an arbiter's file"),
        ((p[0],), ("--chain-id", "x" * 60), "--chain-id"),
        ((p[0],), ("-p", "nonsense=1"), "unknown parameters"),
    ]
    (tmp_path / "notjson.json").write_text("{")
    cases.append(((p[0], tmp_path / "notjson.json"), (), "not a JSON file"))
    for files, extra, want in cases:
        line = genesis(*files, extra=extra)
        assert want in line, (want, line)
    many = [_bad(tmp_path, {**good[0], "name": f"n{i}", "p2p": f"10.0.0.{i}:26656", "api": f"http://10.0.0.{i}:1"},
                 f"many{i}") for i in range(33)]
    assert "at most 32" in genesis(*many)
    # the arbiter's public file must not be a provider's, nor share a key with one
    with pytest.raises(EdgepocError, match="is a provider's file"):
        network.build_genesis([p[0]], p[1])
    with pytest.raises(EdgepocError, match="validator key"):
        network.build_genesis([p[0]], arbiter_key=good[0]["public_key"], arbiter_url="http://10.1.1.1:9")
    with pytest.raises(EdgepocError, match="--arbiter"):
        network.build_genesis([p[0]])
    # keygen checks what it is given, before making any key
    line = one_line_error(edgepoc("network", "keygen", "--name", "a", "--capacity", "1,0", "--delay", "0.1",
                                  "--bind", "127.0.0.1:5", "--out", tmp_path / "k"))
    assert "capacity" in line and not (tmp_path / "k").exists()
    for kw, want in (({"bind": "0.0.0.0:26656"}, "--advertise"), ({"name": "arbiter"}, "not a name"),
                     ({"delay": float("nan")}, "delay"), ({"capacity": "1,inf"}, "capacity"),
                     ({"bind": "127.0.0.1:7", "api_bind": "127.0.0.1:7"}, "both use port 7")):
        args = {"name": "a", "capacity": "1,1", "delay": 0.1, "bind": "127.0.0.1:5", **kw}
        with pytest.raises(EdgepocError, match=want):
            network.keygen(tmp_path / "k", **args)
        assert not (tmp_path / "k").exists()


def test_service_units(flow, tmp_path):
    """`network service` writes a unit systemd accepts (systemd-analyze verify when available, else parsed)."""
    homes = [flow["homes"][0], flow["arbiter"]]
    if not (flow["arbiter"] / "network.json").exists():
        for h in homes:
            ok(edgepoc("network", "join", "--genesis", flow["coord"] / "genesis.json", "--home", h))
    for h, want in zip(homes, ("edgepoc.chain.abci.boot --home", "edgepoc arbiter --home")):
        r = ok(edgepoc("network", "service", "--home", h, "--out", tmp_path))
        unit = next(tmp_path.glob("edgepoc-arbiter.service" if h == flow["arbiter"] else "edgepoc-prov0.service"))
        text = unit.read_text()
        assert unit.name in r.stderr
        cp = configparser.ConfigParser(strict=True, interpolation=None)
        cp.optionxform = str
        cp.read_string(text)
        svc = cp["Service"]
        assert svc["Restart"] == "on-failure" and want in svc["ExecStart"]
        assert svc["KillMode"] == "mixed"  # the stop to the node alone, which stops its children in order
        assert svc["ExecStart"].split()[0] == sys.executable and f"--home {h.resolve()}" in svc["ExecStart"]
        assert cp["Install"]["WantedBy"] == "multi-user.target"
        if shutil.which("systemd-analyze"):
            v = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
            assert v.returncode == 0 and unit.name not in v.stderr, v.stderr


@pytest.mark.slow  # ~30 s more on the shared 2-core machine; `-m "not slow"` leaves it out
def test_the_flow_across_network_namespaces(tmp_path):
    """The same flow with each provider on a "machine" of its own (a network namespace with its own IP, as in
    tests/chain/netns.py, no link delay): keygen, join and up run inside each provider's namespace on the
    default ports (the same on every machine), p2p bound to 0.0.0.0 and advertised as the namespace's IP; the
    arbiter runs on the first provider's machine; the genesis and the client run outside. Skipped without
    root or `ip netns`."""
    from tests.chain.netns import NetnsLab, unavailable

    why = unavailable()
    if why:
        pytest.skip(f"network namespaces: {why}")
    lab = NetnsLab(K, 0)
    homes = [tmp_path / f"machine{i}" / "edgepoc" for i in range(K)]
    arb = tmp_path / "machine0" / "arbiter"
    coord = tmp_path / "coordinator"
    coord.mkdir()
    try:
        lab.create()

        def run(i: int, *args) -> subprocess.CompletedProcess:
            return ok(lab.exec(i, [*EDGEPOC, *map(str, args)], timeout=120))
        for i, h in enumerate(homes):
            run(i, "network", "keygen", "--name", f"m{i}", "--capacity", f"1.{i},0.9", "--delay", "0.02",
                "--advertise", f"{lab.ips[i]}:26656", "--out", h)
            shutil.copy(h / "provider.json", coord / f"m{i}.json")
        run(0, "network", "keygen", "--arbiter", "--advertise", f"{lab.ips[0]}:26661", "--out", arb)
        shutil.copy(arb / "arbiter.json", coord / "arbiter.json")
        args = ["network", "genesis", "--arbiter", coord / "arbiter.json", "--chain-id", "netns-flow",
                "--out", coord / "genesis.json"]
        for i in range(K):
            args += ["--provider", coord / f"m{i}.json"]
        for k, v in FAST.items():
            args += ["-p", f"{k}={v}"]
        ok(edgepoc(*args))
        for i, h in enumerate(homes):
            run(i, "network", "join", "--genesis", coord / "genesis.json", "--home", h)
        run(0, "network", "join", "--genesis", coord / "genesis.json", "--home", arb)
        cfg = (homes[1] / "cometbft" / "config" / "config.toml").read_text()
        assert network._toml_value(cfg, "p2p", "laddr") == "tcp://0.0.0.0:26656"
        assert network._toml_value(cfg, "p2p", "external_address") == f"{lab.ips[1]}:26656"
        ups = [lab.spawn(i, [*EDGEPOC, "network", "up", "--dir", str(h), "--wait", "90"]) for i, h in enumerate(homes)]
        ups.append(lab.spawn(0, [*EDGEPOC, "network", "up", "--dir", str(arb), "--wait", "90"]))
        for p in ups:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0, out
        api = HttpClient(f"http://{lab.ips[2]}:26659", timeout=10)  # from outside, like a client
        try:
            ids, rejected = submit(api, random_batches(200, 2, SigningKey.generate(), "netns-flow", 0, seed=5))
            assert not rejected
            res = wait_committed(api, ids, 60)
            assert not res.missing, res
            deadline = time.monotonic() + 30
            while True:  # every node sees every other over its own IP
                vals = api.get("/status")["validators"]
                if all(v["reachable"] for v in vals) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert all(v["reachable"] for v in vals), vals
        finally:
            api.close()
        assert_keys_stayed_home({"homes": homes, "arbiter": arb, "root": tmp_path})
    finally:
        for h in [*homes, arb]:
            if (h / "network.json").exists():
                network.down(h)
        lab.destroy()

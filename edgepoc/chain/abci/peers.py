"""Which peers a node keeps: CometBFT's `filter_peers`, answered by the application.

With `filter_peers = true` (what `network init` writes), CometBFT asks the application over ABCI Query
before it keeps a connection: `/p2p/filter/addr/<ip:port>` for an inbound connection, `/p2p/filter/id/<id>`
for every peer, inbound or outbound; code 0 keeps it, anything else drops it. The answer comes from the
node's own files, read again when they change:

- ids: `allowed_peers` in the node's app.json (`network init` writes the node ids of every genesis
  validator's node; add a full node's id there on every validator to let it in), or, without that list,
  the ids in config.toml's `persistent_peers` and `unconditional_peer_ids`;
- addresses: the IPs of those peers (config.toml's `persistent_peers`) and `allowed_hosts` in app.json;
  when a peer is named by a DNS name rather than an IP, addresses are not filtered (the id check still is).
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
from pathlib import Path

_cache: dict[str, tuple[tuple, tuple[frozenset[str], frozenset[str] | None]]] = {}
_lock = threading.Lock()


def _stamp(*paths: Path) -> tuple:
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _toml_list(text: str, key: str) -> list[str]:
    m = re.search(rf'^{re.escape(key)}\s*=\s*"([^"]*)"', text, re.M)
    return [x.strip() for x in m.group(1).split(",") if x.strip()] if m else []


def allowlist(home: Path) -> tuple[frozenset[str], frozenset[str] | None]:
    """(allowed node ids, allowed IPs or None when addresses are not filtered) of the node at `home`."""
    home = Path(home)
    app_json, toml = home / "app.json", home / "cometbft" / "config" / "config.toml"
    stamp = _stamp(app_json, toml)
    with _lock:
        hit = _cache.get(str(home))
        if hit is not None and hit[0] == stamp:
            return hit[1]
    try:
        cfg = json.loads(app_json.read_text())
    except (OSError, ValueError):
        cfg = {}
    try:
        text = toml.read_text()
    except OSError:
        text = ""
    peers = _toml_list(text, "persistent_peers")
    ids = {str(x).lower() for x in cfg.get("allowed_peers") or []}
    if not ids:
        ids = {p.split("@", 1)[0].lower() for p in peers if "@" in p} | {
            x.lower() for x in _toml_list(text, "unconditional_peer_ids")}
    hosts: set[str] | None = {str(h) for h in cfg.get("allowed_hosts") or []}
    for p in peers:
        host = p.split("@", 1)[-1].rsplit(":", 1)[0].strip("[]")
        try:
            hosts.add(str(ipaddress.ip_address(host)))
        except ValueError:
            hosts = None  # a peer named by DNS: its connections' IPs are not known here
            break
    result = (frozenset(ids), frozenset(hosts) if hosts else None)
    with _lock:
        _cache[str(home)] = (stamp, result)
    return result


def peer_filter(home: Path, path: str) -> tuple[int, str]:
    """The answer to CometBFT's `/p2p/filter/...` query: (0, "") to keep the peer, (1, why) to drop it."""
    ids, hosts = allowlist(home)
    path = path.strip("/")
    if path.startswith("p2p/filter/id/"):
        node_id = path[len("p2p/filter/id/"):].lower()
        if node_id in ids:
            return 0, ""
        return 1, f"peer {node_id[:12]} is not one of this network's nodes (allowed_peers)"
    if path.startswith("p2p/filter/addr/"):
        host = path[len("p2p/filter/addr/"):].rsplit(":", 1)[0].strip("[]")
        if hosts is None:
            return 0, ""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return 1, f"peer address {host!r} is not an IP"
        if str(ip) in hosts or (ip.version == 6 and ip.ipv4_mapped is not None and str(ip.ipv4_mapped) in hosts):
            return 0, ""
        return 1, f"peer address {host} is not one of this network's hosts"
    return 1, f"unknown filter query {path!r}"

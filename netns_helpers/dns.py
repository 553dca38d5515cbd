"""A tiny DNS responder for one bridge network (aardvark-dns's role): A records for the running
containers of the network (name, short id, --network-alias), everything else forwarded to the
host's resolvers.

It runs as `podpy.pyz __netns '{"op": "dns-serve", ...}'`, detached, on the network's gateway
address, port 53 (IP_FREEBIND: it may start before the bridge has that address). Names come
from the state DB, read-only, at most every 50 ms, so a container is resolvable as soon as it
runs and not after it stopped. Stdlib only; no asyncio: one thread per forwarded query.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import struct
import threading
import time
from typing import Dict, List, Mapping, Optional, Tuple

IP_FREEBIND = 15  # linux/in.h; not exported by every Python's socket module
SEARCH_DOMAIN = "dns.podman"
_TYPE_A, _CLASS_IN = 1, 1
# Re-read the DB at most this often: a stopped or disconnected container must vanish at
# once (a stale answer makes clients wait on a dead address), and a read costs ~1 ms.
_REFRESH_SECONDS = 0.05


def parse_question(packet: bytes) -> Optional[Tuple[str, int, int, int]]:
    """(name, qtype, qclass, end offset) of the first question, or None if malformed."""
    if len(packet) < 12 or struct.unpack(">H", packet[4:6])[0] < 1:
        return None
    labels: List[str] = []
    offset = 12
    while offset < len(packet):
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0 or offset + length > len(packet):
            return None  # compression is not used in questions
        labels.append(packet[offset : offset + length].decode("ascii", "replace"))
        offset += length
    if offset + 4 > len(packet):
        return None
    qtype, qclass = struct.unpack(">HH", packet[offset : offset + 4])
    return ".".join(labels).lower(), qtype, qclass, offset + 4


def build_answer(query: bytes, end: int, address: Optional[str], rcode: int = 0) -> bytes:
    """A response to `query` (its first question ends at `end`) with zero or one A record."""
    ident, flags = struct.unpack(">HH", query[:4])
    response_flags = 0x8000 | (flags & 0x0100) | 0x0400 | 0x0080 | rcode  # QR, RD, AA, RA
    answers = 1 if address else 0
    header = struct.pack(">HHHHHH", ident, response_flags, 1, answers, 0, 0)
    body = query[12:end]
    if address:
        body += struct.pack(">HHHIH", 0xC00C, _TYPE_A, _CLASS_IN, 0, 4)
        body += socket.inet_aton(address)
    return header + body


def upstream_servers(resolv_path: str = "/etc/resolv.conf") -> List[str]:
    servers = []
    try:
        with open(resolv_path) as f:
            for line in f:
                fields = line.split()
                if fields[:1] == ["nameserver"] and len(fields) > 1 and ":" not in fields[1]:
                    servers.append(fields[1])
    except OSError:
        pass
    return servers or ["8.8.8.8"]


class Records:
    """Names of the network's running containers, re-read from the state DB when stale."""

    def __init__(self, db_path: str, network_id: str):
        self.db_path = db_path
        self.network_id = network_id
        self.names: Dict[str, str] = {}
        self.loaded = 0.0

    def lookup(self, name: str) -> Optional[str]:
        if time.monotonic() - self.loaded > _REFRESH_SECONDS:
            self._load()
        name = name.rstrip(".")
        if name.endswith("." + SEARCH_DOMAIN):
            name = name[: -len(SEARCH_DOMAIN) - 1]
        return self.names.get(name)

    def _load(self) -> None:
        try:
            conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=2)
            try:
                network = conn.execute(
                    "SELECT config_json FROM networks WHERE id = ?", (self.network_id,)
                ).fetchone()
                rows = conn.execute(
                    "SELECT id, name, config_json, pod_id FROM containers WHERE status = 'running'"
                ).fetchall()
                pods = dict(conn.execute("SELECT id, name FROM pods").fetchall())
            finally:
                conn.close()
        except sqlite3.Error:
            return  # keep the last good answer set
        names: Dict[str, str] = {}
        allocations = json.loads(network[0]).get("allocations", {}) if network else {}
        pod_address: Dict[str, str] = {}
        for cid, name, config_text, pod_id in rows:
            address = allocations.get(cid)
            if not address:
                continue
            spec = json.loads(config_text).get("network") or {}
            aliases = (spec.get("options") or {}).get("aliases") or []
            extra = []
            if pod_id:  # a pod's infra: the pod is reachable by its name too
                pod_address[pod_id] = address
                extra.append(pods.get(pod_id, ""))
            for key in [name, cid[:12], *aliases, *extra]:
                if key:
                    names[str(key).lower()] = address
        for _cid, name, _config_text, pod_id in rows:  # members share their infra's address
            if pod_id in pod_address and name.lower() not in names:
                names[name.lower()] = pod_address[pod_id]
        self.names = names
        self.loaded = time.monotonic()


def _forward(
    server: socket.socket, query: bytes, client: Tuple[str, int], upstreams: List[str]
) -> None:
    for upstream in upstreams:
        host, _, port = upstream.partition(":")  # "IP" or "IP:PORT"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            try:
                sock.sendto(query, (host, int(port or 53)))
                reply, _ = sock.recvfrom(65535)
            except OSError:
                continue
        server.sendto(reply, client)
        return
    parsed = parse_question(query)
    if parsed:
        server.sendto(build_answer(query, parsed[3], None, rcode=2), client)  # SERVFAIL


def serve(request: Mapping[str, object]) -> Dict[str, object]:
    """Helper op `dns-serve`: answer on gateway:53 until SIGTERM. Writes its pid file once the
    socket is bound, so the launcher knows it is ready."""
    if request.get("userns"):  # rootless: answer inside the rootless netns
        from podpy import linux

        linux.setns_path(str(request["userns"]), linux.CLONE_NEWUSER)
        linux.setns_path(str(request["netns"]), linux.CLONE_NEWNET)
    address = str(request["address"])
    records = Records(str(request["db"]), str(request["network_id"]))
    upstreams = [str(u) for u in request.get("upstreams") or []] or upstream_servers()  # type: ignore[union-attr]
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, int(request.get("port") or 53)))
    pid_file = str(request["pid_file"])
    tmp = f"{pid_file}.tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, pid_file)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        try:
            query, client = server.recvfrom(65535)
        except InterruptedError:
            continue
        parsed = parse_question(query)
        if parsed is None:
            continue
        name, qtype, _qclass, end = parsed
        local = records.lookup(name)
        if local is not None or name.endswith(SEARCH_DOMAIN) or "." not in name:
            # Ours (or a bare name nobody else can answer): A gets the address, other
            # types an empty NOERROR; unknown names NXDOMAIN.
            if local is None:
                server.sendto(build_answer(query, end, None, rcode=3), client)
            else:
                server.sendto(build_answer(query, end, local if qtype == _TYPE_A else None), client)
            continue
        threading.Thread(
            target=_forward, args=(server, query, client, upstreams), daemon=True
        ).start()

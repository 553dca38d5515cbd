#!/usr/bin/env python3
"""Published-port benchmark: podpy against podman, same network mode (slirp4netns) on both.

Each side runs one busybox container with two published TCP ports on 127.0.0.1: a sink
(`nc -ll -p 8080 -e sh -c 'dd of=/dev/null bs=1M'`: one forked dd per connection, and the
server closes the connection once dd has read everything) and `httpd` on port 80 serving a
tiny index.html. Measured from the host, in this process:

- throughput: send SIZE (1 GiB) to the sink, half-close, wait for the server's close, so the
  time covers the bytes arriving in the container; medians of paired runs, MiB/s.
- time to first byte: connect + `GET / HTTP/1.0` + first response byte, CONNECTIONS (50)
  fresh connections per side, interleaved across sides; median and p90 in ms.
- UDP: round trip of one datagram from a fresh 127.0.0.1 socket to a published UDP port (an
  echo server: the host's python3 bind-mounted at /host, busybox has none), interleaved with
  the TTFB samples; median, p90 and lost datagrams.

Sides: podpy `--network slirp4netns` (its default port handler: podpy's port forwarder,
netns_helpers/forward.py, splice(2) to the container's address from inside its netns), podman
`--network slirp4netns` (its default port handler, rootlessport: the side to match) and podman
`--network slirp4netns:port_handler=slirp4netns` (slirp4netns's user-mode TCP, which podpy
also offers with that option).
Both pull the test busybox image from a local docker-registry started here. Root, or
rootless via --user.

    python3 build_zipapp.py && python3 bench/network.py [--runs 3] [--user NAME] [--no-podman]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent, HERE.parent / "tests", HERE.parent / "tests" / "integration"):
    sys.path.insert(0, str(_path))

from _common import (  # noqa: E402
    DEFAULT_PYZ,
    SYSTEM_PYTHON,
    Identity,
    Scratch,
    require_pyz,
    stop_pause_process,
)

SINK_PORT = 8080
HTTP_PORT = 80
UDP_PORT = 9999
CHUNK = 1024 * 1024
# busybox has no UDP server: the echo is the host's python3, bind-mounted read-only at /host
UDP_ECHO = (
    "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    f"s.bind(('0.0.0.0', {UDP_PORT}))\nwhile True:\n    d, a = s.recvfrom(2048)\n    s.sendto(d, a)\n"
)
# (through the host's dynamic loader, found under /usr: the busybox image has no /lib)
_LOADER = sorted(glob.glob("/usr/lib/*-linux-gnu/ld-linux*.so*"))[0][len("/usr") :]
HOST_PYTHON = f"/host{_LOADER} --library-path /host{os.path.dirname(_LOADER)} /host/bin/python3 -S"
CONTAINER_SCRIPT = (
    "mkdir -p /www && echo hello > /www/index.html && httpd -p 80 -h /www && "
    f'{{ {HOST_PYTHON} -c "$ECHO" & }} && '
    "exec nc -ll -p 8080 -e sh -c 'exec dd of=/dev/null bs=1M 2>/dev/null'"
)


class Side:
    """One tool + network mode with its own store and container, run as the bench identity."""

    def __init__(
        self, label: str, base: List[str], run_flags: List[str], identity: Identity, env: dict
    ):
        self.label = label
        self.base = base
        self.run_flags = run_flags
        self.identity = identity
        self.env = env
        self.container = ""
        self.sink_port = 0
        self.http_port = 0
        self.throughputs: List[float] = []  # MiB/s
        self.ttfb: List[float] = []  # seconds
        self.udp_port = 0
        self.udp_rtt: List[float] = []  # seconds
        self.error: Optional[str] = None

    def run(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            self.identity.wrap([*self.base, *args]),
            env=self.env,
            cwd=self.identity.home,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            lines = result.stderr.strip().splitlines()
            # podman prints slirp4netns' banner before the real error: show the Error line
            errors = [line for line in lines if line.startswith("Error")]
            detail = (errors or lines or [""])[-1]
            raise RuntimeError(
                f"{self.label}: {' '.join(args[:2])} exited {result.returncode}: {detail[:300]}"
            )
        return result.stdout

    def start(self, image: str) -> None:
        self.sink_port, self.http_port = free_port(), free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        out = self.run(
            "run",
            "-d",
            *self.run_flags,
            "-p",
            f"127.0.0.1:{self.sink_port}:{SINK_PORT}",
            "-p",
            f"127.0.0.1:{self.http_port}:{HTTP_PORT}",
            "-p",
            f"127.0.0.1:{self.udp_port}:{UDP_PORT}/udp",
            "-v",
            "/usr:/host:ro",
            "-e",
            f"ECHO={UDP_ECHO}",
            image,
            "sh",
            "-c",
            CONTAINER_SCRIPT,
        )
        self.container = out.strip().splitlines()[-1]
        wait_http(self.http_port)
        try:
            wait_udp(self.udp_port, 20)
        except RuntimeError as err:  # slirp4netns's own forwarding ignores 127.0.0.1 clients
            print(f"warning: {self.label}: {err}", file=sys.stderr)
            self.udp_port = 0

    def remove(self) -> None:
        self.run("rm", "-af", "-t", "0", check=False)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def udp_rtt_seconds(port: int, timeout: float = 5.0) -> float:
    """One datagram to 127.0.0.1:PORT and its echo back (NaN if it was lost)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        start = time.perf_counter()
        sock.sendto(b"ping", ("127.0.0.1", port))
        try:
            sock.recvfrom(2048)
        except socket.timeout:
            return float("nan")
        return time.perf_counter() - start


def wait_udp(port: int, timeout: float = 30) -> None:
    """Until the echo answers (it may still be starting): one socket, a datagram a second."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        while time.monotonic() < deadline:
            sock.sendto(b"ping", ("127.0.0.1", port))
            try:
                sock.recvfrom(2048)
                return
            except socket.timeout:
                continue
    raise RuntimeError(f"the UDP echo on 127.0.0.1:{port} did not answer")


def first_byte_seconds(port: int) -> float:
    """connect + GET + first byte of the answer; the rest is read so the server is not reset."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        first = sock.recv(1)
        elapsed = time.perf_counter() - start
        if not first:
            raise ConnectionError("connection closed before the first byte")
        while sock.recv(65536):
            pass
    return elapsed


def wait_http(port: int, timeout: float = 30) -> None:
    """Forwarders accept before the container listens: wait for a real HTTP answer."""
    deadline = time.monotonic() + timeout
    last: Exception = TimeoutError("no answer")
    while time.monotonic() < deadline:
        try:
            first_byte_seconds(port)
            return
        except OSError as err:
            last = err
            time.sleep(0.1)
    raise RuntimeError(f"httpd on 127.0.0.1:{port} did not answer: {last}")


def send_seconds(port: int, total: int) -> float:
    """Send `total` bytes, half-close, wait for the server's close (data all consumed)."""
    payload = memoryview(os.urandom(CHUNK))
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sent = 0
        while sent < total:
            sock.sendall(payload[: min(CHUNK, total - sent)])
            sent += min(CHUNK, total - sent)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    return time.perf_counter() - start


def percentile(values: List[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pyz", default=str(DEFAULT_PYZ), help="the zipapp (default dist/)")
    parser.add_argument("--python", default=SYSTEM_PYTHON, help="interpreter for the zipapp")
    parser.add_argument("--runs", type=int, default=3, help="paired transfers per side")
    parser.add_argument("--size-mib", type=int, default=1024, help="bytes per transfer (MiB)")
    parser.add_argument("--connections", type=int, default=50, help="TTFB samples per side")
    parser.add_argument("--user", help="run everything as this non-root user (setpriv)")
    parser.add_argument("--no-podman", action="store_true", help="measure podpy alone")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)

    pyz = require_pyz(parser, args.pyz, "it starts a registry and switches to the --user")
    podman = None if args.no_podman else shutil.which("podman")

    import images
    from registry import push_oci_layout, start_registry

    identity = Identity.named(args.user)
    scratch = Scratch(identity)
    registry = None
    runtime_dir = ""
    sides: List[Side] = []
    total = args.size_mib * 1024 * 1024
    try:
        identity.home = scratch.subdir("home")
        # Short on purpose: podman puts slirp4netns' API socket at
        # $XDG_RUNTIME_DIR/libpod/tmp/<64 hex>.net, and a socket path has < 108 bytes.
        runtime_dir = tempfile.mkdtemp(prefix="pbn", dir="/tmp")
        if identity.user is not None:
            os.chown(runtime_dir, identity.uid, identity.gid)
        env = identity.env(runtime_dir)
        local_pyz = os.path.join(scratch.subdir("bin"), "podpy.pyz")
        shutil.copy2(pyz, local_pyz)
        os.chmod(local_pyz, 0o755)

        layout = images.build_busybox_image(Path(tempfile.mkdtemp(dir=scratch.path)) / "oci")
        registry = start_registry(Path(scratch.subdir("registry")))
        image = push_oci_layout(registry, layout.oci_ref, "busybox:latest")

        def stores(name: str) -> List[str]:
            return [
                "--root",
                scratch.subdir(f"{name}-root"),
                "--runroot",
                scratch.subdir(f"{name}-run", mode=0o700),
            ]

        podpy_base = [args.python, "-I", local_pyz, *stores("podpy")]
        sides.append(
            Side("podpy slirp4netns", podpy_base, ["--network", "slirp4netns"], identity, env)
        )
        if podman:
            podman_base = [podman, "--storage-driver", "overlay", *stores("podman")]
            limits: List[str] = []
            if identity.user is None:
                # Root here lacks CAP_SYS_RESOURCE: podman's default rlimits fail under conmon.
                limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
            for mode, label in (
                ("slirp4netns", "podman slirp4netns (rootlessport)"),
                ("slirp4netns:port_handler=slirp4netns", "podman slirp4netns (slirp ports)"),
            ):
                sides.append(Side(label, podman_base, ["--network", mode, *limits], identity, env))
        for side in sides[:2]:
            side.run("pull", "-q", "--tls-verify=false", image)
        for side in sides:
            for attempt in range(2):  # a start can fail transiently under heavy load
                try:
                    side.start(image)
                    side.error = None
                    break
                except RuntimeError as err:
                    side.error = str(err)
                    print(f"warning (attempt {attempt + 1}): {err}", file=sys.stderr)
        live = [side for side in sides if not side.error]

        for side in live:  # warm-up: first connections pay for slirp's lazy setup
            try:
                send_seconds(side.sink_port, min(total, 64 * CHUNK))
            except OSError as err:  # say which side, with what its container printed
                logs = side.run("logs", "--tail", "5", side.container, check=False).strip()
                side.error = f"sink port {side.sink_port}: {err}; container log: {logs!r}"
                print(f"warning: {side.label}: {side.error}", file=sys.stderr)
        live = [side for side in live if not side.error]
        for round_number in range(args.runs):
            shift = round_number % len(live)
            for side in live[shift:] + live[:shift]:
                seconds = send_seconds(side.sink_port, total)
                side.throughputs.append(total / CHUNK / seconds)
                print(f"  {side.label}: {total / CHUNK / seconds:.0f} MiB/s", file=sys.stderr)
        for index in range(args.connections):
            shift = index % len(live)
            for side in live[shift:] + live[:shift]:
                side.ttfb.append(first_byte_seconds(side.http_port))
                if side.udp_port:
                    side.udp_rtt.append(udp_rtt_seconds(side.udp_port))
    finally:
        for side in sides:
            try:
                side.remove()
            except Exception:
                pass
        if podman and identity.user and runtime_dir:
            stop_pause_process(runtime_dir)
        if registry is not None:
            registry.stop()
        scratch.cleanup()
        if runtime_dir:
            shutil.rmtree(runtime_dir, ignore_errors=True)

    who = f"as {identity.user} (rootless)" if identity.user else "as root"
    print(f"published TCP and UDP ports, host -> container on 127.0.0.1, {who}")
    reference = sides[0]
    header = (
        f"{'side':36s} {'MiB/s':>8s} {'ratio':>6s}   {'TTFB ms':>8s} {'p90':>6s} {'ratio':>6s}"
        f"   {'UDP RTT ms':>10s} {'p90':>6s} {'lost':>4s}"
    )
    print(header)
    print("-" * len(header))
    mine_mbps = statistics.median(reference.throughputs) if reference.throughputs else None
    mine_ttfb = statistics.median(reference.ttfb) if reference.ttfb else None

    def udp_columns(side: Side) -> str:
        answered = [rtt for rtt in side.udp_rtt if rtt == rtt]  # NaN: lost
        if not answered:
            return f"   {'no answer':>10s}"
        return (
            f"   {statistics.median(answered) * 1000:10.2f} "
            f"{percentile(answered, 0.9) * 1000:6.2f} {len(side.udp_rtt) - len(answered):4d}"
        )

    for side in sides:
        if side.error:
            print(f"{side.label:36s} not available: {side.error[:100]}")
            continue
        mbps = statistics.median(side.throughputs)
        ttfb = statistics.median(side.ttfb)
        # ratios are podpy / this side: throughput >= 1.0 and TTFB <= 1.0 are podpy's targets
        rate_ratio = f"{mine_mbps / mbps:.2f}" if mine_mbps and side is not reference else "-"
        ttfb_ratio = f"{mine_ttfb / ttfb:.2f}" if mine_ttfb and side is not reference else "-"
        print(
            f"{side.label:36s} {mbps:8.0f} {rate_ratio:>6s}   {ttfb * 1000:8.2f} "
            f"{percentile(side.ttfb, 0.9) * 1000:6.2f} {ttfb_ratio:>6s}" + udp_columns(side)
        )
    print(
        f"\nthroughput: median of {args.runs} paired transfers of {args.size_mib} MiB; "
        f"TTFB and UDP echo round trip: median/p90 of {args.connections} interleaved samples; "
        "ratio = podpy / that side (target: throughput ratio >= 1.0)"
    )
    if args.json:
        raw = {
            side.label: {
                "throughput_mib_s": side.throughputs,
                "ttfb_s": side.ttfb,
                "udp_rtt_s": [rtt if rtt == rtt else None for rtt in side.udp_rtt],
                "error": side.error,
            }
            for side in sides
        }
        Path(args.json).write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

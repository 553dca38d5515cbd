"""Published ports of containers on user-defined networks: a small TCP relay (docker-proxy's
role) from host ports to the container's address.

Helper op `port-proxy`: the listening sockets are bound in the host's network namespace first;
rootless, the process then joins the rootless netns, where the container addresses live (a
socket keeps the namespace it was made in), and every accepted connection is relayed to
ADDRESS:PORT by two pump threads. It writes one JSON line when it listens (or why it cannot)
and dies with the monitor that started it (PR_SET_PDEATHSIG). TCP only; stdlib only.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from typing import Any, Dict, List, Mapping, Tuple

_CHUNK = 65536


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(_CHUNK)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _relay(client: socket.socket, address: Tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(address, timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _serve(listener: socket.socket, address: Tuple[str, int]) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            continue
        threading.Thread(target=_relay, args=(client, address), daemon=True).start()


def serve(request: Mapping[str, Any]) -> Dict[str, Any]:
    """Bind every {host_ip, host_port, container_port} to relay to request["address"]."""
    from podpy.errors import PodpyError

    listeners: List[Tuple[socket.socket, Tuple[str, int]]] = []
    target = str(request["address"])
    try:
        for port in request["ports"]:
            if port.get("protocol", "tcp") != "tcp":
                raise PodpyError(
                    "publishing UDP ports of containers on user-defined networks is not "
                    "supported yet"
                )
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            host_ip = port.get("host_ip") or "0.0.0.0"
            try:
                sock.bind((host_ip, int(port["host_port"])))
            except OSError as err:
                raise PodpyError(
                    f"listen tcp {host_ip}:{port['host_port']}: bind: "
                    f"{err.strerror.lower() if err.strerror else err}",
                    hint="choose another host port with -p HOSTPORT:CTRPORT",
                ) from err
            sock.listen(128)
            listeners.append((sock, (target, int(port["container_port"]))))
        if request.get("userns_path") and os.geteuid() != 0:
            from podpy.rootless import join_userns_in_place

            join_userns_in_place(str(request["userns_path"]))
        if request.get("netns"):
            from podpy import linux

            linux.setns_path(str(request["netns"]), linux.CLONE_NEWNET)
    except PodpyError as err:
        sys.stdout.write(json.dumps({"error": err.message, "hint": err.hint}) + "\n")
        sys.stdout.flush()
        os._exit(125)
    sys.stdout.write(json.dumps({"listening": len(listeners)}) + "\n")
    sys.stdout.flush()
    threads = [threading.Thread(target=_serve, args=pair, daemon=True) for pair in listeners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {}


class ProxyProcess:
    """The monitor's handle on a running relay."""

    def __init__(self, pid: int):
        self.pid = pid

    def stop(self) -> None:
        import signal

        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (OSError, ChildProcessError):
            pass


def start_proxy(helper: List[str], request: Mapping[str, Any]) -> ProxyProcess:
    """Monitor side: start the relay (tied to this process) and wait until it listens."""
    from netns_helpers.slirp import spawn_tied
    from podpy.errors import PodpyError

    body = dict(request)
    body["op"] = "port-proxy"
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    argv = list(helper) + [json.dumps(body)]
    # The child's stdout/stderr is the pipe: its first line (listening, or why not) reaches us.
    pid = spawn_tied(argv, {}, write_fd)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        line = pipe.readline()
    try:
        reply = json.loads(line) if line else {"error": "the port relay exited"}
    except ValueError:
        reply = {"error": line.decode(errors="replace").strip()}
    process = ProxyProcess(pid)
    if "error" in reply:
        process.stop()
        raise PodpyError(str(reply["error"]), hint=reply.get("hint"))
    return process

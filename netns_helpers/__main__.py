"""Network helper process: `podpy.pyz __netns '<json>'` (or the JSON on stdin) runs one
operation and prints one JSON object; errors are `{"error": ..., "hint": ...}` with exit 125.

Operations:
  probe        -> {"slirp4netns": PATH|null, "pasta": PATH|null}
  check-ports  {"ports": [PortMapping...]} -> {"ports": [...]} with host ports checked/picked
  etc-files    {"network": NetworkSpec, "hostname", "container_name", "container_ips"}
               -> {"hosts", "resolv.conf", "hostname"}
  slirp-forward {"api_socket", "ports": [...], "guest_addr"?} -> {"ids": [...]}
  bridge-attach {"pid", "interfaces": [...], "masquerade", "isolated"} -> {"links": [...]}
  bridge-remove {"bridge", "masquerade", "isolated", "keep_nat"?} -> {"removed": NAME}  (bridge.py)
  bridge-detach {"pid", "address"} -> {"deleted": N}
  dns-serve     {"address", "db", "network_id", "pid_file"} -> runs until SIGTERM (dns.py)
  rootless-netns {"run_dir", "pid_file"} -> runs until SIGTERM (rootless_netns.py)
"""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any, Callable, Dict, List, Mapping

from podpy.engine.network_opts import NetworkSpec, PortMapping
from podpy.errors import PodpyError


def _ports(request: Mapping[str, Any]) -> List[PortMapping]:
    return [PortMapping.from_dict(p) for p in request.get("ports") or []]


def _probe(request: Mapping[str, Any]) -> Dict[str, Any]:
    return {"slirp4netns": shutil.which("slirp4netns"), "pasta": shutil.which("pasta")}


def _check_ports(request: Mapping[str, Any]) -> Dict[str, Any]:
    from netns_helpers.ports import resolve_host_ports

    return {"ports": [vars(m) for m in resolve_host_ports(_ports(request))]}


def _etc_files(request: Mapping[str, Any]) -> Dict[str, Any]:
    from netns_helpers.files import container_etc_files

    return dict(
        container_etc_files(
            NetworkSpec.from_dict(request["network"]),
            hostname=str(request["hostname"]),
            container_name=str(request.get("container_name", "")),
            container_ips=list(request.get("container_ips") or []),
        )
    )


def _slirp_forward(request: Mapping[str, Any]) -> Dict[str, Any]:
    from netns_helpers.slirp import add_port_forward

    guest = str(request.get("guest_addr") or "10.0.2.100")
    ids = [
        add_port_forward(
            str(request["api_socket"]),
            m.protocol,
            m.host_ip,
            m.host_port,
            m.container_port,
            guest_addr=guest,
        )
        for m in _ports(request)
    ]
    return {"ids": ids}


def _bridge_attach(request: Mapping[str, Any]) -> Dict[str, Any]:
    from netns_helpers.bridge import bridge_attach

    return bridge_attach(request)


def _bridge_remove(request: Mapping[str, Any]) -> Dict[str, Any]:
    from netns_helpers.bridge import bridge_remove

    return bridge_remove(request)


def _dns_serve(request: Mapping[str, Any]) -> Dict[str, Any]:
    from netns_helpers.dns import serve

    return serve(request)


def _rootless_netns(request: Mapping[str, Any]) -> Dict[str, Any]:
    from netns_helpers.rootless_netns import serve

    return serve(request)


def _bridge_detach(request: Mapping[str, Any]) -> Dict[str, Any]:
    from netns_helpers.bridge import bridge_detach

    return bridge_detach(request)


def _default_unpublish(request: Mapping[str, Any]) -> Dict[str, Any]:
    from netns_helpers.default_net import unpublish

    unpublish(str(request["container_id"]))
    return {}


OPERATIONS: Dict[str, Callable[[Mapping[str, Any]], Dict[str, Any]]] = {
    "default-unpublish": _default_unpublish,
    "bridge-attach": _bridge_attach,
    "bridge-detach": _bridge_detach,
    "rootless-netns": _rootless_netns,
    "dns-serve": _dns_serve,
    "bridge-remove": _bridge_remove,
    "probe": _probe,
    "check-ports": _check_ports,
    "etc-files": _etc_files,
    "slirp-forward": _slirp_forward,
}


def _emit(obj: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: List[str]) -> int:
    text = argv[0] if argv else sys.stdin.read()
    try:
        request = json.loads(text)
        if not isinstance(request, dict):
            raise ValueError("not an object")
    except ValueError as err:
        _emit({"error": f"invalid netns helper request: {err}", "hint": None})
        return 125
    operation = OPERATIONS.get(str(request.get("op")))
    if operation is None:
        _emit(
            {
                "error": f"unknown netns helper operation {request.get('op')!r}",
                "hint": "one of: " + ", ".join(sorted(OPERATIONS)),
            }
        )
        return 125
    try:
        _emit(operation(request))
    except PodpyError as err:
        _emit({"error": err.message, "hint": err.hint})
        return err.exit_code
    except (KeyError, TypeError, ValueError) as err:
        _emit({"error": f"invalid {request['op']} request: {err!r}", "hint": None})
        return 125
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Pods through the zipapp, as the rootless user and as root: members share localhost, the uts
namespace and the pod's published ports; pod start/stop/rm act on every member; `pod rm -f`
leaves no process, slirp4netns or mount behind; podman's errors for bad input.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
import uuid
from typing import Dict, List, Set

import pytest
from procs import pid_alive


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(parents: Set[int]) -> Set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid in parents:
            found.add(int(entry))
    return found


def _http_get(url: str, attempts: int = 50) -> str:
    last: Exception = RuntimeError("no attempt")
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()
        except OSError as err:
            last = err
            time.sleep(0.1)
    raise AssertionError(f"GET {url} failed: {last}")


def _container_pids(runner, refs: List[str]) -> Dict[str, List[int]]:
    data = json.loads(runner.ok("inspect", "--type", "container", *refs))
    return {c["Name"]: [c["State"]["Pid"], c["State"]["ConmonPid"]] for c in data}


def test_pod_members_share_localhost_hostname_and_ports(as_each, image: str) -> None:
    pod = unique_name("pod")
    port = free_port()
    pod_id = as_each.ok("pod", "create", "--name", pod, "-p", f"{port}:8080").strip()
    assert len(pod_id) == 64
    assert as_each.podpy("pod", "exists", pod).returncode == 0
    web = unique_name("web")
    as_each.ok(
        "run", "-d", "--pod", pod, "--name", web, image, "httpd", "-f", "-p", "8080", "-h", "/etc"
    )
    # Another member reaches the first on localhost, and sees the pod's hostname.
    out = as_each.ok(
        "run", "--rm", "--pod", pod, image, "wget", "-qO-", "http://127.0.0.1:8080/hostname"
    )
    assert out.strip() == pod
    assert as_each.ok("run", "--rm", "--pod", pod, image, "hostname").strip() == pod
    # The pod's published port reaches the member from the host.
    assert _http_get(f"http://127.0.0.1:{port}/hostname").strip() == pod

    listing = json.loads(as_each.ok("pod", "ps", "--format", "json"))
    mine = [p for p in listing if p["Name"] == pod]
    assert len(mine) == 1 and mine[0]["Status"] == "Running"
    assert mine[0]["NumberOfContainers"] == 2  # infra + web (the --rm members are gone)
    info = json.loads(as_each.ok("pod", "inspect", pod))
    assert info["Id"] == pod_id and info["Name"] == pod and info["State"] == "Running"
    assert info["SharedNamespaces"] == ["uts", "ipc", "net"]
    assert info["InfraConfig"]["PortBindings"] == {
        "8080/tcp": [{"HostIp": "", "HostPort": str(port)}]
    }
    names = {c["Name"] for c in info["Containers"]}
    assert web in names and f"{pod_id[:12]}-infra" in names
    assert info["InfraContainerID"] in {c["Id"] for c in info["Containers"]}
    infra = json.loads(as_each.ok("inspect", info["InfraContainerID"]))[0]
    assert infra["IsInfra"] is True and infra["Pod"] == pod_id
    assert "httpd" in as_each.ok("pod", "top", pod)

    # stop acts on every member; start brings them back with the port working again.
    as_each.ok("pod", "stop", "-t", "2", pod)
    states = {c["State"] for c in json.loads(as_each.ok("pod", "inspect", pod))["Containers"]}
    assert states == {"exited"}
    assert json.loads(as_each.ok("pod", "inspect", pod))["State"] == "Exited"
    as_each.ok("pod", "start", pod)
    assert _http_get(f"http://127.0.0.1:{port}/hostname").strip() == pod

    # rm without -f refuses while running; rm -f leaves nothing behind.
    refused = as_each.podpy("pod", "rm", pod)
    assert refused.returncode == 125 and "pod rm -f" in refused.stderr
    pids = _container_pids(as_each, [web, info["InfraContainerID"]])
    watched = {pid for pair in pids.values() for pid in pair if pid}
    monitors = {pair[1] for pair in pids.values() if pair[1]}
    helpers = _children(monitors)  # slirp4netns of the infra's monitor
    assert watched and helpers
    assert as_each.ok("pod", "rm", "-f", pod).strip() == pod_id
    assert as_each.podpy("pod", "exists", pod).returncode == 1
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in watched | helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in watched | helpers if pid_alive(p)]
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    assert pod_id[:12] not in mounts and info["InfraContainerID"] not in mounts
    assert as_each.ok("ps", "-a", "--format", "{{.Names}}").split() == []
    with socket.socket() as s:  # the published port is free again (TIME_WAIT aside)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)


def test_run_pod_new_creates_the_pod_with_the_ports(as_each, image: str) -> None:
    pod = unique_name("pod")
    port = free_port()
    as_each.ok(
        "run",
        "-d",
        "--pod",
        f"new:{pod}",
        "-p",
        f"{port}:8080",
        image,
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/etc",
    )
    info = json.loads(as_each.ok("pod", "inspect", pod))
    assert info["NumContainers"] == 2
    assert info["InfraConfig"]["PortBindings"]["8080/tcp"][0]["HostPort"] == str(port)
    assert _http_get(f"http://127.0.0.1:{port}/hostname").strip() == pod
    as_each.ok("pod", "kill", pod)
    deadline = time.monotonic() + 10
    while json.loads(as_each.ok("pod", "inspect", pod))["State"] != "Exited":
        assert time.monotonic() < deadline, "pod kill did not stop the pod"
        time.sleep(0.1)
    assert as_each.ok("pod", "prune", "-f").split() == [info["Id"]]
    assert as_each.podpy("pod", "exists", pod).returncode == 1


def test_pod_errors_are_podmans(as_each, image: str) -> None:
    pod = unique_name("pod")
    as_each.ok("pod", "create", "--name", pod)
    dup = as_each.podpy("pod", "create", "--name", pod)
    assert dup.returncode == 125
    assert f'Error: adding pod to state: name "{pod}" is in use: pod already exists' in dup.stderr
    ports = as_each.podpy("run", "--rm", "--pod", pod, "-p", "8080:80", image, "true")
    assert ports.returncode == 125
    assert "published or exposed ports must be defined when the pod is created" in ports.stderr
    missing = as_each.podpy("pod", "inspect", "nosuchpod")
    assert missing.returncode == 125
    assert "Error: no pod with name or ID nosuchpod found: no such pod" in missing.stderr
    # podman 4.3: `pod rm` of a missing pod exits 1; --force (like --ignore) ignores it
    gone = as_each.podpy("pod", "rm", "nosuchpod")
    assert gone.returncode == 1 and "no pod with name or ID nosuchpod found" in gone.stderr
    forced = as_each.podpy("pod", "rm", "-f", "nosuchpod")
    assert (forced.returncode, forced.stdout, forced.stderr) == (0, "", "")
    assert as_each.podpy("run", "--rm", "--pod", "nosuchpod", image, "true").returncode == 125
    bad = as_each.podpy("pod", "create", "--name", "bad/name")
    assert bad.returncode == 125 and "invalid" in bad.stderr
    assert as_each.podpy("pod", "create", "--no-infra", "-p", "8080:80").returncode == 125
    # nothing half-made by the failures: just the one pod and its infra container
    listing = json.loads(as_each.ok("pod", "ps", "--format", "json"))
    assert [p["Name"] for p in listing] == [pod]
    assert len(as_each.ok("ps", "-a", "-q").split()) == 1
    assert as_each.ok("pod", "rm", pod).strip() == listing[0]["Id"]


def test_infra_container_goes_only_with_its_pod(as_each, image: str) -> None:
    """podman: `rm` (even -f) of an infra container is refused; `rm -a` takes the pod along
    (it implies --depend); `container prune` leaves infra containers alone."""
    pod = unique_name("pod")
    pod_id = as_each.ok("pod", "create", "--name", pod).strip()
    infra = json.loads(as_each.ok("pod", "inspect", pod))["InfraContainerID"]
    for argv in (["rm", infra], ["rm", "-f", f"{pod_id[:12]}-infra"]):
        refused = as_each.podpy(*argv)
        assert refused.returncode == 125
        assert refused.stderr.startswith(
            f"Error: container {infra} is the infra container of pod {pod_id} and cannot be "
            "removed without removing the pod"
        ), refused.stderr
    as_each.ok("container", "prune", "-f")
    assert as_each.ok("ps", "-a", "-q", "--no-trunc").split() == [infra]
    member = as_each.ok("create", "--pod", pod, image, "true").strip()
    removed = set(as_each.ok("rm", "-a").split())
    assert infra in removed and removed <= {infra, member}  # the member may go with the pod
    assert as_each.ok("ps", "-a", "-q").split() == []
    assert as_each.podpy("pod", "exists", pod).returncode == 1


def test_infra_runs_podpys_static_pause(as_each) -> None:
    """The infra process is /pause, the ~200-byte static ELF podpy assembles (no python, no
    host /usr in the infra), and TERM ends it at once: `pod stop` records exit code 0, not the
    137 of a kill after the timeout."""
    import platform

    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip("the static pause exists for x86_64 and aarch64; python3 pause.py elsewhere")
    pod = unique_name("pod")
    as_each.ok("pod", "create", "--name", pod)
    as_each.ok("pod", "start", pod)
    infra = json.loads(as_each.ok("pod", "inspect", pod))["InfraContainerID"]
    info = json.loads(as_each.ok("inspect", infra))[0]
    pid = info["State"]["Pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read() == b"/pause\0"
    assert os.readlink(f"/proc/{pid}/exe") == "/pause"
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    assert "python" not in maps and "libc" not in maps and "/pause" in maps
    assert info["Mounts"] == [] or all("/usr" not in m.get("Destination", "") for m in info["Mounts"])  # fmt: skip
    as_each.ok("pod", "stop", "-t", "60", pod)
    stopped = json.loads(as_each.ok("inspect", infra))[0]["State"]
    assert stopped["Status"] == "exited" and stopped["ExitCode"] == 0
    assert not pid_alive(pid)
    as_each.ok("pod", "rm", pod)


def test_pod_on_a_user_network_is_resolvable_by_pod_and_member_name(as_each, image: str) -> None:
    network, pod, web = unique_name("net"), unique_name("pod"), unique_name("web")
    as_each.ok("network", "create", network)
    as_each.ok("pod", "create", "--name", pod, "--network", network)
    as_each.ok("run", "-d", "--pod", pod, "--name", web, image, "httpd", "-f", "-p", "80", "-h", "/etc")  # fmt: skip
    script = f"wget -qO- http://{pod}/hostname; wget -qO- http://{web}/hostname"
    out = as_each.ok("run", "--rm", "--network", network, image, "sh", "-c", script)
    assert out.split() == [pod, pod]  # both names lead to the pod's shared network namespace
    assert json.loads(as_each.ok("pod", "inspect", pod))["InfraConfig"]["Networks"] == [network]
    as_each.ok("pod", "rm", "-f", pod)
    as_each.ok("network", "rm", network)


def test_pod_ps_filters_are_podmans(as_each, image: str) -> None:
    """`pod ps --filter`: one key's values OR, different keys AND; id/name are regexps."""
    labelled, plain, empty = unique_name("pa"), unique_name("pz"), unique_name("pn")
    labelled_id = as_each.ok("pod", "create", "--name", labelled, "--label", "k=a").strip()
    as_each.ok("pod", "create", "--name", plain)
    as_each.ok("pod", "create", "--name", empty, "--no-infra")
    member = unique_name("m")
    as_each.ok("create", "--pod", plain, "--name", member, image, "true")

    def names(*filters: str) -> List[str]:
        argv = [a for f in filters for a in ("--filter", f)]
        return sorted(as_each.ok("pod", "ps", "--format", "{{.Name}}", *argv).split())

    assert names("label=k") == [labelled] and names("label=k=b") == []
    assert names(f"name=^{labelled}$", f"name=^{plain}$") == sorted([labelled, plain])
    assert names(f"name={labelled[:4]}", "label=k=a") == [labelled]
    assert names(f"id={labelled_id[3:20]}") == [labelled]  # a regexp, not just a prefix
    assert names("ctr-number=0") == [empty] and names("ctr-number=2") == [plain]
    assert names("ctr-number=x") == []
    assert names(f"ctr-names=^{member}$") == [plain]
    assert names("status=created") == sorted([labelled, plain, empty])
    assert names("ctr-status=running") == []
    for bad, message in (
        ("colour=red", "Error: colour is an invalid filter"),
        ("status=bogus", "Error: bogus is not a valid pod status"),
        ("ctr-status=bogus", "Error: bogus is not a valid status"),
        ("name", "Error: filter input must be in the form of filter=value: name is invalid"),
    ):
        result = as_each.podpy("pod", "ps", "--filter", bad)
        assert result.returncode == 125 and message in result.stderr, (bad, result.stderr)
    # podman's pod prune removes only stopped/exited pods: these Created ones stay
    assert as_each.ok("pod", "prune", "-f").strip() == ""
    as_each.ok("pod", "rm", "-f", labelled, plain, empty)

"""Option and report types shared by the CLI and the engine.

podpy.record classes, not dataclasses, and typing only for type checkers: this module is
on the `podpy run` path, where those imports would cost ~20 ms of start-up.
"""

from __future__ import annotations

from podpy.record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional


@record
class CreateOptions:
    """What `podpy create/run` was asked for; the engine turns it into an OCI bundle."""

    image: str
    command: List[str] = field(default_factory=list)
    name: Optional[str] = None
    entrypoint: Optional[List[str]] = None
    env: List[str] = field(default_factory=list)
    env_files: List[str] = field(default_factory=list)
    workdir: Optional[str] = None
    user: Optional[str] = None
    hostname: Optional[str] = None
    labels: Dict[str, str] = field(default_factory=dict)
    volumes: List[str] = field(default_factory=list)
    mounts: List[str] = field(default_factory=list)
    tmpfs: List[str] = field(default_factory=list)
    tty: bool = False
    interactive: bool = False
    detach: bool = False
    remove: bool = False
    init: bool = False
    read_only: bool = False
    privileged: bool = False
    cap_add: List[str] = field(default_factory=list)
    cap_drop: List[str] = field(default_factory=list)
    security_opt: List[str] = field(default_factory=list)
    stop_signal: Optional[str] = None
    stop_timeout: Optional[int] = None
    log_driver: Optional[str] = None
    log_opts: List[str] = field(default_factory=list)
    cidfile: Optional[str] = None
    replace: bool = False
    pull: str = "missing"
    tls_verify: Optional[bool] = None
    platform: Optional[str] = None
    runtime: Optional[str] = None
    network: Optional[str] = None
    publish: List[str] = field(default_factory=list)
    publish_all: bool = False
    dns: List[str] = field(default_factory=list)
    dns_search: List[str] = field(default_factory=list)
    add_host: List[str] = field(default_factory=list)
    dns_option: List[str] = field(default_factory=list)
    expose: List[str] = field(default_factory=list)
    ip: Optional[str] = None
    mac_address: Optional[str] = None
    network_alias: List[str] = field(default_factory=list)
    memory: Optional[str] = None
    memory_swap: Optional[str] = None
    cpus: Optional[float] = None
    cpu_shares: Optional[int] = None
    pids_limit: Optional[int] = None
    ulimits: List[str] = field(default_factory=list)
    sysctls: List[str] = field(default_factory=list)
    sdnotify: str = "conmon"
    sig_proxy: bool = True
    detach_keys: Optional[str] = None
    pod: Optional[str] = None
    quiet: bool = False


@record
class ItemReport:
    """Outcome for one of several targets (`podpy rm a b c`): printed id or error."""

    raw_input: str
    id: str = ""
    error: Optional[Exception] = None

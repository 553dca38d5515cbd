"""The option tables of the hot container verbs (run, create, start, stop, kill, rm) and of
`podpy oci` (the built-in runtime's runc-compatible CLI, its group options and verbs).

One table per command, read by both sides of the CLI so they can never disagree:
`podpy/cli/container.py` and `podpy/cli/oci.py` build each typer command's signature from
it (through `podpy/cli/_tablecmd.py`), and the typer-free fast path (`podpy/fastpath.py`)
parses argv with `parse()` (`parse_group()` for a group's options before its command). The parser mirrors click's
rules exactly for what it accepts (long `--x=v` and `--x v`, short clusters `-dit`,
`-eK=V`, `--`, last value wins, options stop at the first argument where the command
says so) and returns None for anything else: `--help`, unknown flags, missing values,
bad numbers, missing required arguments. The full typer CLI then answers, with its own
messages. tests/unit/test_cliopts.py checks both parsers agree on many argvs.

Imports nothing: every `podpy run` pays for what this module imports.
"""

from __future__ import annotations

FLAG = "flag"  # bool; `off` names the flags that set it False (--no-sig-proxy)
VALUE = "value"  # one value of `type`; the last occurrence wins
MULTI = "multi"  # repeatable, values collected in a list
ARG = "arg"  # one positional argument
ARGS = "args"  # the remaining positional arguments (None when there are none)


class Opt:
    """One option or positional argument of a command."""

    __slots__ = ("dest", "flags", "kind", "help", "default", "type", "off", "metavar", "required")

    def __init__(
        self,
        dest: str,
        flags: tuple,
        kind: str,
        help: str | None,
        default: object = None,
        type: type = str,
        off: tuple = (),
        metavar: str | None = None,
        required: bool = False,
    ):
        self.dest = dest  # the keyword the command body receives
        self.flags = flags
        self.kind = kind
        self.help = help
        self.default = False if kind == FLAG and default is None else default
        self.type = type
        self.off = off
        self.metavar = metavar
        self.required = required


class Table:
    """A command's positional arguments and options, plus click's interspersed-args rule."""

    def __init__(self, arguments: tuple, options: tuple, interspersed: bool = True):
        self.arguments = arguments
        self.options = options
        self.interspersed = interspersed  # False: options end at the first argument
        self.by_flag: dict = {}
        for opt in options:
            for flag in opt.flags + opt.off:
                self.by_flag[flag] = opt

    def without(self, *dests: str) -> Table:
        return Table(
            self.arguments,
            tuple(o for o in self.options if o.dest not in dests),
            self.interspersed,
        )


def _store(opt: Opt, flag: str, value: str, out: dict) -> bool:
    """Record `value` for `opt`; False when it does not convert (click then reports it)."""
    if opt.kind == MULTI:
        out[opt.dest].append(value)
        return True
    try:
        out[opt.dest] = opt.type(value)
    except ValueError:
        return False
    return True


def parse(table: Table, args: list) -> dict | None:
    """Keyword arguments for the command body, exactly as typer would pass them, or None
    when the invocation is not one this parser is sure about."""
    out: dict = {}
    for opt in table.options:
        out[opt.dest] = [] if opt.kind == MULTI else opt.default
    positional: list = []
    i = 0
    n = len(args)
    while i < n:
        arg = args[i]
        i += 1
        if arg == "--":
            positional.extend(args[i:])
            break
        if arg[:1] != "-" or len(arg) == 1:
            positional.append(arg)
            if not table.interspersed:
                positional.extend(args[i:])
                break
            continue
        if arg[:2] == "--":
            flag, eq, value = arg.partition("=")
            opt = table.by_flag.get(flag)
            if opt is None:
                return None
            if opt.kind == FLAG:
                if eq:
                    return None  # click: "Option '--rm' does not take a value."
                out[opt.dest] = flag not in opt.off
                continue
            if not eq:
                if i >= n:
                    return None
                value = args[i]
                i += 1
            if not _store(opt, flag, value, out):
                return None
            continue
        # A cluster of short options (-dit, -eFOO=bar, -p 80:80): click's _match_short_opt.
        j = 1
        while j < len(arg):
            flag = "-" + arg[j]
            opt = table.by_flag.get(flag)
            j += 1
            if opt is None:
                return None
            if opt.kind == FLAG:
                out[opt.dest] = flag not in opt.off
                continue
            value = arg[j:]
            if not value:
                if i >= n:
                    return None
                value = args[i]
                i += 1
            if not _store(opt, flag, value, out):
                return None
            break
    for spec in table.arguments:
        if spec.kind == ARG:
            if not positional:
                if spec.required:
                    return None
                out[spec.dest] = spec.default
                continue
            out[spec.dest] = positional.pop(0)
        else:
            if not positional and spec.required:
                return None
            out[spec.dest] = positional or None
            positional = []
    if positional:
        return None  # click: "Got unexpected extra argument"
    return out


def parse_group(table: Table, commands: dict, args: list) -> tuple | None:
    """(group options, command name, command options) for `GROUP-OPTIONS COMMAND ARGS...`
    (`podpy oci --root R state ID`), or None when not sure. click parses a group's options
    up to the first argument, which names the command; the rest are the command's."""
    split = parse(Table((_GROUP_REST,), table.options, interspersed=False), args)
    if split is None:
        return None
    rest = split.pop(_GROUP_REST.dest)
    if not rest or rest[0] not in commands:
        return None  # click: "Missing command." / "No such command"
    options = parse(commands[rest[0]], rest[1:])
    if options is None:
        return None
    return split, rest[0], options


def parse_bool(value: str | None, flag: str) -> bool | None:
    """podman's boolean option values (`--tls-verify=false`); None when not given."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", ""):
        return True
    if lowered in ("false", "0", "no"):
        return False
    from podpy.errors import PodpyError

    raise PodpyError(f'invalid value "{value}" for {flag}: use true or false')


# --- the tables -------------------------------------------------------------------------------

_GROUP_REST = Opt("command_", (), ARGS, None)
_CONTAINERS = Opt("containers_", (), ARGS, "Containers", metavar="CONTAINER...")

RUN = Table(
    (
        Opt("image", (), ARG, "Image to run", required=True),
        Opt("command", (), ARGS, "Command and arguments"),
    ),
    (
        Opt("detach", ("-d", "--detach"), FLAG, "Run in the background, print the ID"),
        Opt("interactive", ("-i", "--interactive"), FLAG, "Keep STDIN open"),
        Opt("tty", ("-t", "--tty"), FLAG, "Allocate a pseudo-TTY"),
        Opt("remove", ("--rm",), FLAG, "Remove the container when it exits"),
        Opt("name", ("--name",), VALUE, "Container name"),
        Opt("env", ("-e", "--env"), MULTI, "Set environment variables"),
        Opt("env_files", ("--env-file",), MULTI, "Read environment from a file"),
        Opt("entrypoint", ("--entrypoint",), VALUE, "Override ENTRYPOINT"),
        Opt("workdir", ("-w", "--workdir"), VALUE, "Working directory"),
        Opt("user", ("-u", "--user"), VALUE, "USER[:GROUP]"),
        Opt("hostname", ("-h", "--hostname"), VALUE, "Container host name"),
        Opt("label", ("-l", "--label"), MULTI, "Set metadata KEY=VALUE"),
        Opt("volumes", ("-v", "--volume"), MULTI, "Bind mount SRC:DST[:OPTS]"),
        Opt("mounts", ("--mount",), MULTI, "Attach a filesystem mount"),
        Opt("tmpfs", ("--tmpfs",), MULTI, "Mount a tmpfs DST[:OPTS]"),
        Opt("init", ("--init",), FLAG, "Run an init that reaps zombies as PID 1"),
        Opt("read_only", ("--read-only",), FLAG, "Read-only root filesystem"),
        Opt("privileged", ("--privileged",), FLAG, "Give extended privileges"),
        Opt("cap_add", ("--cap-add",), MULTI, "Add capabilities"),
        Opt("cap_drop", ("--cap-drop",), MULTI, "Drop capabilities"),
        Opt("security_opt", ("--security-opt",), MULTI, "Security options"),
        Opt("stop_signal", ("--stop-signal",), VALUE, "Signal to stop"),
        Opt("stop_timeout", ("--stop-timeout",), VALUE, "Seconds to wait", type=int),
        Opt("log_driver", ("--log-driver",), VALUE, "k8s-file|none|passthrough"),
        Opt("log_opts", ("--log-opt",), MULTI, "Logging options (max-size=...)"),
        Opt("cidfile", ("--cidfile",), VALUE, "Write the container ID here"),
        Opt("replace", ("--replace",), FLAG, "Replace a container of the same name"),
        Opt("pull", ("--pull",), VALUE, "always|missing|never|newer", default="missing"),
        Opt(
            "tls_verify",
            ("--tls-verify",),
            VALUE,
            "Verify registry TLS (--tls-verify=false for plain HTTP)",
        ),
        Opt("platform", ("--platform",), VALUE, "OS/ARCH[/VARIANT]"),
        Opt("runtime", ("--runtime",), VALUE, "OCI runtime: podpy|runc|PATH"),
        Opt("network", ("--network", "--net"), VALUE, "Network mode"),
        Opt("publish", ("-p", "--publish"), MULTI, "Publish a port"),
        Opt("publish_all", ("-P", "--publish-all"), FLAG, "Publish exposed ports"),
        Opt("dns", ("--dns",), MULTI, "DNS servers"),
        Opt("dns_search", ("--dns-search",), MULTI, "DNS search domains"),
        Opt("add_host", ("--add-host",), MULTI, "Add HOST:IP to /etc/hosts"),
        Opt("dns_option", ("--dns-option",), MULTI, "DNS options (resolv.conf)"),
        Opt("expose", ("--expose",), MULTI, "Expose a port or range (for -P)"),
        Opt("ip", ("--ip",), VALUE, "IPv4 address on the bridge network"),
        Opt("mac_address", ("--mac-address",), VALUE, "MAC address on the bridge network"),
        Opt("network_alias", ("--network-alias",), MULTI, "Network-scoped alias (DNS name)"),
        Opt("memory", ("-m", "--memory"), VALUE, "Memory limit"),
        Opt("memory_swap", ("--memory-swap",), VALUE, "Memory + swap"),
        Opt("cpus", ("--cpus",), VALUE, "Number of CPUs", type=float),
        Opt("cpu_shares", ("-c", "--cpu-shares"), VALUE, "CPU shares", type=int),
        Opt("pids_limit", ("--pids-limit",), VALUE, "Process limit", type=int),
        Opt("ulimits", ("--ulimit",), MULTI, "Ulimit options"),
        Opt("sysctls", ("--sysctl",), MULTI, "Sysctl options"),
        Opt("sdnotify", ("--sdnotify",), VALUE, "conmon|container|ignore", default="conmon"),
        Opt(
            "sig_proxy",
            ("--sig-proxy",),
            FLAG,
            "Proxy signals",
            default=True,
            off=("--no-sig-proxy",),
        ),
        Opt("detach_keys", ("--detach-keys",), VALUE, "Detach key sequence"),
        Opt("pod", ("--pod",), VALUE, "Run in a pod"),
        Opt("quiet", ("-q", "--quiet"), FLAG, "Suppress pull output"),
    ),
    interspersed=False,  # options after IMAGE belong to the container's command
)

# `create` takes run's options, as podman's does, minus the ones about running attached.
RUN_ONLY = ("detach", "sig_proxy", "detach_keys")
CREATE = RUN.without(*RUN_ONLY)

START = Table(
    (Opt("containers_", (), ARGS, "Containers", metavar="CONTAINER...", required=True),),
    (
        Opt("attach", ("-a", "--attach"), FLAG, "Attach to the container's output"),
        Opt("interactive", ("-i", "--interactive"), FLAG, "Attach STDIN"),
    ),
)

STOP = Table(
    (_CONTAINERS,),
    (
        Opt("timeout", ("-t", "--time", "--timeout"), VALUE, "Seconds", type=int),
        Opt("all_", ("-a", "--all"), FLAG, "Stop all running containers"),
        Opt("ignore", ("-i", "--ignore"), FLAG, "Ignore missing containers"),
        Opt("cidfile", ("--cidfile",), MULTI, "Read the container ID from a file"),
    ),
)

KILL = Table(
    (_CONTAINERS,),
    (
        Opt("signal_", ("-s", "--signal"), VALUE, "Signal to send", default="KILL"),
        Opt("all_", ("-a", "--all"), FLAG, "Signal all running containers"),
    ),
)

RM = Table(
    (_CONTAINERS,),
    (
        Opt("force", ("-f", "--force"), FLAG, "Remove running containers too"),
        Opt("volumes", ("-v", "--volumes"), FLAG, "Remove anonymous volumes"),
        Opt("all_", ("-a", "--all"), FLAG, "Remove all containers"),
        Opt("ignore", ("-i", "--ignore"), FLAG, "Ignore missing containers"),
        Opt("cidfile", ("--cidfile",), MULTI, "Read the container ID from a file"),
        Opt("time_", ("-t", "--time"), VALUE, "Seconds before killing", type=int),
    ),
)

# Command word -> table, for the fast path (`container remove` is rm's hidden alias).
TABLES = {
    "run": RUN,
    "create": CREATE,
    "start": START,
    "stop": STOP,
    "kill": KILL,
    "rm": RM,
    "remove": RM,
}

# --- podpy oci: runc's command line (podpy/cli/oci.py, podpy/ociverbs.py) --------------------

_COMPAT = "Accepted for runc compatibility"

# runc's global flags, between `oci` and the verb.
OCI = Table(
    (),
    (
        Opt(
            "root",
            ("--root",),
            VALUE,
            "State directory (default $XDG_RUNTIME_DIR/podpy-oci or /run/podpy-oci)",
        ),
        Opt("log", ("--log",), VALUE, _COMPAT),
        Opt("log_format", ("--log-format",), VALUE, _COMPAT),
        Opt("systemd_cgroup", ("--systemd-cgroup",), FLAG, _COMPAT),
    ),
    interspersed=False,  # the first argument is the verb
)

_ID = Opt("container_id", (), ARG, None, metavar="ID", required=True)
_ID_ONLY = Table((_ID,), ())
_BUNDLE = Opt("bundle", ("--bundle", "-b"), VALUE, "Path to the OCI bundle", default=".")
_PID_FILE = Opt("pid_file", ("--pid-file",), VALUE, "Write the init pid here")

OCI_CREATE = Table(
    (_ID,),
    (
        _BUNDLE,
        _PID_FILE,
        Opt(
            "console_socket",
            ("--console-socket",),
            VALUE,
            "AF_UNIX socket that receives the pty master",
        ),
        Opt(
            "preserve_fds",
            ("--preserve-fds",),
            VALUE,
            "Pass N extra fds (3..) through",
            default=0,
            type=int,
        ),
        Opt("no_pivot", ("--no-pivot",), FLAG, _COMPAT),
    ),
)

OCI_KILL = Table(
    (_ID, Opt("signal", (), ARG, None, default="TERM", metavar="[SIGNAL]")),
    (Opt("all_processes", ("--all", "-a"), FLAG, "Signal every process"),),
)

OCI_DELETE = Table((_ID,), (Opt("force", ("--force", "-f"), FLAG, "Kill the container first"),))

OCI_LIST = Table(
    (),
    (
        Opt("fmt", ("--format", "-f"), VALUE, "table or json", default="table"),
        Opt("quiet", ("--quiet", "-q"), FLAG, "Only print IDs"),
    ),
)

OCI_RUN = Table(
    (_ID,),
    (
        _BUNDLE,
        _PID_FILE,
        Opt("console_socket", ("--console-socket",), VALUE, None),
        Opt("detach", ("--detach", "-d"), FLAG, "Do not wait for the exit"),
    ),
)

# Verb -> table, in `podpy oci --help`'s order.
OCI_TABLES = {
    "create": OCI_CREATE,
    "start": _ID_ONLY,
    "state": _ID_ONLY,
    "kill": OCI_KILL,
    "delete": OCI_DELETE,
    "list": OCI_LIST,
    "pause": _ID_ONLY,
    "resume": _ID_ONLY,
    "run": OCI_RUN,
}

"""podpy.config: file precedence, drop-ins, env overrides, merging, registries lookup, storage, errors.

Every test builds its own fake system tree and passes it as `sysroot`, so the host's real
/etc/containers and /usr/share/containers files never influence the result.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Optional

import pytest

from podpy.config import Config, RegistriesConfig, load
from podpy.config._toml import syntax_error
from podpy.config.containers import DEFAULT_HELPER_BINARIES_DIR
from podpy.config.registries import match_prefix
from podpy.errors import ConfigError

ROOTLESS_UID = 4321


class Tree:
    """A fake filesystem: a sysroot for /etc, /usr/share, /var/cache and a user home."""

    def __init__(self, base: Path):
        self.base = base
        self.sysroot = base / "sys"
        self.home = base / "home"
        self.sysroot.mkdir()
        self.home.mkdir()

    def write(self, where: str, text: str) -> Path:
        """`where` is /etc/..., /usr/share/..., /var/... (system) or ~/... (user home)."""
        if where.startswith("~/"):
            path = self.home / where[2:]
        else:
            path = self.sysroot / where.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def env(self, **extra: str) -> Dict[str, str]:
        env = {"HOME": str(self.home), "XDG_RUNTIME_DIR": str(self.base / "run")}
        env.update(extra)
        return env

    def load(self, uid: int = ROOTLESS_UID, env: Optional[Dict[str, str]] = None) -> Config:
        return load(env=env if env is not None else self.env(), uid=uid, sysroot=str(self.sysroot))

    def error(self, uid: int = ROOTLESS_UID, env: Optional[Dict[str, str]] = None) -> str:
        with pytest.raises(ConfigError) as info:
            self.load(uid=uid, env=env)
        assert info.value.exit_code == 125
        return info.value.message


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


# ---- containers.conf ---------------------------------------------------------------------


def test_defaults_without_any_file(tree: Tree) -> None:
    cfg = tree.load()
    c = cfg.containers
    assert cfg.sources == []
    assert c.log_driver == "k8s-file"
    assert c.pids_limit == 2048
    assert c.shm_size == "65536k"
    assert c.umask == "0022"
    assert c.stop_timeout == 10
    assert c.pull_policy == "missing"
    assert c.runtime == "podpy"
    assert c.runtime_paths() == []
    assert "/usr/bin/runc" in c.runtime_paths("runc")
    assert c.helper_binaries_dir == DEFAULT_HELPER_BINARIES_DIR
    assert c.default_rootless_network_cmd == "slirp4netns"
    assert c.default_network == "podman" and c.default_subnet == "10.88.0.0/16"
    assert "CAP_CHOWN" in c.default_capabilities and "CAP_SYS_ADMIN" not in c.default_capabilities
    assert c.default_sysctls == {"net.ipv4.ping_group_range": "0 0"}
    assert c.env[0].startswith("PATH=") and "TERM=xterm" in c.env
    assert c.tmp_dir is None and c.volume_path is None
    # podman picks systemd/journald only when systemd runs the host.
    systemd = os.path.isdir("/run/systemd/system")
    assert c.cgroup_manager == ("systemd" if systemd else "cgroupfs")
    assert c.events_logger == ("journald" if systemd else "file")
    assert cfg.registries.short_name_mode == "permissive"
    assert cfg.registries.search_registries == []


def test_precedence_share_etc_user_with_drop_ins_in_order(tree: Tree) -> None:
    share = tree.write("/usr/share/containers/containers.conf", '[containers]\ntz = "share"\n')
    share_d = tree.write(
        "/usr/share/containers/containers.conf.d/10.conf", "[containers]\numask = '0027'\n"
    )
    etc = tree.write("/etc/containers/containers.conf", '[containers]\ntz = "etc"\n')
    etc_b = tree.write("/etc/containers/containers.conf.d/b.conf", '[containers]\ntz = "etc-b"\n')
    etc_a = tree.write("/etc/containers/containers.conf.d/a.conf", '[containers]\ntz = "etc-a"\n')
    tree.write("/etc/containers/containers.conf.d/c.conf.rpmsave", '[containers]\ntz = "ignored"\n')
    tree.write("/etc/containers/containers.conf.d/sub/d.conf", '[containers]\ntz = "nested"\n')
    user = tree.write("~/.config/containers/containers.conf", "[engine]\nstop_timeout = 3\n")

    cfg = tree.load()
    assert cfg.sources[:6] == [str(p) for p in (share, share_d, etc, etc_a, etc_b, user)]
    assert cfg.containers.tz == "etc-b"  # b.conf sorts after a.conf; user file does not set tz
    assert cfg.containers.umask == "0027"
    assert cfg.containers.stop_timeout == 3

    user_d = tree.write(
        "~/.config/containers/containers.conf.d/x.conf", '[containers]\ntz = "user"\n'
    )
    cfg = tree.load()
    assert cfg.sources[-1] == str(user_d) and cfg.containers.tz == "user"


def test_root_does_not_read_the_user_file(tree: Tree) -> None:
    tree.write("/etc/containers/containers.conf", "[engine]\nstop_timeout = 20\n")
    tree.write("~/.config/containers/containers.conf", "[engine]\nstop_timeout = 3\n")
    assert tree.load(uid=0).containers.stop_timeout == 20
    assert tree.load(uid=ROOTLESS_UID).containers.stop_timeout == 3


def test_xdg_config_home_is_honoured(tree: Tree) -> None:
    conf = tree.base / "xdg" / "containers" / "containers.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text('[containers]\ntz = "xdg"\n')
    tree.write("~/.config/containers/containers.conf", '[containers]\ntz = "home"\n')
    cfg = tree.load(env=tree.env(XDG_CONFIG_HOME=str(tree.base / "xdg")))
    assert cfg.containers.tz == "xdg"


def test_containers_conf_env_replaces_and_override_comes_last(tree: Tree) -> None:
    tree.write("/etc/containers/containers.conf", '[containers]\ntz = "etc"\npids_limit = 7\n')
    only = tree.write("/elsewhere/only.conf", '[containers]\ntz = "only"\n')
    override = tree.write("/elsewhere/override.conf", "[containers]\npids_limit = 99\n")

    cfg = tree.load(env=tree.env(CONTAINERS_CONF=str(only)))
    assert cfg.sources == [str(only)]
    assert cfg.containers.tz == "only" and cfg.containers.pids_limit == 2048

    cfg = tree.load(env=tree.env(CONTAINERS_CONF_OVERRIDE=str(override)))
    assert cfg.sources[-1] == str(override)
    assert cfg.containers.tz == "etc" and cfg.containers.pids_limit == 99

    cfg = tree.load(env=tree.env(CONTAINERS_CONF=str(only), CONTAINERS_CONF_OVERRIDE=str(override)))
    assert cfg.sources == [str(only), str(override)]
    assert (cfg.containers.tz, cfg.containers.pids_limit) == ("only", 99)


@pytest.mark.parametrize("var", ["CONTAINERS_CONF", "CONTAINERS_CONF_OVERRIDE"])
def test_env_pointing_at_a_missing_file_is_an_error(tree: Tree, var: str) -> None:
    missing = str(tree.base / "nope.conf")
    message = tree.error(env=tree.env(**{var: missing}))
    assert message == f"{var} file {missing} does not exist"


def test_tables_merge_recursively_arrays_replace_and_append(tree: Tree) -> None:
    tree.write(
        "/etc/containers/containers.conf",
        '[containers]\nenv = ["A=1"]\nvolumes = ["/a:/a"]\n'
        '[engine.runtimes]\nkata = ["/usr/bin/kata"]\n'
        "[engine]\nstop_timeout = 5\n",
    )
    tree.write(
        "~/.config/containers/containers.conf",
        '[containers]\nenv = ["B=2"]\nvolumes = ["/b:/b", {append = true}]\n'
        '[engine.runtimes]\nmine = ["/opt/mine"]\n',
    )
    cfg = tree.load()
    assert cfg.containers.env == ["B=2"]
    assert cfg.containers.volumes == ["/a:/a", "/b:/b"]
    assert cfg.containers.runtime_paths("kata") == ["/usr/bin/kata"]
    assert cfg.containers.runtime_paths("mine") == ["/opt/mine"]
    assert "runc" in cfg.containers.runtimes
    assert cfg.containers.stop_timeout == 5  # the user file's [engine] did not erase it
    assert cfg.raw_containers["engine"]["runtimes"]["kata"] == ["/usr/bin/kata"]


def test_comments_and_multiline_strings(tree: Tree) -> None:
    # Full-line comments are skipped fast; a '#' line inside a multi-line string is content.
    tree.write(
        "/etc/containers/containers.conf",
        '# header\n  # indented\n[containers]\ntz = """\n# kept\n"""  # trailing\n',
    )
    assert tree.load().containers.tz == "# kept\n"
    path = tree.write("/etc/containers/containers.conf", "# one\n# two\n[containers]\ntz =\n")
    assert tree.error() == f"{path}: line 4: Invalid value"


def test_unknown_keys_are_ignored_but_kept_raw(tree: Tree) -> None:
    tree.write(
        "/etc/containers/containers.conf",
        '[containers]\nfuture_key = "x"\n[machine]\ncpus = 4\n[whatever.deep]\nk = 1\n',
    )
    cfg = tree.load()
    assert cfg.raw_containers["machine"]["cpus"] == 4
    assert cfg.raw_containers["containers"]["future_key"] == "x"


def test_typed_values_and_normalisation(tree: Tree) -> None:
    tree.write(
        "/etc/containers/containers.conf",
        """
[containers]
default_capabilities = ["chown", "CAP_NET_RAW"]
default_sysctls = ["net.ipv4.ip_forward=1", "kernel.msgmax=8192"]
default_ulimits = ["nofile=1024:2048", "nproc=unlimited"]
dns_servers = ["1.1.1.1", "fd00::1"]
log_driver = "journald"
log_size_max = 1048576
pids_limit = 0
shm_size = "128m"
tz = "local"
umask = "0077"
init_path = "/usr/bin/catatonit"
seccomp_profile = "/etc/my-seccomp.json"
no_hosts = true
netns = "host"
userns = "auto"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "none"
helper_binaries_dir = ["/opt/helpers"]
image_default_transport = "oci-archive:"
pull_policy = "IfNewer"
network_cmd_options = ["mtu=1500"]
tmp_dir = "/run/alt"
volume_path = "/srv/volumes"
[network]
default_network = "mynet"
default_subnet = "10.99.0.0/24"
default_rootless_network_cmd = "pasta"
""",
    )
    c = tree.load().containers
    assert c.default_capabilities == ["CAP_CHOWN", "CAP_NET_RAW"]
    assert c.default_sysctls == {"net.ipv4.ip_forward": "1", "kernel.msgmax": "8192"}
    assert c.default_ulimits == ["nofile=1024:2048", "nproc=unlimited"]
    assert c.dns_servers == ["1.1.1.1", "fd00::1"]
    assert (c.log_driver, c.log_size_max, c.pids_limit) == ("journald", 1048576, 0)
    assert (c.shm_size, c.tz, c.umask) == ("128m", "local", "0077")
    assert (c.init_path, c.seccomp_profile, c.no_hosts) == (
        "/usr/bin/catatonit",
        "/etc/my-seccomp.json",
        True,
    )
    assert (c.netns, c.userns) == ("host", "auto")
    assert (c.runtime, c.cgroup_manager, c.events_logger) == ("runc", "cgroupfs", "none")
    assert c.runtime_paths()[0] == "/usr/bin/runc"
    assert c.helper_binaries_dir == ["/opt/helpers"]
    assert c.image_default_transport == "oci-archive:"
    assert c.pull_policy == "newer"
    assert c.network_cmd_options == ["mtu=1500"]
    assert (c.tmp_dir, c.volume_path) == ("/run/alt", "/srv/volumes")
    assert (c.default_network, c.default_subnet, c.default_rootless_network_cmd) == (
        "mynet",
        "10.99.0.0/24",
        "pasta",
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '[engine]\nstop_timeout = "ten"\n',
            'engine.stop_timeout: expected an integer, got string "ten"',
        ),
        (
            "[containers]\npids_limit = true\n",
            "containers.pids_limit: expected an integer, got boolean true",
        ),
        (
            '[containers]\nno_hosts = "yes"\n',
            'containers.no_hosts: expected a boolean (true or false), got string "yes"',
        ),
        (
            '[containers]\nenv = "A=1"\n',
            'containers.env: expected an array of strings, got string "A=1"',
        ),
        (
            "[containers]\ndns_servers = [1, 2]\n",
            "containers.dns_servers: expected an array of strings, got array",
        ),
        ("[containers]\ntz = 5\n", "containers.tz: expected a string, got integer 5"),
        ('[engine]\nruntimes = "runc"\n', 'engine.runtimes: expected a table, got string "runc"'),
        (
            '[engine]\ncgroup_manager = "magic"\n',
            'engine.cgroup_manager: unsupported value "magic"',
        ),
        (
            '[engine]\npull_policy = "sometimes"\n',
            'engine.pull_policy: unsupported value "sometimes"',
        ),
        ("[engine]\nstop_timeout = -1\n", "engine.stop_timeout: must not be negative, got -1"),
        ('[containers]\numask = "999"\n', 'containers.umask: invalid umask "999"'),
        ('[containers]\nshm_size = "lots"\n', 'containers.shm_size: invalid size "lots"'),
        (
            '[containers]\ndefault_sysctls = ["nonsense"]\n',
            'containers.default_sysctls: invalid entry "nonsense"',
        ),
        (
            '[containers]\ndefault_ulimits = ["nofile"]\n',
            'containers.default_ulimits: invalid entry "nofile"',
        ),
        (
            '[containers]\ndns_servers = ["dns.example"]\n',
            'containers.dns_servers: "dns.example" is not an IP address',
        ),
        (
            '[containers]\nlog_driver = "syslog"\n',
            'containers.log_driver: unsupported value "syslog"',
        ),
        (
            '[network]\ndefault_subnet = "10.88/x"\n',
            'network.default_subnet: "10.88/x" is not a subnet',
        ),
        (
            '[engine.runtimes]\nrunc = "/usr/bin/runc"\n',
            "engine.runtimes.runc: expected an array of paths",
        ),
    ],
)
def test_wrong_types_and_values_name_file_and_key(tree: Tree, body: str, expected: str) -> None:
    path = tree.write("/etc/containers/containers.conf", body)
    assert tree.error() == f"{path}: {expected}"


def test_type_error_blames_the_file_that_set_the_key(tree: Tree) -> None:
    tree.write("/etc/containers/containers.conf", "[engine]\nstop_timeout = 4\n")
    bad = tree.write(
        "/etc/containers/containers.conf.d/50-bad.conf", '[engine]\nstop_timeout = "x"\n'
    )
    tree.write("~/.config/containers/containers.conf", '[containers]\ntz = "z"\n')
    assert tree.error().startswith(f"{bad}: engine.stop_timeout:")


def test_syntax_error_has_line_number(tree: Tree) -> None:
    path = tree.write("~/.config/containers/containers.conf", '[containers]\ntz = "x"\nbroken =\n')
    assert tree.error() == f"{path}: line 3: Invalid value"


def test_syntax_error_at_end_of_document_points_at_last_line(tree: Tree) -> None:
    path = tree.write("/etc/containers/containers.conf", '[containers]\nenv = ["A=1",\n  "B=2"\n')
    assert tree.error() == f"{path}: line 3: Unclosed array"


def test_duplicate_key_and_bad_table_header(tree: Tree) -> None:
    path = tree.write(
        "/etc/containers/containers.conf", "[engine]\nstop_timeout = 1\nstop_timeout = 2\n"
    )
    message = tree.error()
    assert message.startswith(f"{path}: line 3: ") and "(at line" not in message
    path.write_text("\n\n[engine\n")
    assert re.fullmatch(re.escape(f"{path}: line 3: ") + r"Expected '\]'.*", tree.error())


def test_invalid_utf8_reports_its_line(tree: Tree) -> None:
    path = tree.write("/etc/containers/containers.conf", "")
    path.write_bytes(b'[containers]\ntz = "\xff"\n')
    assert tree.error() == f"{path}: line 2: invalid UTF-8 (byte 0xff)"


def test_a_directory_instead_of_a_file(tree: Tree) -> None:
    path = tree.sysroot / "etc" / "containers" / "containers.conf"
    path.mkdir(parents=True)
    assert tree.error() == f"{path}: is a directory, expected a containers.conf file"


def test_unreadable_file(tmp_path: Path) -> None:
    """An unreadable file is an error, not silently skipped (checked as an unprivileged uid)."""
    import shutil
    import subprocess
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="podpy-cfg-"))
    try:
        base.chmod(0o755)
        conf = base / "containers.conf"
        conf.write_text("[containers]\n")
        conf.chmod(0)
        script = (
            "import sys; sys.path.insert(0, sys.argv[1]); from podpy.config import load\n"
            "from podpy.errors import ConfigError\n"
            "try: load(env={'HOME': sys.argv[2], 'CONTAINERS_CONF': sys.argv[2] + '/containers.conf'})\n"
            "except ConfigError as err: print(err.message)\n"
        )
        repo = str(Path(__file__).resolve().parents[2])
        argv = ["/usr/bin/python3", "-I", "-c", script, repo, str(base)]
        if os.geteuid() == 0:
            # Root reads anything; drop to nobody so the permission bits apply.
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + argv
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == f"{conf}: cannot read: Permission denied", out.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("module_name", ["tomllib", "tomli"])
def test_syntax_error_parsing_matches_both_toml_parsers(module_name: str) -> None:
    toml = pytest.importorskip(module_name)
    cases = {
        "a = 1\nb = \n": "f: line 2: Invalid value",
        "a = [1,\n2": "f: line 2: Unclosed array",
        "[t]\nk = 1\nk = 2\n": "f: line 3: Cannot overwrite a value",
    }
    for text, expected in cases.items():
        with pytest.raises(toml.TOMLDecodeError) as info:
            toml.loads(text)
        assert syntax_error("f", text, info.value).message == expected


def test_loading_writes_nothing(tree: Tree) -> None:
    tree.write("/etc/containers/containers.conf", "[containers]\n")
    tree.write("~/.config/containers/containers.conf", "[engine]\nstop_timeout = \n")
    before = sorted(str(p) for p in tree.base.rglob("*"))
    tree.error()
    after = sorted(str(p) for p in tree.base.rglob("*"))
    assert before == after


# ---- registries.conf ---------------------------------------------------------------------


REGISTRIES = """
unqualified-search-registries = ["registry.fedoraproject.org", "docker.io/"]
short-name-mode = "enforcing"

[[registry]]
prefix = "example.com"
location = "example.com"

[[registry]]
prefix = "example.com/team"
location = "mirror.local:5000/team"
insecure = true

[[registry]]
prefix = "*.corp.example"
blocked = true

[[registry]]
location = "blocked.io"
blocked = true

[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "cache.local:5000"
insecure = true
[[registry.mirror]]
location = "digest-mirror.local/hub"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tag-mirror.local"
pull-from-mirror = "tag-only"

[[registry]]
prefix = "quay.io"
location = "quay.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "quay-mirror.local"

[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"alpine" = "docker.io/alpine"
"team/tool" = "example.com/team/tool"
"""


def registries(tree: Tree, text: str = REGISTRIES, uid: int = ROOTLESS_UID) -> RegistriesConfig:
    tree.write("/etc/containers/registries.conf", text)
    return tree.load(uid=uid).registries


def test_registries_top_level_keys(tree: Tree) -> None:
    reg = registries(tree)
    assert reg.search_registries == ["registry.fedoraproject.org", "docker.io"]
    assert reg.short_name_mode == "enforcing"
    assert reg.credential_helpers == ["containers-auth.json"]
    assert reg.aliases == {
        "fedora": "registry.fedoraproject.org/fedora",
        "alpine": "docker.io/library/alpine",
        "team/tool": "example.com/team/tool",
    }
    assert reg.resolve_alias("alpine") == "docker.io/library/alpine"
    assert reg.resolve_alias("nope") is None
    # Registries are kept sorted by prefix, as containers/image does.
    prefixes = [entry.prefix for entry in reg.registries]
    assert prefixes == sorted(prefixes) and "blocked.io" in prefixes


def test_longest_prefix_match(tree: Tree) -> None:
    reg = registries(tree)
    assert reg.find("example.com/other/app:1").prefix == "example.com"
    assert reg.find("example.com/team/app:1").prefix == "example.com/team"
    assert reg.find("example.com/team").prefix == "example.com/team"
    # A prefix only matches at a path/tag/digest boundary.
    assert reg.find("example.com/teamwork/app").prefix == "example.com"
    assert reg.find("example.community/app") is None
    assert reg.find("ghcr.io/x/y") is None


def test_wildcard_prefix(tree: Tree) -> None:
    reg = registries(tree)
    assert reg.find("a.corp.example/x").prefix == "*.corp.example"
    assert reg.find("deep.a.corp.example:5000/x@sha256:" + "0" * 64).prefix == "*.corp.example"
    assert reg.find("corp.example/x") is None  # *.corp.example does not cover corp.example
    assert reg.find("evil.example/a.corp.example") is None  # only the host part may match
    assert match_prefix("b.corp.example", "*.corp.example") == len("b.corp.example")
    assert match_prefix("b.corp.examples", "*.corp.example") == -1


def test_blocked_and_insecure(tree: Tree) -> None:
    reg = registries(tree)
    assert reg.is_blocked("blocked.io/anything:latest")
    assert reg.is_blocked("x.corp.example/app")
    assert not reg.is_blocked("example.com/app")
    assert reg.is_insecure("example.com/team/x") is True
    assert reg.is_insecure("example.com") is False
    # Hosts that only appear as an insecure location or mirror are insecure too.
    assert reg.is_insecure("mirror.local:5000")
    assert reg.is_insecure("cache.local:5000")
    assert not reg.is_insecure("tag-mirror.local")
    assert not reg.is_insecure("docker.io")


def test_mirrors_and_pull_sources(tree: Tree) -> None:
    reg = registries(tree)
    docker = reg.find("docker.io/library/alpine:3")
    assert [m.location for m in docker.mirrors] == [
        "cache.local:5000",
        "digest-mirror.local/hub",
        "tag-mirror.local",
    ]
    assert docker.mirrors[0].insecure and docker.mirrors[1].pull_from_mirror == "digest-only"

    by_tag = reg.pull_sources("docker.io/library/alpine:3")
    assert [(s.reference, s.insecure, s.mirror) for s in by_tag] == [
        ("cache.local:5000/library/alpine:3", True, True),
        ("tag-mirror.local/library/alpine:3", False, True),
        ("docker.io/library/alpine:3", False, False),
    ]
    digest = "@sha256:" + "a" * 64
    by_digest = [s.reference for s in reg.pull_sources("docker.io/library/alpine" + digest)]
    assert by_digest == [
        "cache.local:5000/library/alpine" + digest,
        "digest-mirror.local/hub/library/alpine" + digest,
        "docker.io/library/alpine" + digest,
    ]
    # mirror-by-digest-only: tags go straight to the registry.
    assert [s.reference for s in reg.pull_sources("quay.io/a/b:1")] == ["quay.io/a/b:1"]
    assert [s.endpoint for s in reg.pull_sources("quay.io/a/b" + digest)] == [
        "quay-mirror.local",
        "quay.io",
    ]
    # Prefix rewriting to another location.
    rewritten = reg.pull_sources("example.com/team/app:2")
    assert [(s.reference, s.insecure) for s in rewritten] == [
        ("mirror.local:5000/team/app:2", True)
    ]
    # Wildcard entries keep the reference; unknown registries pass through.
    assert reg.pull_sources("x.corp.example/a:1")[0].reference == "x.corp.example/a:1"
    assert [s.reference for s in reg.pull_sources("ghcr.io/o/r:1")] == ["ghcr.io/o/r:1"]


def test_registries_v1_format(tree: Tree) -> None:
    reg = registries(
        tree,
        '[registries.search]\nregistries = ["docker.io", "quay.io"]\n'
        '[registries.insecure]\nregistries = ["localhost:5000"]\n'
        '[registries.block]\nregistries = ["bad.io", "localhost:5000"]\n',
    )
    assert reg.search_registries == ["docker.io", "quay.io"]
    assert reg.is_insecure("localhost:5000") and reg.is_blocked("localhost:5000/x")
    assert reg.is_blocked("bad.io/x") and not reg.is_insecure("bad.io")
    assert reg.find("docker.io/library/x") is None


def test_registries_v1_and_v2_mixed_is_an_error(tree: Tree) -> None:
    path = tree.write(
        "/etc/containers/registries.conf",
        'unqualified-search-registries = ["docker.io"]\n[registries.search]\nregistries = ["quay.io"]\n',
    )
    assert tree.error().startswith(f"{path}: registries: mixing the v1")


def test_registries_drop_ins_merge_by_prefix(tree: Tree) -> None:
    tree.write("/etc/containers/registries.conf", REGISTRIES)
    tree.write(
        "/etc/containers/registries.conf.d/10-override.conf",
        'unqualified-search-registries = ["quay.io"]\n'
        '[[registry]]\nprefix = "docker.io"\nlocation = "hub.local"\n'
        '[[registry]]\nlocation = "new.io"\ninsecure = true\n'
        '[aliases]\n"fedora" = ""\n"ubi" = "registry.access.redhat.com/ubi9"\n',
    )
    user_drop_in = tree.write(
        "~/.config/containers/registries.conf.d/99-user.conf", 'short-name-mode = "disabled"\n'
    )
    cfg = tree.load()
    reg = cfg.registries
    assert reg.search_registries == ["quay.io"]
    assert reg.short_name_mode == "disabled"
    docker = reg.find("docker.io/library/alpine")
    assert docker.location == "hub.local" and docker.mirrors == ()  # replaced as a whole
    assert reg.is_insecure("new.io")
    assert reg.find("example.com/team/x").location == "mirror.local:5000/team"  # untouched
    assert "fedora" not in reg.aliases  # "" removes an alias
    assert reg.aliases["ubi"] == "registry.access.redhat.com/ubi9"
    assert str(user_drop_in) in cfg.sources


def test_user_registries_conf_replaces_system_file_and_its_drop_ins(tree: Tree) -> None:
    tree.write("/etc/containers/registries.conf", 'unqualified-search-registries = ["etc.io"]\n')
    tree.write("/etc/containers/registries.conf.d/a.conf", '[aliases]\n"x" = "etc.io/x"\n')
    user = tree.write(
        "~/.config/containers/registries.conf", 'unqualified-search-registries = ["me.io"]\n'
    )
    cfg = tree.load()
    assert cfg.registries.search_registries == ["me.io"]
    assert cfg.registries.aliases == {}
    assert str(user) in cfg.sources and not any("/etc/" in s for s in cfg.sources)


def test_registries_env_file(tree: Tree) -> None:
    tree.write("/etc/containers/registries.conf", 'unqualified-search-registries = ["etc.io"]\n')
    tree.write("/etc/containers/registries.conf.d/a.conf", 'short-name-mode = "disabled"\n')
    chosen = tree.write("/custom/registries.conf", 'unqualified-search-registries = ["env.io"]\n')
    next_to = tree.write("/custom/registries.conf.d/z.conf", '[aliases]\n"a" = "env.io/a"\n')
    cfg = tree.load(env=tree.env(CONTAINERS_REGISTRIES_CONF=str(chosen)))
    assert cfg.registries.search_registries == ["env.io"]
    assert cfg.registries.short_name_mode == "disabled"  # /etc drop-ins still apply
    assert cfg.registries.aliases == {"a": "env.io/a"}
    assert str(next_to) in cfg.sources
    missing = str(tree.base / "missing.conf")
    assert tree.error(env=tree.env(CONTAINERS_REGISTRIES_CONF=missing)) == (
        f"CONTAINERS_REGISTRIES_CONF file {missing} does not exist"
    )


def test_machine_alias_cache_wins(tree: Tree) -> None:
    tree.write(
        "/etc/containers/registries.conf", '[aliases]\n"tool" = "a.io/tool"\n"keep" = "a.io/keep"\n'
    )
    cache = tree.write(
        "~/.cache/containers/short-name-aliases.conf", '[aliases]\n"tool" = "b.io/tool"\n'
    )
    root_cache = tree.write(
        "/var/cache/containers/short-name-aliases.conf", '[aliases]\n"tool" = "root.io/tool"\n'
    )
    rootless = tree.load()
    assert rootless.registries.aliases == {"tool": "b.io/tool", "keep": "a.io/keep"}
    assert str(cache) in rootless.sources
    root = tree.load(uid=0)
    assert root.registries.aliases["tool"] == "root.io/tool"
    assert str(root_cache) in root.sources
    cache.write_text('[aliases]\n"tool" = \n')
    assert tree.error() == f"{cache}: line 2: Invalid value"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '[[registry]]\nlocation = "https://x.io"\n',
            'registry "https://x.io": invalid location "https://x.io": URI schemes are not supported',
        ),
        ("[[registry]]\ninsecure = true\n", "registry #1: both location and prefix are unset"),
        (
            '[[registry]]\nprefix = "x.io"\n',
            'registry "x.io": location is unset and prefix is not in the format *.example.com',
        ),
        (
            '[[registry]]\nprefix = "*.x.io/path"\n',
            'registry "*.x.io/path": a wildcard prefix must be a plain *.domain (no port, path, tag or digest)',
        ),
        (
            '[[registry]]\nlocation = "x.io"\ninsecure = "yes"\n',
            'registry "x.io": expected a boolean (true or false), got string "yes"',
        ),
        (
            '[[registry]]\nlocation = "x.io"\n[[registry.mirror]]\nlocation = "m.io"\npull-from-mirror = "sometimes"\n',
            'registry "x.io" mirror: unsupported pull-from-mirror value "sometimes"',
        ),
        (
            '[[registry]]\nlocation = "x.io"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = "m.io"\npull-from-mirror = "all"\n',
            'registry "x.io": mirror-by-digest-only and a mirror\'s pull-from-mirror cannot both be set',
        ),
        (
            '[[registry]]\nlocation = "x.io"\n[[registry.mirror]]\ninsecure = true\n',
            'registry "x.io" mirror: mirror location is unset',
        ),
        (
            '[[registry]]\nprefix = "a.io"\nlocation = "x.io"\ninsecure = true\n'
            '[[registry]]\nprefix = "b.io"\nlocation = "x.io"\n',
            "registry \"x.io\": defined several times with conflicting 'insecure' settings",
        ),
        ('short-name-mode = "strict"\n', 'short-name-mode: unsupported value "strict"'),
        (
            'unqualified-search-registries = ["not a host"]\n',
            'unqualified-search-registries: invalid entry "not a host"',
        ),
        (
            'unqualified-search-registries = "docker.io"\n',
            'unqualified-search-registries: expected an array of strings, got string "docker.io"',
        ),
        (
            '[aliases]\n"alpine:3" = "docker.io/alpine"\n',
            'aliases: "alpine:3": invalid short name (no tag or digest allowed)',
        ),
        (
            '[aliases]\n"quay.io/x" = "quay.io/x"\n',
            'aliases: "quay.io/x": a short name must not contain a registry',
        ),
        (
            '[aliases]\n"alpine" = "alpine"\n',
            'aliases: "alpine": invalid alias "alpine": it must be registry/repository without a tag or digest',
        ),
        (
            '[aliases]\n"alpine" = "docker.io/alpine:3"\n',
            'aliases: "alpine": invalid alias "docker.io/alpine:3": it must be registry/repository without a tag or digest',
        ),
    ],
)
def test_registries_validation_errors(tree: Tree, body: str, expected: str) -> None:
    path = tree.write("/etc/containers/registries.conf", body)
    assert tree.error() == f"{path}: {expected}"


def test_registries_drop_in_syntax_error_has_line(tree: Tree) -> None:
    tree.write("/etc/containers/registries.conf", REGISTRIES)
    bad = tree.write(
        "/etc/containers/registries.conf.d/50.conf", "[[registry]]\nlocation = 'x.io'\nprefix\n"
    )
    assert tree.error() == f"{bad}: line 3: Expected '=' after a key in a key/value pair"


def test_registries_unknown_keys_ignored(tree: Tree) -> None:
    reg = registries(
        tree,
        'new-top-level = 1\n[[registry]]\nlocation = "x.io"\nfuture = "y"\n[other]\nz = 1\n',
    )
    assert reg.find("x.io/a").location == "x.io"


# ---- storage.conf ------------------------------------------------------------------------


STORAGE = """
[storage]
driver = "overlay"
graphroot = "/srv/graph"
runroot = "/srv/run"
rootless_storage_path = "$HOME/store-$UID-$USER"
[storage.options]
additionalimagestores = ["/ro/store"]
[storage.options.overlay]
mount_program = "/usr/bin/fuse-overlayfs"
mountopt = "nodev,metacopy=on"
ignore_chown_errors = "true"
[storage.options.vfs]
ignore_chown_errors = true
"""


def test_storage_root_reads_etc_file(tree: Tree) -> None:
    path = tree.write("/etc/containers/storage.conf", STORAGE)
    tree.write("/usr/share/containers/storage.conf", '[storage]\ndriver = "vfs"\n')
    cfg = tree.load(uid=0)
    s = cfg.storage
    assert s.source == str(path) and str(path) in cfg.sources
    assert (s.driver, s.graphroot, s.runroot) == ("overlay", "/srv/graph", "/srv/run")
    assert s.overlay_mount_program == "/usr/bin/fuse-overlayfs"
    assert s.overlay_mountopt == "nodev,metacopy=on"
    assert s.overlay_ignore_chown_errors and s.vfs_ignore_chown_errors
    assert cfg.raw_storage["storage"]["options"]["additionalimagestores"] == ["/ro/store"]


def test_storage_usr_share_fallback_and_defaults(tree: Tree) -> None:
    assert tree.load(uid=0).storage.graphroot == "/var/lib/containers/storage"
    assert tree.load(uid=0).storage.source is None
    path = tree.write("/usr/share/containers/storage.conf", '[storage]\ndriver = "vfs"\n')
    s = tree.load(uid=0).storage
    assert (s.driver, s.source, s.runroot) == ("vfs", str(path), "/run/containers/storage")


def test_storage_rootless_uses_rootless_storage_path_not_system_graphroot(tree: Tree) -> None:
    tree.write("/etc/containers/storage.conf", STORAGE)
    env = tree.env(USER="alice")
    s = tree.load(env=env).storage
    assert s.graphroot == f"{tree.home}/store-{ROOTLESS_UID}-alice"
    assert s.runroot == f"{tree.base}/run/containers"
    assert s.driver == "overlay"
    tree.write(
        "/etc/containers/storage.conf", '[storage]\ndriver = "vfs"\ngraphroot = "/root-only"\n'
    )
    s = tree.load(env=env).storage
    assert s.graphroot == f"{tree.home}/.local/share/containers/storage"


def test_storage_user_file_wins_for_rootless_only(tree: Tree) -> None:
    tree.write("/etc/containers/storage.conf", '[storage]\ndriver = "overlay"\n')
    user = tree.write(
        "~/.config/containers/storage.conf", '[storage]\ndriver = "vfs"\ngraphroot = "/mine"\n'
    )
    s = tree.load().storage
    assert (s.source, s.driver, s.graphroot) == (str(user), "vfs", "/mine")
    assert tree.load(uid=0).storage.driver == "overlay"


def test_storage_env_file_and_driver_override(tree: Tree) -> None:
    chosen = tree.write("/custom/storage.conf", '[storage]\ndriver = "overlay2"\n')
    s = tree.load(env=tree.env(CONTAINERS_STORAGE_CONF=str(chosen))).storage
    assert (s.source, s.driver) == (str(chosen), "overlay")
    s = tree.load(env=tree.env(CONTAINERS_STORAGE_CONF=str(chosen), STORAGE_DRIVER="vfs")).storage
    assert s.driver == "vfs"
    missing = str(tree.base / "none.conf")
    assert tree.error(env=tree.env(CONTAINERS_STORAGE_CONF=missing)) == (
        f"CONTAINERS_STORAGE_CONF file {missing} does not exist"
    )
    assert (
        tree.error(env=tree.env(STORAGE_DRIVER="floppy"))
        == 'STORAGE_DRIVER: unsupported storage driver "floppy"'
    )


def test_storage_legacy_option_locations(tree: Tree) -> None:
    tree.write(
        "/etc/containers/storage.conf",
        '[storage.options]\nmount_program = "/usr/bin/fuse-overlayfs"\nmountopt = "nodev"\n'
        'ignore_chown_errors = "true"\n',
    )
    s = tree.load(uid=0).storage
    assert s.overlay_mount_program == "/usr/bin/fuse-overlayfs"
    assert s.overlay_mountopt == "nodev" and s.overlay_ignore_chown_errors
    assert not s.vfs_ignore_chown_errors


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[storage]\ndriver = "floppy"\n', 'storage.driver: unsupported storage driver "floppy"'),
        ("[storage]\ngraphroot = 5\n", "storage.graphroot: expected a string, got integer 5"),
        (
            '[storage.options.overlay]\nmount_program = "fuse-overlayfs"\n',
            'storage.options.overlay.mount_program: "fuse-overlayfs" is not an absolute path',
        ),
        (
            '[storage.options.vfs]\nignore_chown_errors = "maybe"\n',
            "storage.options.vfs.ignore_chown_errors: expected true or false, got 'maybe'",
        ),
        ('[storage]\ndriver = "vfs"\n[storage]\n', "line 3: Cannot declare ('storage',) twice"),
    ],
)
def test_storage_errors(tree: Tree, body: str, expected: str) -> None:
    path = tree.write("/etc/containers/storage.conf", body)
    assert tree.error(uid=0) == f"{path}: {expected}"


def test_config_defaults_match_loaded_defaults(tree: Tree) -> None:
    from podpy.config import ContainersConfig

    loaded = tree.load().containers.to_dict()
    built_in = ContainersConfig().to_dict()
    for key in ("cgroup_manager", "events_logger"):  # host-dependent at load time
        loaded.pop(key)
        built_in.pop(key)
    assert loaded == built_in


def test_to_dict_is_json_ready(tree: Tree) -> None:
    import json

    tree.write("/etc/containers/registries.conf", REGISTRIES)
    data = json.loads(json.dumps(tree.load().to_dict()))
    assert set(data) == {"sources", "containers", "registries", "storage"}
    assert data["containers"]["stop_timeout"] == 10
    assert data["registries"]["registries"][0]["prefix"] == "*.corp.example"


def test_rootless_uid_inside_the_user_namespace_is_recognised() -> None:
    import podpy.config as config
    from podpy.rootless import ROOTLESS_UID_ENV

    assert config.ROOTLESS_UID_ENV == ROOTLESS_UID_ENV
    # (podpy.userns decides; tests/unit/test_userns.py checks it inside a user namespace)


def test_json_file_log_driver_is_k8s_file(tree: Tree) -> None:
    tree.write("/etc/containers/containers.conf", '[containers]\nlog_driver = "json-file"\n')
    assert tree.load().containers.log_driver == "k8s-file"


def test_default_values_are_not_run_through_regexes(tree: Tree) -> None:
    # Defaults are known good; compiling a validation regex for them cost every command
    # start-up time. A value from a file is still checked (see the invalid-value tests).
    from podpy.config import containers as ctr

    lazies = (ctr._SHM_SIZE, ctr._UMASK, ctr._ULIMIT)
    for lazy in lazies:
        lazy._compiled = None
    tree.load()
    assert [lazy._compiled for lazy in lazies] == [None, None, None]
    tree.write("/etc/containers/containers.conf", '[containers]\nshm_size = "1g"\n')
    assert tree.load().containers.shm_size == "1g"
    assert ctr._SHM_SIZE._compiled is not None and ctr._UMASK._compiled is None


# ---- the parsed-TOML cache (podpy.config._toml) as load() uses it ------------------------


def test_load_caches_parsed_files_only_after_success(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    from podpy.config import _toml

    cache = tree.base / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setattr(_toml, "_RACY_NS", 0)  # the test's files are brand new
    monkeypatch.setattr(_toml, "_PENDING", [])
    tree.write("/usr/share/containers/containers.conf", "[engine]\nstop_timeout = 20\n")
    bad = tree.write("~/.config/containers/containers.conf", "[engine]\nstop_timeout = \n")
    assert tree.error() == f"{bad}: line 2: Invalid value"
    entries = cache / "podpy" / "toml"
    assert not entries.exists(), "a failed load must leave no cache entry"
    bad.unlink()
    assert tree.load().containers.stop_timeout == 20
    names = [p.name.replace("%2F", "/") for p in entries.iterdir()]
    assert any(n.endswith("/usr/share/containers/containers.conf") for n in names), names
    parses = []
    monkeypatch.setattr(_toml, "_toml_module", lambda: parses.append(1))  # must not be needed
    assert tree.load().containers.stop_timeout == 20 and parses == []

"""Session fixtures for integration tests: local registries and busybox images pushed into them.

`registry` (plain HTTP) and `auth_registry` (TLS + htpasswd) run Debian's docker-registry on
free ports. `busybox_image` / `multilayer_image` are references `127.0.0.1:PORT/NAME:latest`
(pull them with tls-verify off); `busybox_layout` / `multilayer_layout` are the local OCI
layouts they were pushed from (world-readable, so the rootless test user can read them too).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

# tests/ and tests/integration/ hold plain helper modules (no packages): make them importable.
_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE), str(_HERE.parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import images  # noqa: E402
from registry import Registry, push_oci_layout, start_registry  # noqa: E402


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """A plain-HTTP registry on 127.0.0.1:<free port>, storage in a temp dir; removed after."""
    reg = start_registry(Path(tempfile.mkdtemp(prefix="podpy-registry-")))
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[Registry]:
    """An HTTPS registry with basic auth: `.ca_cert`, `.cert_dir`, `.username`, `.password`."""
    reg = start_registry(Path(tempfile.mkdtemp(prefix="podpy-authreg-")), secure=True)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def busybox_layout(shared_tmp: Path) -> images.BuiltImage:
    """The single-layer busybox image as an OCI layout dir (tag `latest`)."""
    return images.build_busybox_image(shared_tmp / "oci-busybox")


@pytest.fixture(scope="session")
def multilayer_layout(shared_tmp: Path) -> images.BuiltImage:
    """busybox + two layers with whiteouts; see images.MULTILAYER_FILES / MULTILAYER_ABSENT."""
    return images.build_busybox_image(shared_tmp / "oci-multilayer", multilayer=True)


@pytest.fixture(scope="session")
def busybox_image(registry: Registry, busybox_layout: images.BuiltImage) -> str:
    """`HOST/busybox:latest` in the `registry` fixture (plain HTTP: use tls-verify=false)."""
    return push_oci_layout(registry, busybox_layout.oci_ref, "busybox:latest")


@pytest.fixture(scope="session")
def multilayer_image(registry: Registry, multilayer_layout: images.BuiltImage) -> str:
    """`HOST/busybox-layers:latest` in the `registry` fixture."""
    return push_oci_layout(registry, multilayer_layout.oci_ref, "busybox-layers:latest")


@pytest.fixture
def image(as_each, busybox_image: str) -> str:
    """The busybox reference, already pulled into as_each's store (root or rootless)."""
    as_each.ok("pull", "-q", "--tls-verify=false", busybox_image)
    return busybox_image

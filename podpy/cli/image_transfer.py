"""Image transfer commands: login, logout, push, save, load, import, and image copy."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from podpy.cli import _groups, engine


def _bool_flag(value: Optional[str], flag: str) -> Optional[bool]:
    from podpy.cli.image import _parse_bool

    return _parse_bool(value, flag)


def _tls_option() -> Optional[str]:
    return typer.Option(
        None,
        "--tls-verify",
        help="Require HTTPS and verify certificates (--tls-verify=false for a plain-HTTP registry)",
    )


def _authfile_option() -> Optional[str]:
    return typer.Option(
        None, "--authfile", help="Path of the authentication file (default: podman's auth.json)"
    )


def _cert_dir_option() -> Optional[str]:
    return typer.Option(
        None, "--cert-dir", help="Directory with certificates (*.crt) for the registry"
    )


# --- login / logout ------------------------------------------------------------------------------


def login(
    ctx: typer.Context,
    registry: Optional[str] = typer.Argument(None, help="Registry (HOST[:PORT][/NAMESPACE])"),
    username: Optional[str] = typer.Option(None, "--username", "-u", help="Username"),
    password: Optional[str] = typer.Option(None, "--password", "-p", help="Password"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input"
    ),
    authfile: Optional[str] = _authfile_option(),
    tls_verify: Optional[str] = _tls_option(),
    cert_dir: Optional[str] = _cert_dir_option(),
    get_login: bool = typer.Option(
        False, "--get-login", help="Print the user name stored for the registry"
    ),
) -> None:
    """Log in to a container registry."""
    from podpy.engine import image_transfer as transfer
    from podpy.errors import PodpyError

    eng = engine(ctx)
    if get_login:
        typer.echo(transfer.get_login(eng, registry, authfile))
        return
    if password and password_stdin:
        raise PodpyError("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            raise PodpyError("--password-stdin needs --username", hint="pass -u USERNAME")
        password = sys.stdin.readline().rstrip("\r\n")
    interactive = sys.stdin.isatty()
    if not username:
        if not interactive:
            raise PodpyError(
                "cannot prompt for a username without a terminal", hint="pass -u USERNAME"
            )
        username = input("Username: ").strip()
    if password is None:
        if not interactive:
            raise PodpyError(
                "cannot prompt for a password without a terminal",
                hint="pass -p PASSWORD or --password-stdin",
            )
        import getpass

        password = getpass.getpass("Password: ")
    transfer.login(
        eng,
        registry,
        transfer.LoginOptions(
            username=username,
            password=password,
            authfile=authfile,
            tls_verify=_bool_flag(tls_verify, "--tls-verify"),
            cert_dir=cert_dir,
        ),
    )
    typer.echo("Login Succeeded!")


def logout(
    ctx: typer.Context,
    registry: Optional[str] = typer.Argument(None, help="Registry (HOST[:PORT][/NAMESPACE])"),
    all_registries: bool = typer.Option(
        False, "--all", "-a", help="Remove the credentials of all registries"
    ),
    authfile: Optional[str] = _authfile_option(),
) -> None:
    """Log out of a container registry."""
    from podpy.engine import image_transfer as transfer

    typer.echo(transfer.logout(engine(ctx), registry, all_registries, authfile))


# --- push ----------------------------------------------------------------------------------------


def push(
    ctx: typer.Context,
    image: str = typer.Argument(..., help="Local image"),
    destination: Optional[str] = typer.Argument(
        None, help="Destination (HOST/REPO[:TAG], or TRANSPORT:REFERENCE)"
    ),
    tls_verify: Optional[str] = _tls_option(),
    creds: Optional[str] = typer.Option(
        None, "--creds", help="Credentials (USERNAME:PASSWORD) for the registry"
    ),
    authfile: Optional[str] = _authfile_option(),
    cert_dir: Optional[str] = _cert_dir_option(),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f", help="Manifest type (oci or v2s2) to push"
    ),
    digestfile: Optional[str] = typer.Option(
        None, "--digestfile", help="Write the digest of the pushed manifest to this file"
    ),
    compression: Optional[str] = typer.Option(
        None, "--compression-format", help="Compression for layers (gzip)"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print progress"),
    remove_signatures: bool = typer.Option(
        False, "--remove-signatures", help="Discard signatures (podpy stores none)"
    ),
) -> None:
    """Push an image to a registry (or another transport)."""
    from podpy.cli.image import _progress
    from podpy.engine import image_transfer as transfer

    options = transfer.PushOptions(
        tls_verify=_bool_flag(tls_verify, "--tls-verify"),
        creds=creds,
        authfile=authfile,
        cert_dir=cert_dir,
        format=fmt,
        digestfile=digestfile,
        compression=compression,
    )
    progress = _progress(quiet)
    try:
        transfer.push(engine(ctx), image, destination, options, progress)
    finally:
        progress.close()


# --- save / load / import ------------------------------------------------------------------------


def save(
    ctx: typer.Context,
    images: List[str] = typer.Argument(..., help="Images to save"),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", help="Write to this file (or directory) instead of stdout"
    ),
    fmt: str = typer.Option(
        "docker-archive",
        "--format",
        help="docker-archive, oci-archive, oci-dir or docker-dir",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Suppress output"),
    multi_image_archive: bool = typer.Option(
        False, "--multi-image-archive", "-m", help="Accepted for podman compatibility"
    ),
    compress: bool = typer.Option(
        False, "--compress", help="Accepted for podman compatibility (dir formats)"
    ),
) -> None:
    """Save images to an archive."""
    from podpy.engine import image_transfer as transfer
    from podpy.image.archive import refuse_terminal

    if not output:
        refuse_terminal()
    transfer.save(
        engine(ctx),
        images,
        fmt,
        output,
        None if output else sys.stdout.buffer,  # type: ignore[arg-type]
    )


def load(
    ctx: typer.Context,
    input_path: Optional[str] = typer.Option(
        None, "--input", "-i", help="Read from this archive instead of stdin"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Suppress the progress output"),
) -> None:
    """Load images from an archive (docker-archive or oci-archive, optionally gzip'd)."""
    from podpy.cli.image import _progress
    from podpy.engine import image_transfer as transfer
    from podpy.errors import PodpyError

    if not input_path and sys.stdin.isatty():
        raise PodpyError(
            "cannot read an image archive from a terminal", hint="use -i FILE or redirect stdin"
        )
    progress = _progress(quiet)
    try:
        names = transfer.load(
            engine(ctx), input_path, None if input_path else sys.stdin.buffer, progress
        )
    finally:
        progress.close()
    for name in names:
        typer.echo(f"Loaded image: {name}")


def import_(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="Tarball path, URL, or - for stdin"),
    reference: Optional[str] = typer.Argument(None, help="Name for the new image"),
    changes: List[str] = typer.Option(
        [], "--change", "-c", help="Apply a Containerfile instruction (CMD, ENV, ...)"
    ),
    message: str = typer.Option("", "--message", "-m", help="Commit message"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Suppress the progress output"),
    platform: Optional[str] = typer.Option(None, "--platform", help="OS/ARCH of the image"),
) -> None:
    """Import a tarball of a root filesystem as an image."""
    from podpy.cli.image import _progress
    from podpy.engine import image_transfer as transfer

    progress = _progress(quiet)
    try:
        image_id = transfer.import_image(
            engine(ctx),
            source,
            reference,
            transfer.ImportOptions(changes=list(changes), message=message, platform=platform),
            sys.stdin.buffer if source == "-" else None,
            progress,
        )
    finally:
        progress.close()
    typer.echo(f"sha256:{image_id}")


# --- image copy ---------------------------------------------------------------------------------


def copy(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="Source (docker://, oci:, oci-archive:, ...)"),
    destination: str = typer.Argument(..., help="Destination (same transports)"),
    src_tls_verify: Optional[str] = typer.Option(
        None, "--src-tls-verify", help="Verify TLS of the source registry"
    ),
    dest_tls_verify: Optional[str] = typer.Option(
        None, "--dest-tls-verify", help="Verify TLS of the destination registry"
    ),
    tls_verify: Optional[str] = _tls_option(),
    src_creds: Optional[str] = typer.Option(None, "--src-creds", help="USER:PASSWORD (source)"),
    dest_creds: Optional[str] = typer.Option(
        None, "--dest-creds", help="USER:PASSWORD (destination)"
    ),
    authfile: Optional[str] = _authfile_option(),
    src_cert_dir: Optional[str] = typer.Option(None, "--src-cert-dir", help="Source CA dir"),
    dest_cert_dir: Optional[str] = typer.Option(None, "--dest-cert-dir", help="Destination CA dir"),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f", help="Manifest type (oci or v2s2) of the destination"
    ),
    digestfile: Optional[str] = typer.Option(
        None, "--digestfile", help="Write the digest of the written manifest to this file"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print progress"),
) -> None:
    """Copy an image between transports (registry, OCI layout/archive, docker-archive, dir, local)."""
    from podpy.cli.image import _progress
    from podpy.engine import image_transfer as transfer

    shared = _bool_flag(tls_verify, "--tls-verify")
    src_verify = _bool_flag(src_tls_verify, "--src-tls-verify")
    dest_verify = _bool_flag(dest_tls_verify, "--dest-tls-verify")
    src_options = transfer.PushOptions(
        tls_verify=shared if src_verify is None else src_verify,
        creds=src_creds,
        authfile=authfile,
        cert_dir=src_cert_dir,
    )
    dest_options = transfer.PushOptions(
        tls_verify=shared if dest_verify is None else dest_verify,
        creds=dest_creds,
        authfile=authfile,
        cert_dir=dest_cert_dir,
        format=fmt,
        digestfile=digestfile,
    )
    progress = _progress(quiet)
    try:
        transfer.copy(engine(ctx), source, destination, dest_options, src_options, progress)
    finally:
        progress.close()


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("push")(push)
    app.command("save")(save)
    app.command("load")(load)
    app.command("import")(import_)
    group = _groups.image
    group.command("push")(push)
    group.command("save")(save)
    group.command("load")(load)
    group.command("import")(import_)
    group.command("copy")(copy)
    group.command("cp", hidden=True)(copy)

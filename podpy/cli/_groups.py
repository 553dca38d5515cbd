"""Noun groups (`podpy system ...`, `podpy image ...`) shared by the command modules that fill them."""

from __future__ import annotations

import typer


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        no_args_is_help=True,
        help=help_text,
    )


system = _group("Manage podpy")
image = _group("Manage images")
container = _group("Manage containers")
volume = _group("Manage volumes")
network = _group("Manage networks")
pod = _group("Manage pods")
generate = _group("Generate structured data such as systemd units")
oci = _group("The built-in OCI runtime's runc-compatible interface")

ALL = {
    "system": system,
    "image": image,
    "container": container,
    "volume": volume,
    "network": network,
    "pod": pod,
    "generate": generate,
    "oci": oci,
}

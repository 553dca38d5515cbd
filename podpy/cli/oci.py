"""`podpy oci create|start|state|kill|delete|pause|resume|list|run`: the built-in runtime's
runc-compatible CLI.

The group's options (runc's global flags) and every verb's come from the tables in
podpy/cliopts.py and the bodies live in podpy/ociverbs.py, shared with the typer-free fast
path (podpy/fastpath.py), which answers these verbs whenever it is sure of the argv.
"""

from __future__ import annotations

from typing import Any, Dict

import typer

from podpy import cliopts
from podpy.cli import _groups
from podpy.cli._tablecmd import typer_command

_GROUP_KEY = "oci_options"


def _group_body(ctx: typer.Context, options: Dict[str, Any]) -> int:
    ctx.meta[_GROUP_KEY] = options
    return 0


def _verb(name: str) -> Any:
    from podpy import ociverbs

    def body(ctx: typer.Context, options: Dict[str, Any]) -> int:
        group = ctx.meta.get(_GROUP_KEY) or {}
        return ociverbs.VERBS[name](group, options)  # looked up now: tests replace bodies

    return typer_command(name, cliopts.OCI_TABLES[name], ociverbs.VERBS[name].__doc__, body)


def register(app: typer.Typer) -> None:
    group = _groups.oci
    group.callback()(typer_command("_oci_options", cliopts.OCI, None, _group_body))
    for name in cliopts.OCI_TABLES:
        group.command(name)(_verb(name))

"""typer commands built from podpy.cliopts tables, so typer and the fast path never disagree."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional

import typer

from podpy import cliopts


def typer_command(
    name: str, table: cliopts.Table, doc: Optional[str], body: Callable[..., Any]
) -> Any:
    """A typer command (or group callback) whose signature, annotations and defaults come
    from `table`; it calls `body(ctx, options)` and exits with its code when non-zero."""

    def command(ctx: typer.Context, **options: Any) -> None:
        code = body(ctx, options)
        if code:
            raise typer.Exit(code)

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("ctx", kind, annotation=typer.Context)]
    annotations: Dict[str, Any] = {"ctx": typer.Context, "return": None}
    for spec in table.arguments:
        default = ... if spec.required else spec.default
        info = typer.Argument(default, metavar=spec.metavar, help=spec.help)
        annotation: Any = spec.type if spec.kind == cliopts.ARG else Optional[List[str]]
        params.append(inspect.Parameter(spec.dest, kind, default=info, annotation=annotation))
        annotations[spec.dest] = annotation
    for opt in table.options:
        if opt.kind == cliopts.FLAG:
            flags = [f"{opt.flags[0]}/{opt.off[0]}"] if opt.off else list(opt.flags)
            annotation = bool
            default = opt.default
        elif opt.kind == cliopts.MULTI:
            flags, annotation, default = list(opt.flags), List[str], []
        else:
            flags = list(opt.flags)
            annotation = opt.type if opt.default is not None else Optional[opt.type]
            default = opt.default
        info = typer.Option(default, *flags, help=opt.help)
        params.append(inspect.Parameter(opt.dest, kind, default=info, annotation=annotation))
        annotations[opt.dest] = annotation
    command.__name__ = name
    command.__qualname__ = name
    command.__doc__ = doc
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = annotations
    return command

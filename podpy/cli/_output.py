"""Compatibility alias: the output layer lives in podpy.output (importable without typer, which
the `ps` fast path needs); `podpy.cli._output` is the very same module object."""

import sys

from podpy import output as _output

sys.modules[__name__] = _output

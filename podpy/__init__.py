"""podpy: a rootless, daemonless, Podman-compatible container toolchain.

This module is imported by every role (CLI, monitor, helpers), so it imports nothing.
"""

__version__ = "0.1.0"

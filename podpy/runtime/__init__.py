"""The container runtime layer: the built-in OCI runtime, external runtimes, and their helpers."""

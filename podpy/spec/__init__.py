"""OCI runtime spec generation: turning image config and run options into config.json."""

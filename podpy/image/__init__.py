"""Image references, manifests, the registry client and pulling."""

"""Local storage: content-addressed blobs, unpacked layers, image records."""

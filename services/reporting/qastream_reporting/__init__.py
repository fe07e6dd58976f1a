"""qastream reporting service."""

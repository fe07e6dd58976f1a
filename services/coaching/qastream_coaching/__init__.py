"""qastream coaching service."""

"""Example platform-team consumer of the qastream event stream (FastStream)."""

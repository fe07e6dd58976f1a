"""The pipeline's services, in start order. A new service joins with one line here: `qa up` starts
`python -m qastream_<name>` and the topic registry gives it a dead-letter topic."""

from __future__ import annotations

SERVICES: tuple[str, ...] = (
    "ingest",
    "sampler",
    "scoring",
    "coaching",
    "reporting",
)

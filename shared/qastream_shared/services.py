"""The pipeline's services, in start order. A new service joins with one line here: `qa up` starts
`python -m qastream_<name>` and the topic registry gives it a dead-letter topic."""

from __future__ import annotations

import importlib
from types import ModuleType

SERVICES: tuple[str, ...] = (
    "ingest",
    "sampler",
    "scoring",
    "coaching",
    "reporting",
)


def app_module(name: str) -> ModuleType:
    """The service's `qastream_<name>.app`, holding its ServiceSpec (`SPEC`) and app factory (`build`)."""
    if name not in SERVICES:
        raise KeyError(f"unknown service {name!r}; the services are {', '.join(SERVICES)}")
    return importlib.import_module(f"qastream_{name}.app")

"""The services as processes: `python -m qastream_<name>` for each name in SERVICES, each on its own port,
pointed at the stack's database and broker."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

from qastream_shared.services import SERVICES
from qastream_shared.stack.state import READY_TIMEOUT_S, StateDir, free_port, port_open, repo_root, wait_until


def has_main(module: str) -> bool:
    return importlib.util.find_spec(f"{module}.__main__") is not None


class ServiceProcesses(StateDir):
    """Starts and stops the services this state dir runs."""

    def start_services(self, names: Sequence[str] = SERVICES) -> dict[str, str]:
        """Start ``python -m qastream_<name>`` for each name that has a __main__; returns name → HTTP URL."""
        state = self.state()
        db, kafka = state["postgres"]["url"], state["kafka"]["bootstrap"]
        urls: dict[str, str] = {}
        with self._locked():
            services: dict[str, Any] = self.state().get("services", {})
            for name in names:
                module = f"qastream_{name}"
                if importlib.util.find_spec(module) is None or not has_main(module):
                    self.report(f"warning: skipping {name}: {module}.__main__ does not exist yet")
                    continue
                port = int(services.get(name, {}).get("port") or free_port())
                url = f"http://127.0.0.1:{port}"
                services[name] = {"port": port, "url": url}
                self._update("services", services)
                urls[name] = url
                if self._owned(name) and port_open(port):
                    continue
                self.report(f"starting {name} on {url}")
                env = {
                    **os.environ,
                    "DATABASE_URL": db,
                    "KAFKA_BOOTSTRAP_SERVERS": kafka,
                    "QA_HTTP_PORT": str(port),
                    "QA_STACK_DIR": str(self.state_dir),
                }
                proc = self._spawn(name, [sys.executable, "-m", module], env, repo_root())
                wait_until(
                    functools.partial(port_open, port),
                    name,
                    READY_TIMEOUT_S,
                    proc.is_running,
                    self.log_path(name),
                )
        return urls

    def stop_services(self) -> list[str]:
        with self._locked():
            return [n for n in self.state().get("services", {}) if self._stop_owned(n)]

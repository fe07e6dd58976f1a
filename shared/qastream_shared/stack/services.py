"""The services as processes: `python -m qastream_<name>` for each name in SERVICES, each on its own port,
pointed at the stack's database and broker."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import secrets
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
        """Start ``python -m qastream_<name>`` for each name that has a __main__; returns name → HTTP URL.

        Every port is chosen before any service starts, so each one is told the others' URLs: the console
        (in reporting) calls them from the browser, and each allows the console's origin (CORS). They all
        share one session secret, so a console session is accepted by every service.
        """
        state = self.state()
        db, kafka = state["postgres"]["url"], state["kafka"]["bootstrap"]
        urls: dict[str, str] = {}
        with self._locked():
            services: dict[str, Any] = self.state().get("services", {})
            runnable = []
            for name in names:
                module = f"qastream_{name}"
                if importlib.util.find_spec(module) is None or not has_main(module):
                    self.report(f"warning: skipping {name}: {module}.__main__ does not exist yet")
                    continue
                port = int(services.get(name, {}).get("port") or free_port())
                services[name] = {"port": port, "url": f"http://127.0.0.1:{port}"}
                urls[name] = services[name]["url"]
                runnable.append(name)
            self._update("services", services)
            secret = self.state().get("session_secret") or secrets.token_urlsafe(32)
            self._update("session_secret", secret)
            console = urls.get("reporting", "")
            origins = f"{console},{console.replace('127.0.0.1', 'localhost')}" if console else ""
            shared_env = {
                "DATABASE_URL": db,
                "KAFKA_BOOTSTRAP_SERVERS": kafka,
                "QA_STACK_DIR": str(self.state_dir),
                "QA_SESSION_SECRET": secret,
                "QA_CORS_ORIGINS": origins,
                "QA_SERVICE_URLS": json.dumps(urls),
            }
            for name in runnable:
                port = services[name]["port"]
                if self._owned(name) and port_open(port):
                    continue
                self.report(f"starting {name} on {urls[name]}")
                env = {**os.environ, **shared_env, "QA_HTTP_PORT": str(port)}
                proc = self._spawn(name, [sys.executable, "-m", f"qastream_{name}"], env, repo_root())
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

"""The state dir of one stack: stack.json (ports, URLs, which parts are external), its lock, and the pid
files and logs of the processes it started."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

# A bound to fail on, not a wait: readiness is polled. A broker restarted late in the test suite loads
# every topic the suite made, and on a busy 2-core machine that restart took over 60 s (22 s to stop,
# 23 s to start the JVM, 29 s to publish its first metadata).
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0

Reporter = Callable[[str], None]


class StackError(RuntimeError):
    """A component could not be set up or started; the message says how to fix it."""


def quiet(_: str) -> None:
    return None


def repo_root(start: Path | None = None) -> Path:
    """The nearest ancestor holding uv.lock (the workspace root), else the start dir."""
    start = (start or Path.cwd()).resolve()
    for d in (start, *start.parents):
        if (d / "uv.lock").is_file():
            return d
    return start


def default_state_dir() -> Path:
    env = os.environ.get("QA_STACK_DIR")
    return Path(env).resolve() if env else repo_root() / ".qa"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(
    ready: Callable[[], bool], what: str, deadline_s: float, alive: Callable[[], bool], log: Path
) -> None:
    """Poll ``ready`` until it holds; fail fast with the log tail when the process died or time ran out."""
    deadline = time.monotonic() + deadline_s
    while not ready():
        if not alive():
            raise StackError(f"{what} exited during start-up; last lines of {log}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {deadline_s:.0f}s; last lines of {log}:\n{tail(log)}")
        time.sleep(0.1)


class StateDir:
    """The on-disk state of one stack; the parts of the launcher build on it."""

    def __init__(self, state_dir: Path | None = None, report: Reporter = quiet) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.report = report
        self.logs_dir = self.state_dir / "logs"
        self.restarted: list[str] = []  # servers of ours found dead (not stopped by us) and started again

    # --- persisted state ---

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    def state(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {}
        loaded: dict[str, Any] = json.loads(self.state_file.read_text())
        return loaded

    def _save(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    def _update(self, key: str, value: Any) -> None:
        state = self.state()
        state[key] = value
        self._save(state)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise launcher operations on one state dir across processes (two pytest runs, qa up twice)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def _pid_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.pid"

    def _write_pid(self, name: str, proc: psutil.Process) -> None:
        self._pid_file(name).write_text(f"{proc.pid} {proc.create_time()}\n")

    def _owned(self, name: str) -> psutil.Process | None:
        """The live process recorded for ``name``, if its pid still belongs to the process we started."""
        path = self._pid_file(name)
        if not path.exists():
            return None
        pid_text, _, created = path.read_text().partition(" ")
        try:
            proc = psutil.Process(int(pid_text))
            if abs(proc.create_time() - float(created)) > 0.01 or proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except (psutil.Error, ValueError):
            return None
        return proc

    def _stop_owned(self, name: str) -> bool:
        proc = self._owned(name)
        self._pid_file(name).unlink(missing_ok=True)
        if proc is None:
            return False
        self.report(f"stopping {name} (pid {proc.pid})")
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
            _, alive = psutil.wait_procs([proc], timeout=STOP_TIMEOUT_S)
            for p in alive:
                p.kill()
        return True

    def _recorded_own(self, component: str, address_key: str, address: str) -> bool:
        """Whether the state file records ``address`` as a server this state dir started, alive or not:
        an exported `qa env` names our own servers, and a dead one of ours is restarted, not taken as
        someone else's."""
        recorded = self.state().get(component, {})
        return not recorded.get("external", True) and recorded.get(address_key) == address

    def _spawn(self, name: str, argv: Sequence[str], env: dict[str, str], cwd: Path) -> psutil.Process:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(name), "ab") as log:
            # A new session: the process outlives `qa up` and a Ctrl-C in the shell does not reach it.
            popen = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = psutil.Process(popen.pid)
        self._write_pid(name, proc)
        return proc

"""The stack's own PostgreSQL: initdb, start and stop with the system's binaries (as the `postgres` user
when root runs us), in a data dir under the state dir."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import psutil

from qastream_shared.settings import Settings
from qastream_shared.stack.state import StackError, StateDir, free_port, port_open, tail
from qastream_shared.stack.tools import postgres_bindir

DB_NAME = "qastream"
DB_USER = "qastream"


def is_root() -> bool:
    return os.geteuid() == 0


def sqlalchemy_url(url: str) -> str:
    """Any postgres:// or postgresql:// URL in the postgresql+asyncpg:// form every service uses."""
    return Settings.model_validate({"DATABASE_URL": url}).database_url


class PostgresServer(StateDir):
    """Starts, stops and recognises the PostgreSQL this state dir runs."""

    @functools.cached_property
    def pg_home(self) -> Path:
        """PGDATA's parent: in the state dir, unless root runs us and the `postgres` user cannot reach it
        (a checkout under /root); then a private dir under /var/tmp keyed by the state dir."""
        home = self.state_dir / "postgres"
        if not is_root():
            return home
        reachable = self.state_dir
        while not reachable.exists():
            reachable = reachable.parent
        if self._pg_run(["test", "-x", str(reachable)]).returncode == 0:
            return home
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        return Path("/var/tmp") / f"qastream-pg-{digest}"

    @property
    def pg_data(self) -> Path:
        return self.pg_home / "data"

    def _pg_log(self) -> Path:
        """The server log, written by the `postgres` user; logs/postgres.log is it or a link to it."""
        link = self.log_path("postgres")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if self.pg_home.is_relative_to(self.state_dir):
            link.touch()
            return link
        log = self.pg_home / "postgres.log"
        log.touch()
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(log)
        return log

    def _pg_run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        # initdb and postgres refuse to run as root: run them as the `postgres` system user instead.
        full = ["runuser", "-u", "postgres", "--", *argv] if is_root() else argv
        return subprocess.run(full, capture_output=True, text=True, stdin=subprocess.DEVNULL)

    def _pg_pid(self) -> int | None:
        pidfile = self.pg_data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            lines = pidfile.read_text().splitlines()
            pid = int(lines[0])
            if psutil.pid_exists(pid) and Path(lines[1]).resolve() == self.pg_data.resolve():
                return pid
        return None

    def ensure_postgres(self) -> str:
        """Return the database URL: DATABASE_URL when set and not ours, else our own server (started, or
        restarted on its port, if needed)."""
        external = os.environ.get("DATABASE_URL")
        url = sqlalchemy_url(external) if external else None
        if url is not None and not self._recorded_own("postgres", "url", url):
            if not self.owns_postgres():  # never forget a server of ours that is still running
                self._update("postgres", {"external": True, "url": url})
            return url
        with self._locked():
            return self._start_postgres()

    def start_postgres(self) -> str:
        with self._locked():
            return self._start_postgres()

    def _start_postgres(self) -> str:
        prior = self.state().get("postgres", {})
        port = int(prior.get("port") or os.environ.get("QA_PG_PORT") or free_port())
        url = f"postgresql+asyncpg://{DB_USER}@127.0.0.1:{port}/{DB_NAME}"
        self._update("postgres", {"external": False, "port": port, "url": url})
        if self._pg_pid() and port_open(port):
            return url
        if (self.pg_data / "postmaster.pid").exists():  # a clean stop removes it: a leftover means a crash
            self.report(
                f"PostgreSQL on port {port} is not running (it was not stopped cleanly): restarting it"
            )
            self.restarted.append("postgres")
        bindir = postgres_bindir()
        fresh = not (self.pg_data / "PG_VERSION").exists()
        if fresh:
            self.report(f"initialising PostgreSQL in {self.pg_data}")
            shutil.rmtree(self.pg_data, ignore_errors=True)
            self.pg_data.mkdir(parents=True, mode=0o700)
        log = self._pg_log()
        if is_root():
            shutil.chown(self.pg_data, "postgres", "postgres")
            shutil.chown(log, "postgres", "postgres")
        if fresh:
            done = self._pg_run(
                [str(bindir / "initdb"), "-D", str(self.pg_data), "--auth=trust", "-U", DB_USER, "-E", "UTF8"]
            )
            if done.returncode != 0:
                raise StackError(f"initdb failed:\n{done.stdout}{done.stderr}")
        self.report(f"starting PostgreSQL on 127.0.0.1:{port}")
        opts = f"-p {port} -k {self.pg_data} -c listen_addresses=127.0.0.1 -c max_connections=200"
        # pg_ctl -w is the readiness wait: it returns once the server accepts connections.
        done = self._pg_run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.pg_data),
                "-l",
                str(log),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        if done.returncode != 0:
            raise StackError(f"PostgreSQL failed to start:\n{done.stdout}{done.stderr}\n{tail(log)}")
        if fresh:
            done = self._pg_run(
                [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", DB_USER, DB_NAME]
            )
            if done.returncode != 0:
                raise StackError(f"createdb failed:\n{done.stdout}{done.stderr}")
        return url

    def stop_postgres(self) -> bool:
        """Stop our PostgreSQL (fast shutdown); False when it was not running or is external."""
        with self._locked():
            if self._pg_pid() is None:
                return False
            self.report("stopping PostgreSQL")
            done = self._pg_run(
                [str(postgres_bindir() / "pg_ctl"), "-D", str(self.pg_data), "-m", "fast", "-w", "stop"]
            )
            if done.returncode != 0:
                raise StackError(f"pg_ctl stop failed:\n{done.stdout}{done.stderr}")
            return True

    def owns_postgres(self, url: str | None = None) -> bool:
        """True when this state dir started the PostgreSQL at ``url`` (any, if None) and it is running."""
        pg = self.state().get("postgres", {})
        if pg.get("external", True) or self._pg_pid() is None:
            return False
        return url is None or sqlalchemy_url(url) == pg["url"]

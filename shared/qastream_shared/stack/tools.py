"""The tools the stack needs from the machine: Java, PostgreSQL's server binaries, and the Kafka jars
(resolved once per version with Maven into the user cache)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from qastream_shared.stack.state import Reporter, StackError, quiet

KAFKA_VERSION = "3.9.1"
SLF4J_VERSION = "1.7.36"


def kafka_cache_dir(version: str = KAFKA_VERSION) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "qastream" / f"kafka-{version}"


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


def ensure_kafka_libs(version: str = KAFKA_VERSION, report: Reporter = quiet) -> Path:
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

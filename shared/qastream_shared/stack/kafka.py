"""The stack's own Kafka: one KRaft broker+controller from the Maven-resolved jars, its storage formatted
once, topics never auto-created (the topic registry creates them)."""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from pathlib import Path

from qastream_shared.stack.state import (
    READY_TIMEOUT_S,
    StackError,
    StateDir,
    free_port,
    port_open,
    wait_until,
)
from qastream_shared.stack.tools import KAFKA_VERSION, ensure_kafka_libs, java_bin

LOG4J = """log4j.rootLogger=WARN, stdout
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


def server_properties(port: int, cport: int, data: Path) -> str:
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


class KafkaBroker(StateDir):
    """Starts, stops and recognises the broker this state dir runs."""

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    def ensure_kafka(self) -> str:
        """Return the bootstrap servers: KAFKA_BOOTSTRAP_SERVERS when set and not ours, else our own broker
        (started, or restarted on its port, if needed)."""
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if external and not self._recorded_own("kafka", "bootstrap", external):
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
        if self._pid_file("kafka").exists():  # `down` removes it: a leftover means the broker died
            self.report(
                f"Kafka on {bootstrap} is not running (it was not stopped by `qa down`): restarting it"
            )
            self.restarted.append("kafka")
        java = java_bin()
        libs = ensure_kafka_libs(report=self.report)
        classpath = f"{libs}/*"
        data = self.kafka_dir / "data"
        props = self.kafka_dir / "server.properties"
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        props.write_text(server_properties(port, cport, data))
        (self.kafka_dir / "log4j.properties").write_text(LOG4J)
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
        wait_until(lambda: port_open(port), "Kafka", READY_TIMEOUT_S, proc.is_running, self.log_path("kafka"))
        return bootstrap

    def stop_kafka(self) -> bool:
        with self._locked():
            return self._stop_owned("kafka")

    def restart_kafka(self) -> str:
        """Stop and start the broker on the same port and data dir (fault tests)."""
        with self._locked():
            self._stop_owned("kafka")
            return self._start_kafka()

    def owns_kafka(self, bootstrap: str | None = None) -> bool:
        """True when this state dir started the broker at ``bootstrap`` (any, if None) and it is running."""
        kafka = self.state().get("kafka", {})
        if kafka.get("external", True) or self._owned("kafka") is None:
            return False
        return bootstrap is None or bootstrap == kafka["bootstrap"]

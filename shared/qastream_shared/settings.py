"""Settings shared by every process, validated once at start (pydantic-settings, env prefix QA_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", extra="ignore", populate_by_name=True)

    # The two standard variables win over QA_-prefixed ones so tools and CI can point us at servers.
    # Every field's description is the operations guide's text for it (`qa docs settings --write`).
    database_url: str = Field(
        default="postgresql+asyncpg://qastream@127.0.0.1:5432/qastream",
        validation_alias="DATABASE_URL",
        description="PostgreSQL URL (postgresql:// or postgresql+asyncpg://); each service uses its own schema. A secret: it holds the password.",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias="KAFKA_BOOTSTRAP_SERVERS",
        description="Kafka bootstrap servers, comma-separated host:port.",
    )
    topic_prefix: str = Field(
        default="", description="Prepended to every topic and consumer group name, e.g. to share a cluster."
    )
    db_schema: str | None = Field(
        default=None,
        description="Overrides the service's own schema (its name). For tests and replays into fresh tables; leave unset in production.",
    )
    topic_partitions: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="Partitions of each consumed topic when `qa migrate` creates it (0: the registry's count). A consumer never runs more useful replicas than this.",
    )
    topic_replication_factor: int = Field(
        default=1, ge=1, le=10, description="Replication factor of topics created by `qa migrate`."
    )
    topic_min_insync_replicas: int = Field(
        default=1,
        ge=1,
        le=10,
        description="min.insync.replicas of created topics; with acks=all a write needs this many replicas.",
    )
    migrate_on_start: bool = Field(
        default=True,
        description="Run the service's migrations and create missing topics at start. Off where a `qa migrate` job does it and services run without DDL rights.",
    )
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP API listens on.")
    http_port: int = Field(default=0, ge=0, le=65535, description="Port of the HTTP API (0: any free port).")
    http_root_path: str = Field(
        default="",
        pattern=r"^(/[A-Za-z0-9._~-]+)*$",
        description="The path prefix a reverse proxy strips before forwarding (e.g. /api/scoring behind the Ingress), so the OpenAPI page links back through it.",
    )
    log_level: str = Field(default="INFO", description="Root log level.")
    log_json: bool = Field(default=True, description="JSON log lines carrying service, tenant and trace ids.")
    key_pepper: str = Field(
        default="qastream-dev-pepper",
        min_length=8,
        description="Mixed into API-key hashes so a stolen table of hashes cannot be brute-forced offline. A secret; the same value in every service.",
    )
    consumer_batch_size: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Records per consumer batch (one database transaction). A service may set its own default.",
    )
    consumer_batch_timeout_ms: int = Field(
        default=100, ge=1, le=60_000, description="How long a fetch waits to fill a batch."
    )
    consumer_batch_target_ms: int = Field(
        default=0,
        ge=0,
        le=60_000,
        description="A batch takes no more records than the consumer's recent pace processes in this time, so a backlog is worked off in batches of bounded latency (0: only the batch size bounds it). A service may set its own default.",
    )
    # A fetch returns as soon as any of its partitions has a record, so this long poll adds no wait while the
    # consumer's fetch ahead takes each fetch's records at once (every fetch then carries every partition). It
    # only bounds how often an idle consumer asks: at 20 ms the five idle services spent ~230 ms of CPU a
    # second on empty fetches and the broker ~115 answering them (~75 and ~27 at 500 ms).
    consumer_fetch_wait_ms: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Longest a fetch waits at the broker for new records: how often an idle consumer polls. A record arriving ends the wait.",
    )
    consumer_max_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Attempts of a failing (non-transient) batch before its faulty records are dead-lettered.",
    )
    consumer_backoff_max_s: float = Field(
        default=5.0, gt=0, description="Ceiling of the exponential backoff between retried batches."
    )
    # Heartbeats run on their own task, so a long batch does not count against the session timeout
    # (max_poll_interval covers that).
    consumer_session_timeout_ms: int = Field(
        default=8_000,
        ge=6_000,
        le=300_000,
        description="How long a dead replica's partitions wait before the group hands them to the others.",
    )
    consumer_heartbeat_ms: int = Field(
        default=1_000, ge=100, le=60_000, description="Consumer group heartbeat interval."
    )
    consumer_instance_id: str = Field(
        default="",
        description="Kafka static membership: a replica restarted with the same id (e.g. a StatefulSet pod name) gets its partitions back without a rebalance. Empty: dynamic membership.",
    )
    relay_batch_size: int = Field(
        default=1000, ge=1, le=50_000, description="Outbox rows the relay publishes per round trip."
    )
    producer_linger_ms: int = Field(
        default=5, ge=0, le=1000, description="How long the producer waits to fill a record batch."
    )
    # Every service of a deployment needs the same value. Unset, the sign-in answers 403 saying so and
    # session cookies are refused: no default a deployment could forget.
    session_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Signs browser sessions; the same value in every service. A secret. Unset: sign-in answers 403 and session cookies are refused.",
    )
    session_ttl_s: int = Field(
        default=8 * 3600, ge=60, le=30 * 24 * 3600, description="How long a browser session lasts."
    )
    auth_cache_ttl_s: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="How long a replica trusts an API key row it has read (per key, in memory) before reading it again. A key revoked through another replica is refused there within this time; on the replica (or tenant-directory copy) that applied the revocation, at once. 0: read the key on every request.",
    )
    db_pool_recycle_s: int = Field(
        default=600,
        ge=10,
        le=86_400,
        description="Pooled database connections older than this are replaced rather than reused (instead of a ping before every use).",
    )
    cors_origins: str = Field(
        default="",
        description="Origins (the console's) whose pages may call this service with credentials; comma-separated. Empty behind one Ingress (one origin).",
    )
    service_urls: dict[str, str] = Field(
        default_factory=dict,
        description="The console's map of service name to public base URL (JSON); empty when one Ingress serves all at one origin.",
    )
    shutdown_grace_s: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="On SIGTERM: time to finish the in-flight batch, commit and flush the outbox before exiting. Keep it below the orchestrator's grace period.",
    )
    otel_exporter: str = Field(
        default="none",
        pattern="^(none|console|otlp)$",
        description="Where traces go: none, console, or otlp (OTLP/HTTP to QA_OTEL_ENDPOINT).",
    )
    otel_endpoint: str = Field(
        default="http://127.0.0.1:4318",
        description="OpenTelemetry collector base URL for QA_OTEL_EXPORTER=otlp.",
    )

    @field_validator("database_url")
    @classmethod
    def _asyncpg_driver(cls, value: str) -> str:
        if value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://") :]
        if value.startswith("postgresql://"):
            value = "postgresql+asyncpg://" + value[len("postgresql://") :]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("DATABASE_URL must be a postgresql:// URL")
        return value

    @property
    def asyncpg_dsn(self) -> str:
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@lru_cache
def get_settings() -> Settings:
    return Settings()


def env_name(field: str) -> str:
    """The environment variable that sets a Settings field."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"QA_{field.upper()}"

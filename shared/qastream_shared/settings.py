"""Settings shared by every process, validated once at start (pydantic-settings, env prefix QA_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", extra="ignore", populate_by_name=True)

    # The two standard variables win over QA_-prefixed ones so tools and CI can point us at servers.
    database_url: str = Field(
        default="postgresql+asyncpg://qastream@127.0.0.1:5432/qastream",
        validation_alias="DATABASE_URL",
    )
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    topic_prefix: str = ""
    # Overrides the service's own schema; tests use it to isolate runs.
    db_schema: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535)
    log_level: str = "INFO"
    log_json: bool = True
    # Mixed into API-key hashes so a stolen table of hashes cannot be brute-forced offline.
    key_pepper: str = Field(default="qastream-dev-pepper", min_length=8)
    consumer_batch_size: int = Field(default=500, ge=1, le=10_000)
    consumer_batch_timeout_ms: int = Field(default=100, ge=1, le=60_000)
    consumer_max_attempts: int = Field(default=5, ge=1, le=100)
    consumer_backoff_max_s: float = Field(default=5.0, gt=0)
    # How long a dead replica's partitions wait before the group hands them to the others. Heartbeats run
    # on their own task, so a long batch does not count against it (max_poll_interval covers that).
    consumer_session_timeout_ms: int = Field(default=8_000, ge=6_000, le=300_000)
    consumer_heartbeat_ms: int = Field(default=1_000, ge=100, le=60_000)
    # Kafka static membership: a replica restarted with the same id (e.g. a StatefulSet pod name) gets its
    # partitions back without a rebalance. Empty: dynamic membership.
    consumer_instance_id: str = ""
    relay_batch_size: int = Field(default=1000, ge=1, le=50_000)
    producer_linger_ms: int = Field(default=5, ge=0, le=1000)
    # Signs browser sessions (sessions.py); every service of a deployment needs the same value. Unset, the
    # sign-in answers 403 saying so and session cookies are refused: no default a deployment could forget.
    session_secret: SecretStr | None = Field(default=None, min_length=32)
    session_ttl_s: int = Field(default=8 * 3600, ge=60, le=30 * 24 * 3600)
    # Origins (the console's) whose pages may call this service with credentials; comma-separated.
    cors_origins: str = ""
    # The console's map of service name -> public base URL; empty when one ingress serves all at one origin.
    service_urls: dict[str, str] = Field(default_factory=dict)
    otel_exporter: str = Field(default="none", pattern="^(none|console)$")

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

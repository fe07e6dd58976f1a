"""Operator settings of webhook delivery (env prefix QA_WEBHOOK_), validated at start."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qastream_shared.runtime import ServiceRuntime


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_WEBHOOK_", extra="ignore")

    # Networks exempt from the SSRF rule (JSON list of CIDRs), e.g. ["127.0.0.0/8"] for a receiver on this
    # host. Empty by default: loopback, link-local and private addresses are refused.
    allow_networks: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    max_attempts: int = Field(default=8, ge=1, le=50)
    backoff_base_s: float = Field(default=2.0, gt=0)
    backoff_max_s: float = Field(default=3600.0, gt=0)
    # Requests in flight at once, and at most this many to one webhook, so a slow receiver holds only its
    # own slots and never the other tenants' deliveries.
    concurrency: int = Field(default=32, ge=1, le=1000)
    per_webhook_concurrency: int = Field(default=4, ge=1, le=100)
    poll_s: float = Field(default=0.2, gt=0, le=10)

    @field_validator("allow_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            return [ip_network(v, strict=False) if isinstance(v, str) else v for v in value]
        return value


def webhook_settings(runtime: ServiceRuntime) -> WebhookSettings:
    """The runtime's webhook settings (tests put their own in runtime.components before start)."""
    found = runtime.components.get("webhook_settings")
    if not isinstance(found, WebhookSettings):
        found = runtime.components["webhook_settings"] = WebhookSettings()
    return found

"""The one settings object: every knob comes from a CITYSENSE_* environment variable.

Modules never read os.environ themselves, so the README's table is the whole truth
about configuration and tests can build a Settings with explicit values.
"""

from __future__ import annotations

import re
import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.limits import AGGREGATE_REFRESH_DAYS
from contracts.topics import CHIRPSTACK_STATUS_TOPICS, CHIRPSTACK_UP_TOPIC


class Settings(BaseSettings):
    """Runtime configuration; defaults suit a laptop running `make demo`."""

    model_config = SettingsConfigDict(env_prefix="CITYSENSE_", extra="ignore")

    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="Broker URL, mqtt://[user:pass@]host:port")
    mqtt_protocol: Literal["3.1.1", "5"] = Field(
        "5", description="MQTT protocol of the gateway session; 5 for Mosquitto/EMQX, 3.1.1 for amqtt"
    )
    mqtt_client_id: str = Field(
        "", description="Fixed id of this gateway's persistent session; empty = citysense-gateway-<host>-<instance>"
    )
    gateway_instance: str = Field(
        "1", pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="Name of this gateway instance on its host (systemd %i, compose service); part of the client id",
    )
    mqtt_shared_group: str = Field(
        "", description="Shared-subscription group ('citysense' to scale out over several gateways); empty = plain"
    )
    database_url: str = Field(
        "postgresql://citysense@127.0.0.1:5432/citysense", description="PostgreSQL/TimescaleDB URL"
    )
    database_read_url: str = Field(
        "", description="A streaming replica for every API read (writes, migrations stay on the primary); "
        "empty = CITYSENSE_DATABASE_URL",
    )
    accept_unknown_devices: bool = Field(True, description="Register unknown devices as unregistered (open data)")
    batch_max_messages: int = Field(5000, ge=1, le=100_000, description="Flush a batch at this many messages")
    batch_max_delay_ms: int = Field(
        100, ge=1, le=60_000, description="Flush a batch at most this many ms after its first message (sooner when "
        "the committer waits)"
    )
    queue_max_messages: int = Field(20_000, ge=100, description="Bound of the gateway's in-memory queue")
    gateway_metrics_port: int = Field(9108, ge=0, le=65535, description="Prometheus /metrics port (0 = off)")
    api_host: str = Field("127.0.0.1", description="API bind address")
    api_port: int = Field(8000, ge=1, le=65535, description="API port")
    api_latest_cache_s: float = Field(
        5.0, ge=0, le=300, description="Seconds the /v1/latest map is served from cache (0 = off)"
    )
    api_statement_timeout_ms: int = Field(
        5000, ge=100, le=600_000, description="Longest an API query may run; then it is cancelled with a 503"
    )
    api_pool_size: int = Field(10, ge=2, le=200, description="Database connections the API keeps for queries")
    api_pool_timeout_s: float = Field(
        10.0, gt=0, le=120, description="Longest a request waits for a free connection; then a 503"
    )
    api_max_concurrent_exports: int = Field(
        4, ge=1, le=1000, description="CSV exports and large readings served at once; more get a 429"
    )
    api_rate_limit_per_s: float = Field(
        50.0, ge=0, le=1_000_000, description="Read requests per second per client address (0 = no limit)"
    )
    api_rate_limit_burst: int = Field(
        500, ge=1, le=1_000_000, description="Read requests a client may make at once before the rate applies"
    )
    api_cors_origins: str = Field(
        "*", description="Comma-separated origins allowed to GET the open data from a browser ('' = CORS off)"
    )
    admin_token: str = Field("", description="Bearer token for admin endpoints (registration); empty = admin off")
    data_dir: Path = Field(Path(".citysense"), description="Where the embedded stack keeps its data")
    retention_days: int = Field(
        365, gt=AGGREGATE_REFRESH_DAYS,
        description="Raw readings older than this are dropped (aggregates kept); longer than the refresh window",
    )
    log_level: str = Field("INFO", description="Logging level")
    receipts: bool = Field(True, description="Publish commit receipts to devices (citysense/v1/{kind}/{id}/receipt)")
    receipt_interval_s: float = Field(
        2.0, ge=0.1, le=60, description="At most one receipt per device this often (coalesced)"
    )
    dead_letter_retention_days: int = Field(
        30, ge=1, le=3650, description="Dead letters older than this are deleted by `db maintain`"
    )
    new_devices_per_minute: int = Field(
        600, ge=0, le=1_000_000,
        description="Open network: new ids a gateway registers per minute; the excess is dead-lettered (0 = none)",
    )
    require_timescaledb: bool = Field(
        False, description="Refuse to migrate onto plain PostgreSQL (production: fail instead of falling back)"
    )
    aqi_default_scale: str = Field(
        "tw_moenv_2025", pattern=r"^[a-z0-9_]{1,64}$",
        description="AQI scale every AQI route uses when the request names none (keys: GET /v1/aqi/scales)",
    )
    test_pg_bin: Path | None = Field(
        None, description="PostgreSQL server bin directory for `make test` and `citysense bench` (default: Debian's)"
    )
    test_pg_preload: str = Field(
        "", description="shared_preload_libraries of those servers: 'timescaledb' runs them on TimescaleDB"
    )
    gateway_metrics_host: str = Field(
        "127.0.0.1", description="Address /metrics listens on (0.0.0.0 where Prometheus runs in another container)"
    )
    alerts_interval_s: float = Field(30.0, ge=0.2, le=3600, description="Seconds between two alert evaluations")
    alerts_metrics_port: int = Field(9110, ge=0, le=65535, description="The alert evaluator's /metrics port (0 = off)")
    alerts_metrics_host: str = Field(
        "127.0.0.1", description="Address the alert evaluator's /metrics listens on (0.0.0.0 for another container)"
    )
    alerts_rules_file: Path | None = Field(
        None, description="The alert rules (TOML, deploy/alerts/rules.example.toml); unset = the built-in defaults"
    )
    alerts_webhook_secret: str = Field(
        "", description="HMAC-SHA256 key signing every alert webhook (X-Citysense-Signature)"
    )
    alerts_smtp_url: str = Field(
        "", description="smtp://[user:pass@]host:port for alert e-mail, always with STARTTLS; empty = no e-mail"
    )
    alerts_smtp_from: str = Field("citysense@localhost", description="From address of alert e-mail")
    alerts_smtp_ca_file: Path | None = Field(None, description="CA bundle trusted for the SMTP server's STARTTLS")
    alerts_email_digest_s: float = Field(
        300.0, ge=0, le=86_400, description="At most one alert e-mail per recipient this often (a digest)"
    )
    alerts_delivery_attempts: int = Field(
        8, ge=1, le=100, description="Tries of one webhook/e-mail/MQTT message before it is dead-lettered"
    )
    alerts_retry_base_s: float = Field(2.0, gt=0, le=3600, description="First retry delay; doubles with each try")
    chirpstack_topics: str = Field(
        ",".join((CHIRPSTACK_UP_TOPIC, *CHIRPSTACK_STATUS_TOPICS)),
        description="ChirpStack v4 event topics the gateway subscribes to (comma-separated; empty = no LoRaWAN)",
    )
    map_tiles: str = Field(
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="Tile URL template of the /map base layer; empty = only the bundled Taiwan outline (offline)",
    )
    map_tiles_attribution: str = Field(
        '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors',
        description="Attribution shown for CITYSENSE_MAP_TILES (HTML, as the tile provider requires)",
    )
    local_timezone: str = Field(
        "Asia/Taipei", description="The city's time zone: a school's 'today' and the spreadsheet export's times"
    )

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: str) -> str:
        if not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError(f"CITYSENSE_MQTT_URL must start with mqtt:// or mqtts://, got {value!r}")
        return value

    @model_validator(mode="after")
    def _unique_client_id(self) -> Settings:
        """Two replicas with one client id evict each other's session; derived from the host
        name and the instance name, the default differs between replicas by construction."""
        if not self.mqtt_client_id:
            host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
            self.mqtt_client_id = f"citysense-gateway-{host}-{self.gateway_instance}"
        return self

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"CITYSENSE_DATABASE_URL must start with postgresql://, got {value!r}")
        return value

    @field_validator("database_read_url")
    @classmethod
    def _read_db_scheme(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"CITYSENSE_DATABASE_READ_URL must be empty or start with postgresql://, got {value!r}")
        return value

    @property
    def api_read_url(self) -> str:
        """Where the API reads: the replica when one is set, else the primary."""
        return self.database_read_url or self.database_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process from the environment."""
    return Settings()

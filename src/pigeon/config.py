"""Settings: the one place that reads ``PIGEON_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pigeon.errors import ConfigurationError, PigeonError
from pigeon.store.engine import DatabaseUrl

#: upper bounds of durations: far above any sensible value, far below a timedelta's range
_HOUR = 3600
_DAY = 24 * _HOUR
#: the levels PIGEON_LOG_LEVEL takes (Python's logging levels)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """Everything Pigeon can be configured with; see the README's table."""

    # no NaN or infinity: every duration ends up in a timedelta or a sleep
    model_config = SettingsConfigDict(env_prefix="PIGEON_", extra="ignore", allow_inf_nan=False)

    data_dir: Path = Path("pigeon-data")
    #: ``sqlite:///path/to/file.db`` or ``postgresql://user@host:5432/db``;
    #: empty means ``<data_dir>/pigeon.db``
    database_url: str = ""
    #: ``sqlite:///path/to/file.db`` (the database's own file) or
    #: ``kafka://host:9092[,host:9092]``; empty means the database's SQLite file
    bus_url: str = ""
    #: partitions of new topics: the most consumers of one group that can work at once
    bus_partitions: int = Field(default=8, ge=1, le=256)
    #: partitions of new Kafka topics (sized for scale-out); 0 means bus_partitions
    kafka_partitions: int = Field(default=12, ge=0, le=10_000)
    kafka_replication_factor: int = Field(default=1, ge=1, le=32)
    #: the idempotent producer (on for real Kafka; brokers without it need it off)
    kafka_idempotence: bool = True
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000, le=_HOUR * 1000)
    #: how long the broker may hold an empty fetch (a long poll: an idle consumer
    #: costs nothing, and Kafka answers at once when a message arrives)
    kafka_fetch_max_wait_ms: int = Field(default=500, ge=0, le=60_000)
    #: with a PostgreSQL store: idle consumers doze, and publishers wake them with
    #: NOTIFY (see pigeon.bus.kafka_doorbell); off: consumers long-poll instead
    kafka_doorbell: bool = True
    #: with the doorbell: how long the broker may hold a fetch while messages flow
    kafka_awake_fetch_wait_ms: int = Field(default=10, ge=1, le=60_000)
    #: migrate the database on start instead of refusing an out-of-date schema
    auto_migrate: bool = False
    #: seconds a worker keeps a partition without renewing it (kill -9 recovery time)
    bus_lease_seconds: float = Field(default=5.0, gt=0, le=_HOUR)
    #: fallback: how often an idle consumer looks for new events if no wake-up came
    #: (commits wake consumers at once, in this process and, by a doorbell, in others)
    bus_poll_interval_ms: float = Field(default=2000.0, gt=0, le=_HOUR * 1000)
    #: the status projector, usage meter and dead-letter recorder read new events at
    #: most this often under steady traffic (fewer, bigger transactions: on Kafka +
    #: PostgreSQL 100 ms instead of 50 halved their CPU at 155 SMS/s on 2 cores)
    bus_linger_ms: float = Field(default=100.0, ge=0, le=10_000)
    #: the sender's own, short: under steady traffic a request waits at most this long
    #: for others to share its transactions; after a quiet spell it is read at once
    sender_linger_ms: float = Field(default=10.0, ge=0, le=1_000)
    #: Kafka: under steady traffic the outbox relay claims new rows at most this often
    #: (one claim, produce and commit for several commits' rows); after a quiet spell
    #: it claims at once
    relay_linger_ms: float = Field(default=20.0, ge=0, le=1_000)
    #: embedded bus: how long a log row is kept once every group has read it (Kafka: the
    #: topics' own retention.ms); 0 = delete it as soon as every group has. Records of
    #: processed events are kept this long plus an hour: on Kafka, at least the topics'
    #: retention.ms (an event can be delivered again while it is in the log)
    bus_retention_hours: float = Field(default=24.0, ge=0, le=24 * 366)
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    #: the URL the provider calls back on; empty means http://api_host:api_port
    public_url: str = ""
    max_request_bytes: int = Field(default=64 * 1024, gt=0)
    #: the body limit of POST /v1/notifications:batch (1,000 notifications)
    max_batch_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    #: how long an Idempotency-Key is remembered (Stripe-style: at least a day)
    idempotency_ttl_hours: float = Field(default=24.0, gt=0, le=24 * 366)
    #: final notifications (with their timeline and attempts) are deleted this long after
    #: their last change; 0 keeps them forever
    notification_retention_days: float = Field(default=30.0, ge=0, le=3660)
    #: how often the status-projector worker runs a retention pass (one right after start)
    retention_interval_seconds: float = Field(default=300.0, gt=0, le=_DAY)
    #: rows one retention transaction deletes at most (the write lock is held that long)
    retention_chunk_rows: int = Field(default=1000, ge=1, le=100_000)

    sms_provider_url: str = "http://127.0.0.1:8025"
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_auth_token: str = "sandbox-auth-token"
    sms_from: str = "+15005550006"
    provider_timeout_seconds: float = Field(default=10.0, gt=0, le=_HOUR)
    #: failover list, a JSON array of {"name","url","account_sid","auth_token","from"};
    #: empty means one provider from the four settings above, named "twilio"
    sms_providers: str = ""
    #: consecutive transient failures that open a provider's circuit breaker
    breaker_failure_threshold: int = Field(default=5, ge=1)
    #: how long an open breaker waits before a half-open probe
    breaker_reset_seconds: float = Field(default=30.0, gt=0, le=_DAY)
    #: outbound pacing per sender number, shared by this machine's workers; 0 = unpaced
    #: (about 1/s for a US long code, 100/s for a short code)
    sms_rate_per_second: float = Field(default=0.0, ge=0, le=1_000_000)
    sms_rate_burst: int = Field(default=1, ge=1)
    #: a notification still 'sent' this long gets its status fetched from the provider
    #: (its final callback may have been lost while the API was down)
    status_poll_after_seconds: float = Field(default=300.0, gt=0, le=30 * _DAY)
    status_poll_interval_seconds: float = Field(default=30.0, gt=0, le=_DAY)

    sms_max_attempts: int = Field(default=10, ge=1)
    retry_base_seconds: float = Field(default=1.0, gt=0, le=_DAY)
    retry_max_seconds: float = Field(default=300.0, gt=0, le=30 * _DAY)
    sender_concurrency: int = Field(default=64, ge=1)
    #: how much lower than the API a worker process runs when they share the cores
    #: (added to its niceness, 0-19): under a burst the API answers first, and the log
    #: holds what the workers have not sent yet; with cores to spare it changes nothing.
    #: 5, measured: 10 gave no more accepts, but a worker holding the write lock was
    #: preempted for longer (split drain over a million-row history: 0.79 x, at 5: 1.04 x)
    worker_nice: int = Field(default=5, ge=0, le=19)

    #: status webhooks: attempts per delivery and their backoff (Retry-After honoured)
    webhook_max_attempts: int = Field(default=12, ge=1, le=1000)
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0, le=_DAY)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0, le=30 * _DAY)
    #: how long one webhook request may take before it counts as failed
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    #: webhook requests in flight at once, per dispatcher process (over every endpoint)
    webhook_concurrency: int = Field(default=128, ge=1, le=4096)
    #: an endpoint whose every attempt failed for this long is disabled (with the reason)
    webhook_disable_after_hours: float = Field(default=72.0, gt=0, le=24 * 366)

    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = Field(default=8025, ge=0, le=65535)

    #: 'pigeon worker' serves its own Prometheus metrics on this port (0: none); the API
    #: (and 'pigeon run', for all its processes) serves them at /metrics on its own port
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    #: where 'pigeon status' reads metrics; empty means the API's: http://api_host:api_port/metrics
    metrics_url: str = ""
    #: set by 'pigeon run' in the environment of its children: the folder where every
    #: process of the run writes its metrics, summed up by the API's /metrics
    metrics_dir: str = ""

    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"
    #: one structured line per API request (method, route, status, duration); off: none
    access_log: bool = False

    #: 'pigeon run' runs its workers in a child process (its own GIL: on a machine
    #: with more than one core, more SMS per second); false: one process
    run_worker_processes: bool = True
    #: set by 'pigeon run' in the environment of its children: they stop with it
    run_parent_pid: int = Field(default=0, ge=0)

    @field_validator("data_dir")
    @classmethod
    def _a_folder(cls, value: Path) -> Path:
        try:
            a_file = value.exists() and not value.is_dir()
        except OSError as exc:  # a name too long, a loop of links
            raise ValueError(f"cannot be used as a folder: {exc.strerror}") from None
        if a_file:
            raise ValueError(f"{str(value)!r} is a file, not a folder")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r}; use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("notification_retention_days")
    @classmethod
    def _covers_the_log(cls, value: float, info: ValidationInfo) -> float:
        log_hours = info.data.get("bus_retention_hours")
        if value and isinstance(log_hours, float) and value * 24 < log_hours:
            raise ValueError(
                f"must be 0 (keep forever) or at least PIGEON_BUS_RETENTION_HOURS "
                f"({log_hours:g} h): a request still in the log may be delivered again, "
                "and its notification must still be there"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value:
            try:
                DatabaseUrl.parse(value)
            except PigeonError as exc:
                raise ValueError(getattr(exc, "reason", str(exc))) from None
        return value

    @field_validator("metrics_dir")
    @classmethod
    def _existing_folder(cls, value: str) -> str:
        if value and not Path(value).is_dir():
            raise ValueError(f"{value!r} is not a folder ('pigeon run' sets this for its children)")
        return value

    @field_validator("metrics_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL; e.g. http://127.0.0.1:8000/metrics")
        return value

    @field_validator("bus_url")
    @classmethod
    def _known_bus(cls, value: str) -> str:
        if value and not value.startswith(("sqlite:///", "kafka://")):
            scheme = value.split(":", 1)[0] if ":" in value else value
            raise ValueError(
                f"unsupported bus URL scheme {scheme!r}; "
                "use sqlite:///path/to/pigeon.db or kafka://host:9092[,host:9092]"
            )
        return value

    @property
    def database(self) -> DatabaseUrl:
        """The store's database."""
        return DatabaseUrl.parse(self.database_url or f"sqlite:///{self.data_dir / 'pigeon.db'}")

    @property
    def database_path(self) -> Path:
        """The SQLite file that holds the store (SQLite stores only)."""
        return self.database.path

    @property
    def uses_kafka(self) -> bool:
        """True when events travel through Kafka (and the outbox relay)."""
        return self.bus_url.startswith("kafka://")

    @property
    def bus_path(self) -> Path:
        """The SQLite file that holds the event log (the store's by default)."""
        if self.bus_url:
            return Path(self.bus_url.removeprefix("sqlite:///"))
        return self.database_path

    @property
    def status_metrics_url(self) -> str:
        """Where 'pigeon status' reads metrics: the setting, or this API's /metrics."""
        host = "127.0.0.1" if self.api_host in ("0.0.0.0", "::", "") else self.api_host
        host = f"[{host}]" if ":" in host else host
        return self.metrics_url or f"http://{host}:{self.api_port}/metrics"

    @property
    def callback_base_url(self) -> str:
        """Base URL the provider's status callbacks are sent to."""
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, turning mistakes into one clear line."""
    from pydantic import ValidationError as PydanticValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        name = "PIGEON_" + str(first["loc"][0]).upper() if first["loc"] else "PIGEON_*"
        # pydantic prefixes our validators' messages with "Value error, "
        raise ConfigurationError(name, first["msg"].removeprefix("Value error, ")) from exc

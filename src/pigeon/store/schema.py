"""Tables of the store (SQLAlchemy Core; the same tables on SQLite and PostgreSQL).

The schema is owned by the Alembic migrations in ``pigeon/store/migrations``;
a change here needs a new revision there (``tests`` check that they agree).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # limits (NULL: none); see pigeon.api.account_limits
    Column("rate_per_second", Integer, nullable=True),
    Column("rate_burst", Integer, nullable=True),
    Column("monthly_segment_quota", BigInteger, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    # SHA-256 of the key: keys are 190-bit random, so a fast hash is safe to store
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # admin keys may also operate the dead-letter queue (/v1/admin/...)
    Column("is_admin", Boolean, nullable=False, server_default=false()),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(20), nullable=False),
    Column("from_number", String(20), nullable=True),
    Column("body", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("segments", Integer, nullable=False),
    Column("encoding", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("provider", String(64), nullable=True),
    Column("provider_message_id", String(64), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # while it waits for a retry or an open circuit: when it is tried next
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Index("notifications_account_created", "account_id", "created_at"),
    Index("notifications_provider_message", "provider_message_id"),
)

timeline = Table(
    "timeline",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("notification_id", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("detail", Text, nullable=False),
    Index("timeline_notification", "notification_id", "at"),
)

send_attempts = Table(
    "send_attempts",
    metadata,
    Column("notification_id", String(40), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("provider", String(64), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # started | sent | transient | permanent
    Column("outcome", String(16), nullable=False),
    Column("provider_message_id", String(64), nullable=True),
    Column("error", Text, nullable=True),
    # status callbacks look notifications up by the provider's id
    Index("send_attempts_provider_message", "provider_message_id"),
)

usage_daily = Table(
    "usage_daily",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("messages", Integer, nullable=False),
    Column("segments", Integer, nullable=False),
)

processed_events = Table(
    "processed_events",
    metadata,
    Column("consumer", String(40), primary_key=True),
    Column("event_id", String(40), primary_key=True),
)

# Status callbacks that arrived before the sender recorded the provider's id
# (the provider can call back before our own write commits): kept and applied
# when the id is recorded, instead of being lost.
pending_callbacks = Table(
    "pending_callbacks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("provider_message_id", String(64), nullable=False, index=True),
    Column("params", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

# The transactional outbox (used when the bus is Kafka): events written in the
# same transaction as the state they describe; the outbox relay publishes them
# in id order and deletes them once the broker has acknowledged them.
outbox = Table(
    "outbox",
    metadata,
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),  # SQLite: the rowid
        primary_key=True,
        autoincrement=True,
    ),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Idempotency-Key of POST /v1/notifications, per account: the first request's
# body hash and response, so a retried request gets the same answer and id.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("notification_id", String(40), nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("idempotency_keys_created", "created_at"),
)

# Dead letters, recorded from the dead-letter topics by the dead-letter
# recorder, so operators can list, inspect and replay them on either bus.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", String(40), primary_key=True),
    # where the dead letter sits in its dead-letter topic: recording is idempotent
    Column("dead_topic", String(200), nullable=False),
    Column("dead_partition", Integer, nullable=False),
    Column("dead_offset", BigInteger, nullable=False),
    Column("original_topic", String(200), nullable=False),
    Column("consumer_group", String(200), nullable=False),
    Column("event_type", String(64), nullable=True),
    Column("event_id", String(40), nullable=True),
    Column("account_id", String(40), nullable=True),
    Column("notification_id", String(40), nullable=True),
    Column("key", String(200), nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("reason", Text, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("dead_at", DateTime(timezone=True), nullable=False),
    Column("replayed_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("dead_topic", "dead_partition", "dead_offset", name="dead_letters_position"),
    Index("dead_letters_dead_at", "dead_at"),
    Index("dead_letters_account", "account_id", "dead_at"),
)

# Status webhooks (issue 11): each account's endpoints, and one delivery per
# (endpoint, status event) written by the webhook dispatcher; see pigeon.store.webhooks.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("url", Text, nullable=False),
    # a JSON list of event type names; empty: every status event
    Column("event_types", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("secret", String(100), nullable=False),
    # while a rotation's grace period lasts, the old secret signs too
    Column("previous_secret", String(100), nullable=True),
    Column("previous_secret_expires_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    Column("disabled_reason", Text, nullable=True),
    # since when every attempt has failed (None: the last one succeeded)
    Column("failing_since", DateTime(timezone=True), nullable=True),
    Index("webhook_endpoints_account", "account_id", "created_at"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    # the order deliveries were written in, which is the log's order per notification
    Column(
        "seq",
        BigInteger().with_variant(Integer, "sqlite"),  # SQLite: the rowid
        primary_key=True,
        autoincrement=True,
    ),
    # the Standard Webhooks message id (webhook-id), the same on every attempt
    Column("id", String(40), nullable=False),
    Column("endpoint_id", String(40), nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("notification_id", String(40), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    # pending | delivered | failed
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    # at-least-once consumption never makes two deliveries of one event to one endpoint
    UniqueConstraint("id", name="webhook_deliveries_id"),
    UniqueConstraint("endpoint_id", "event_id", name="webhook_deliveries_event"),
    # the sender's question: which pending deliveries are due
    Index("webhook_deliveries_due", "state", "next_attempt_at"),
    # the delivery log, and ordering per (endpoint, notification)
    Index("webhook_deliveries_endpoint", "endpoint_id", "notification_id", "seq"),
    Index("webhook_deliveries_log", "endpoint_id", "created_at"),
)

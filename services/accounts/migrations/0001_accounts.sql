-- Users, the events the seed kept in PostgreSQL, and the outbox that carries each event to Kafka.
CREATE TABLE users (
    username        TEXT PRIMARY KEY,
    password_hash   TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until    TIMESTAMPTZ
);

CREATE TABLE events (
    event_id    UUID PRIMARY KEY,
    event_type  TEXT NOT NULL,
    username    TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    payload     JSONB NOT NULL
);
CREATE INDEX events_by_user ON events (username, occurred_at);

-- Written in the same transaction as the change and its event; the relay publishes rows in id
-- order and marks them published. The W3C trace context of the request rides along.
CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    event_id     UUID NOT NULL REFERENCES events (event_id),
    topic        TEXT NOT NULL,
    key          TEXT NOT NULL,
    payload      JSONB NOT NULL,
    traceparent  TEXT,
    tracestate   TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

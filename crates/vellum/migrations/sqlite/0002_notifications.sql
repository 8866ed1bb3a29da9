-- The webhook of a session (the profile's, or the offer's override), fixed when the offer is made.
CREATE TABLE webhooks (
    session_id   TEXT PRIMARY KEY,
    url          TEXT NOT NULL,
    bearer_token TEXT,
    secret       TEXT,
    events       TEXT            -- JSON array of wanted event types; NULL = all
);

-- The outbox: one delivery per (event, webhook), written in the transaction of the event.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq       INTEGER NOT NULL,
    session_id      TEXT NOT NULL,
    url             TEXT NOT NULL,
    status          TEXT NOT NULL,     -- PENDING, DELIVERED, FAILED, GONE
    attempts        INTEGER NOT NULL DEFAULT 0,
    retry_step      INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    UNIQUE (event_seq, url)
);

CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_by_session ON deliveries (session_id, event_seq);
CREATE INDEX deliveries_in_flight ON deliveries (url, lease_until) WHERE status = 'PENDING';

CREATE TABLE delivery_attempts (
    delivery_id  INTEGER NOT NULL,
    number       INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    response     TEXT,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;

-- URLs that answered 410 Gone: nothing more is sent to them until an operator redelivers.
CREATE TABLE gone_webhook_urls (
    url     TEXT PRIMARY KEY,
    gone_at INTEGER NOT NULL
);

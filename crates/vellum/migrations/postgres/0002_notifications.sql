-- The webhook of a session (the profile's, or the offer's override), fixed when the offer is made.
CREATE TABLE webhooks (
    session_id   TEXT COLLATE "C" PRIMARY KEY,
    url          TEXT COLLATE "C" NOT NULL,
    bearer_token TEXT,
    secret       TEXT,
    events       JSONB           -- array of wanted event types; NULL = all
);

-- The outbox: one delivery per (event, webhook), written in the transaction of the event.
CREATE TABLE deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_seq       BIGINT NOT NULL,
    session_id      TEXT COLLATE "C" NOT NULL,
    url             TEXT COLLATE "C" NOT NULL,
    status          TEXT NOT NULL,     -- PENDING, DELIVERED, FAILED, GONE
    attempts        INTEGER NOT NULL DEFAULT 0,
    retry_step      INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    UNIQUE (event_seq, url)
);

CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_by_session ON deliveries (session_id, event_seq);
CREATE INDEX deliveries_in_flight ON deliveries (url, lease_until) WHERE status = 'PENDING';

CREATE TABLE delivery_attempts (
    delivery_id  BIGINT NOT NULL,
    number       INTEGER NOT NULL,
    started_at   BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    response     TEXT,
    PRIMARY KEY (delivery_id, number)
);

-- URLs that answered 410 Gone: nothing more is sent to them until an operator redelivers.
CREATE TABLE gone_webhook_urls (
    url     TEXT COLLATE "C" PRIMARY KEY,
    gone_at BIGINT NOT NULL
);

-- Wallet notifications (OID4VCI 1.0 §11): the credentials of one credential response share a
-- notification id, which the wallet names when it reports what became of them; each event it
-- reports for an id is recorded once (a repeated report is acknowledged and changes nothing).
ALTER TABLE issued_credentials ADD COLUMN notification_id TEXT;

CREATE INDEX issued_credentials_by_notification ON issued_credentials (notification_id);

CREATE TABLE wallet_notifications (
    notification_id TEXT NOT NULL,
    event           TEXT NOT NULL,             -- credential_accepted, credential_failure, ...
    session_id      TEXT NOT NULL,
    received_at     BIGINT NOT NULL,
    PRIMARY KEY (notification_id, event)
);

CREATE INDEX wallet_notifications_by_session ON wallet_notifications (session_id);

-- Deferred issuance (OID4VCI 1.0 §9): a session whose credential data comes later holds one
-- transaction. PENDING until the operator's backend completes it (READY: the data is merged
-- into the session's template) or fails it (FAILED, with the reason); ISSUED once the wallet
-- has fetched the credentials. holders: the proven keys (JSON), one credential each.
CREATE TABLE deferred_transactions (
    session_id       TEXT PRIMARY KEY,
    transaction_hash TEXT NOT NULL UNIQUE,
    holders          TEXT NOT NULL,
    state            TEXT NOT NULL,
    reason           TEXT,
    created_at       BIGINT NOT NULL,
    changed_at       BIGINT NOT NULL
);

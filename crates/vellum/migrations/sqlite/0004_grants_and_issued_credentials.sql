-- Grants, access tokens and issued credentials become records of their own: a session may hold
-- several grants (the pre-authorized code now; an authorization code and refresh tokens later),
-- obtain several access tokens over its life and issue several credentials. The sessions table
-- loses the code and token columns (rebuilt: SQLite cannot drop a UNIQUE column).

-- What a wallet exchanges for access tokens; only a hash of the code is kept.
CREATE TABLE grants (
    id               INTEGER PRIMARY KEY,
    session_id       TEXT NOT NULL,
    kind             TEXT NOT NULL,            -- PRE_AUTHORIZED_CODE
    secret_hash      TEXT NOT NULL UNIQUE,     -- SHA-256 of the code
    state            TEXT NOT NULL,            -- UNUSED, REDEEMED, LOCKED
    tx_code          TEXT,                     -- the offer's tx_code object (JSON), never the value
    tx_code_mac      TEXT,
    tx_code_failures INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    redeemed_at      INTEGER
);

CREATE INDEX grants_by_session ON grants (session_id, kind);

-- Access tokens (SHA-256), each obtained with a grant of the session.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    grant_id   INTEGER NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX access_tokens_by_session ON access_tokens (session_id);

-- Every credential issued: what it is and whom it is bound to, never the credential itself. Kept
-- after its session is purged, until the credential has expired (its status must stay
-- answerable for as long as it is valid).
CREATE TABLE issued_credentials (
    id                          TEXT PRIMARY KEY,
    session_id                  TEXT NOT NULL,
    credential_configuration_id TEXT NOT NULL,
    format                      TEXT NOT NULL,
    holder                      TEXT NOT NULL,   -- RFC 7638 thumbprint of the holder key, or a DID
    issued_at                   INTEGER NOT NULL,
    expires_at                  INTEGER NOT NULL,
    status                      TEXT             -- its status list reference (JSON), if any
);

CREATE INDEX issued_credentials_by_session ON issued_credentials (session_id, issued_at);
CREATE INDEX issued_credentials_by_expiry ON issued_credentials (expires_at);

INSERT INTO grants (session_id, kind, secret_hash, state, tx_code, tx_code_mac,
                    tx_code_failures, created_at, redeemed_at)
SELECT id, 'PRE_AUTHORIZED_CODE', code_hash, code_state, tx_code, tx_code_mac,
       tx_code_failures, created_at, token_issued_at
FROM sessions;

INSERT INTO access_tokens (token_hash, session_id, grant_id, issued_at, expires_at)
SELECT s.token_hash, s.id, g.id, COALESCE(s.token_issued_at, s.updated_at), s.token_expires_at
FROM sessions s JOIN grants g ON g.session_id = s.id
WHERE s.token_hash IS NOT NULL AND s.token_expires_at IS NOT NULL;

CREATE TABLE sessions_reshaped (
    id                          TEXT PRIMARY KEY,
    profile_id                  TEXT NOT NULL,
    profile_version             INTEGER NOT NULL,
    credential_configuration_id TEXT NOT NULL,
    status                      TEXT NOT NULL,
    status_reason               TEXT,
    offer_handle_hash           TEXT NOT NULL UNIQUE,
    by_value                    INTEGER NOT NULL,
    template                    TEXT NOT NULL,
    issuer_key_id               TEXT NOT NULL,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL,
    expires_at                  INTEGER NOT NULL,
    resolved_at                 INTEGER,
    token_issued_at             INTEGER,
    finished_at                 INTEGER
);

INSERT INTO sessions_reshaped
SELECT id, profile_id, profile_version, credential_configuration_id, status, status_reason,
       offer_handle_hash, by_value, template, issuer_key_id, created_at, updated_at, expires_at,
       resolved_at, token_issued_at, finished_at
FROM sessions;

DROP TABLE sessions;
ALTER TABLE sessions_reshaped RENAME TO sessions;

CREATE INDEX sessions_by_created ON sessions (created_at, id);
CREATE INDEX sessions_by_status_expiry ON sessions (status, expires_at);
CREATE INDEX sessions_by_profile ON sessions (profile_id, created_at);
CREATE INDEX sessions_by_finished ON sessions (finished_at) WHERE finished_at IS NOT NULL;

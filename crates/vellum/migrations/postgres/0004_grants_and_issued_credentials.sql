-- The same as migrations/sqlite/0004_grants_and_issued_credentials.sql in PostgreSQL types:
-- grants, access tokens and issued credentials become records of their own, and the sessions
-- table loses the code and token columns.

CREATE TABLE grants (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id       TEXT COLLATE "C" NOT NULL,
    kind             TEXT NOT NULL,            -- PRE_AUTHORIZED_CODE
    secret_hash      TEXT NOT NULL UNIQUE,     -- SHA-256 of the code
    state            TEXT NOT NULL,            -- UNUSED, REDEEMED, LOCKED
    tx_code          TEXT,                     -- the offer's tx_code object (JSON), never the value
    tx_code_mac      TEXT,
    tx_code_failures INTEGER NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    redeemed_at      BIGINT
);

CREATE INDEX grants_by_session ON grants (session_id, kind);

CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT COLLATE "C" NOT NULL,
    grant_id   BIGINT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX access_tokens_by_session ON access_tokens (session_id);

CREATE TABLE issued_credentials (
    id                          TEXT PRIMARY KEY,
    session_id                  TEXT COLLATE "C" NOT NULL,
    credential_configuration_id TEXT NOT NULL,
    format                      TEXT NOT NULL,
    holder                      TEXT NOT NULL,   -- RFC 7638 thumbprint of the holder key, or a DID
    issued_at                   BIGINT NOT NULL,
    expires_at                  BIGINT NOT NULL,
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

ALTER TABLE sessions
    DROP COLUMN code_hash,
    DROP COLUMN code_state,
    DROP COLUMN tx_code,
    DROP COLUMN tx_code_mac,
    DROP COLUMN tx_code_failures,
    DROP COLUMN token_hash,
    DROP COLUMN token_expires_at;

-- Settings the service creates for itself (the API key hash).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Managed keys. The private JWK is sealed with the master key; published = used by a profile
-- or an offer at least once, so it stays in the JWKS for as long as its credentials live.
CREATE TABLE keys (
    id             TEXT PRIMARY KEY,
    algorithm      TEXT NOT NULL,
    public_jwk     TEXT NOT NULL,
    sealed_private BLOB NOT NULL,
    published      INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);

-- Every version of every profile; profile_heads says which is current and whether it is active.
CREATE TABLE profile_versions (
    id            TEXT NOT NULL,
    version       INTEGER NOT NULL,
    definition    TEXT NOT NULL,
    issuer_key_id TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE profile_heads (
    id         TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    active     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- One row per offer: the issuance session. Secrets are stored only as hashes or MACs.
CREATE TABLE sessions (
    id                          TEXT PRIMARY KEY,
    profile_id                  TEXT NOT NULL,
    profile_version             INTEGER NOT NULL,
    credential_configuration_id TEXT NOT NULL,
    status                      TEXT NOT NULL,
    status_reason               TEXT,
    offer_handle_hash           TEXT NOT NULL UNIQUE,
    code_hash                   TEXT NOT NULL UNIQUE,
    code_state                  TEXT NOT NULL,
    tx_code                     TEXT,
    tx_code_mac                 TEXT,
    tx_code_failures            INTEGER NOT NULL DEFAULT 0,
    token_hash                  TEXT UNIQUE,
    token_expires_at            INTEGER,
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

CREATE INDEX sessions_by_created ON sessions (created_at, id);
CREATE INDEX sessions_by_status_expiry ON sessions (status, expires_at);
CREATE INDEX sessions_by_profile ON sessions (profile_id, created_at);
CREATE INDEX sessions_by_finished ON sessions (finished_at) WHERE finished_at IS NOT NULL;

-- Nonces consumed by credential requests, kept until they could no longer verify anyway.
CREATE TABLE used_nonces (
    nonce_hash TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The event log: written with the state change it announces; read by the events endpoint.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    session_id TEXT,
    type       TEXT NOT NULL,
    timestamp  INTEGER NOT NULL,
    data       TEXT NOT NULL
);

CREATE INDEX events_by_session ON events (session_id, seq);

-- The same schema as migrations/sqlite/0001_initial.sql in PostgreSQL types. Identifiers and
-- URLs use the "C" collation so that they order byte by byte, as in SQLite (keyset paging).

-- Settings the service creates for itself (the API key hash).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Managed keys. The private JWK is sealed with the master key; published = used by a profile
-- or an offer at least once, so it stays in the JWKS for as long as its credentials live.
CREATE TABLE keys (
    id             TEXT COLLATE "C" PRIMARY KEY,
    algorithm      TEXT NOT NULL,
    public_jwk     TEXT NOT NULL,
    sealed_private BYTEA NOT NULL,
    published      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL
);

-- Every version of every profile; profile_heads says which is current and whether it is active.
CREATE TABLE profile_versions (
    id            TEXT COLLATE "C" NOT NULL,
    version       BIGINT NOT NULL,
    definition    TEXT NOT NULL,
    issuer_key_id TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE profile_heads (
    id         TEXT COLLATE "C" PRIMARY KEY,
    version    BIGINT NOT NULL,
    active     BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One row per offer: the issuance session. Secrets are stored only as hashes or MACs.
CREATE TABLE sessions (
    id                          TEXT COLLATE "C" PRIMARY KEY,
    profile_id                  TEXT COLLATE "C" NOT NULL,
    profile_version             BIGINT NOT NULL,
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
    token_expires_at            BIGINT,
    by_value                    BOOLEAN NOT NULL,
    template                    TEXT NOT NULL,
    issuer_key_id               TEXT NOT NULL,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL,
    expires_at                  BIGINT NOT NULL,
    resolved_at                 BIGINT,
    token_issued_at             BIGINT,
    finished_at                 BIGINT
);

CREATE INDEX sessions_by_created ON sessions (created_at, id);
CREATE INDEX sessions_by_status_expiry ON sessions (status, expires_at);
CREATE INDEX sessions_by_profile ON sessions (profile_id, created_at);
CREATE INDEX sessions_by_finished ON sessions (finished_at) WHERE finished_at IS NOT NULL;

-- Nonces consumed by credential requests, kept until they could no longer verify anyway.
CREATE TABLE used_nonces (
    nonce_hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

-- The event log: written with the state change it announces; read by the events endpoint.
CREATE TABLE events (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    session_id TEXT COLLATE "C",
    type       TEXT NOT NULL,
    timestamp  BIGINT NOT NULL,
    data       TEXT NOT NULL
);

CREATE INDEX events_by_session ON events (session_id, seq);

-- The authorization code flow. An authorization request lives from the PAR endpoint (or the
-- authorization endpoint, when not pushed) through the holder's login at the OpenID provider to
-- the code it ends with. Only hashes of the request_uri and of the state sent to the provider
-- are kept; the provider's nonce and PKCE verifier are derived from the request id.
CREATE TABLE authorization_requests (
    id               TEXT COLLATE "C" PRIMARY KEY,
    request_uri_hash TEXT UNIQUE,              -- SHA-256 of the request_uri (PAR), if pushed
    state_hash       TEXT UNIQUE,              -- SHA-256 of the state sent to the provider
    session_id       TEXT COLLATE "C",         -- the issuance session, once known
    profile_id       TEXT NOT NULL,            -- the profile whose provider authenticates the holder
    client_id        TEXT NOT NULL,
    parameters       TEXT NOT NULL,            -- JSON: redirect_uri, code_challenge, state, scope, ...
    status           TEXT NOT NULL,            -- PUSHED, AT_PROVIDER, COMPLETED, FAILED
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL
);

CREATE INDEX authorization_requests_by_expiry ON authorization_requests (expires_at);

-- An authorization code is a grant of its session that expires and names its request (client,
-- redirect_uri, PKCE challenge).
ALTER TABLE grants ADD COLUMN request_id TEXT;
ALTER TABLE grants ADD COLUMN expires_at BIGINT;

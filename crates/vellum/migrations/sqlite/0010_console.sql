-- Console sign-ins: the hash of the session cookie, never the cookie. A sign-in ends at logout,
-- at its expiry, or when the management API key it was made with is replaced.
CREATE TABLE console_sessions (
    id_hash         TEXT PRIMARY KEY,
    key_fingerprint TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
);

CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);

-- The overview counts the deliveries of a recent window.
CREATE INDEX deliveries_by_created ON deliveries (created_at);

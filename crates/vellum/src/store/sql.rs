//! The statements both stores run as they are. Parameters are `$1`, `$2`, ... in the order they
//! first appear: PostgreSQL's form, which SQLite reads as named parameters numbered in that same
//! order, so one text and one list of values serve both. What truly differs (locking, claiming,
//! the event log's lock and NOTIFY, SQLite's single writer reading before it writes) stays in
//! each store's file.

use std::sync::LazyLock;

use super::rows::{
    EVENT_COLUMNS, ISSUED_CREDENTIAL_COLUMNS, SESSION_COLUMNS, SESSION_FIELDS, SESSION_JOINS,
    TOKEN_FIELDS,
};

pub(super) const NEWEST_EVENT: &str = "SELECT COALESCE(MAX(seq), 0) FROM events";

pub(super) const SETTING: &str = "SELECT value FROM settings WHERE name = $1";
pub(super) const INIT_SETTING: &str =
    "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING";

pub(super) const INSERT_KEY: &str = "INSERT INTO keys (id, algorithm, public_jwk, \
    sealed_private, created_at) VALUES ($1, $2, $3, $4, $5)";
pub(super) const KEY: &str = "SELECT * FROM keys WHERE id = $1";
pub(super) const KEYS: &str = "SELECT * FROM keys ORDER BY created_at, id";

/// A version of a profile: id, version, definition, issuer key, created at.
pub(super) const INSERT_PROFILE_VERSION: &str = "INSERT INTO profile_versions \
    (id, version, definition, issuer_key_id, created_at) VALUES ($1, $2, $3, $4, $5)";

/// A new session: the values of [`SESSION_COLUMNS`], in order.
pub(super) static INSERT_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
         $10, $11, $12, $13, $14, $15, $16)"
    )
});

/// A new session's grant: session, kind, secret hash, tx_code object, tx_code MAC, created at.
pub(super) const INSERT_GRANT: &str = "INSERT INTO grants (session_id, kind, secret_hash, \
    state, tx_code, tx_code_mac, created_at) VALUES ($1, $2, $3, 'UNUSED', $4, $5, $6)";

/// An access token: hash, session, grant, issued at, expires at.
pub(super) const INSERT_ACCESS_TOKEN: &str = "INSERT INTO access_tokens \
    (token_hash, session_id, grant_id, issued_at, expires_at, dpop_jkt) \
    VALUES ($1, $2, $3, $4, $5, $6)";

/// The access token with this hash, and its session.
pub(super) static TOKEN_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {TOKEN_FIELDS}, {SESSION_FIELDS} FROM access_tokens t \
         JOIN sessions s ON s.id = t.session_id {SESSION_JOINS} WHERE t.token_hash = $1"
    )
});

/// The session where `condition` (on `s` and its pre-authorized grant `g`) holds.
pub(super) fn session_where(condition: &str) -> String {
    format!("SELECT {SESSION_FIELDS} FROM sessions s {SESSION_JOINS} WHERE {condition}")
}

/// Now, session.
pub(super) const RESOLVED: &str = "UPDATE sessions SET \
    resolved_at = COALESCE(resolved_at, $1), updated_at = $1 WHERE id = $2";
/// Locks, grant.
pub(super) const COUNT_TX_CODE_FAILURE: &str = "UPDATE grants SET \
    tx_code_failures = tx_code_failures + 1, state = CASE WHEN $1 THEN 'LOCKED' ELSE state END \
    WHERE id = $2";
/// Now, session.
pub(super) const LOCKED_OUT: &str = "UPDATE sessions SET status = 'UNSUCCESSFUL', \
    status_reason = 'tx_code_attempts_exhausted', finished_at = $1, updated_at = $1 WHERE id = $2";
/// Now, session.
pub(super) const SUCCEEDED: &str = "UPDATE sessions SET status = 'SUCCESSFUL', \
    finished_at = $1, updated_at = $1 WHERE id = $2";
/// Now, session.
pub(super) const TOUCHED: &str = "UPDATE sessions SET updated_at = $1 WHERE id = $2";
/// Now, session.
pub(super) const EXPIRED: &str = "UPDATE sessions SET status = 'EXPIRED', \
    status_reason = 'expired', finished_at = $1, updated_at = $1 \
    WHERE id = $2 AND status = 'ACTIVE' AND expires_at <= $1";
/// Now, limit.
pub(super) const DUE_FOR_EXPIRY: &str =
    "SELECT id FROM sessions WHERE status = 'ACTIVE' AND expires_at <= $1 LIMIT $2";

/// Nonce hash, expires at: changes nothing when the nonce was used before.
pub(super) const USE_NONCE: &str = "INSERT INTO used_nonces (nonce_hash, expires_at) \
    VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// The values of [`ISSUED_CREDENTIAL_COLUMNS`], in order.
pub(super) static INSERT_ISSUED_CREDENTIAL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO issued_credentials ({ISSUED_CREDENTIAL_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )
});
pub(super) static ISSUED_CREDENTIALS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {ISSUED_CREDENTIAL_COLUMNS} FROM issued_credentials \
         WHERE session_id = $1 ORDER BY issued_at, id"
    )
});

/// Purging, each with the cut-off (`finished_before`): everything a finished session owns, the
/// records of credentials that expired before it, then the sessions.
pub(super) static PURGE: LazyLock<Vec<String>> = LazyLock::new(|| {
    const FINISHED: &str =
        "SELECT id FROM sessions WHERE finished_at IS NOT NULL AND finished_at < $1";
    vec![
        format!("DELETE FROM events WHERE session_id IN ({FINISHED})"),
        format!(
            "DELETE FROM delivery_attempts WHERE delivery_id IN \
             (SELECT id FROM deliveries WHERE session_id IN ({FINISHED}))"
        ),
        format!("DELETE FROM deliveries WHERE session_id IN ({FINISHED})"),
        format!("DELETE FROM webhooks WHERE session_id IN ({FINISHED})"),
        format!("DELETE FROM access_tokens WHERE session_id IN ({FINISHED})"),
        format!("DELETE FROM grants WHERE session_id IN ({FINISHED})"),
        // Records of credentials outlive their session, until they have expired.
        "DELETE FROM issued_credentials WHERE expires_at < $1".to_owned(),
    ]
});
/// The cut-off; returns the sessions removed.
pub(super) const PURGE_SESSIONS: &str =
    "DELETE FROM sessions WHERE finished_at IS NOT NULL AND finished_at < $1";
/// Now: nonces that can no longer be replayed.
pub(super) const PURGE_NONCES: &str = "DELETE FROM used_nonces WHERE expires_at < $1";

/// Session, after, limit.
pub(super) static SESSION_EVENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE session_id = $1 AND seq > $2 \
         ORDER BY seq LIMIT $3"
    )
});
/// After, limit.
pub(super) static EVENTS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
});

/// Session.
pub(super) const SESSION_DELIVERIES: &str = "SELECT id, event_seq, url, status, \
    next_attempt_at FROM deliveries WHERE session_id = $1 ORDER BY event_seq, id";

/// Now, delivery: a retry whose URL answered 410 to another delivery meanwhile is gone too.
pub(super) const GONE_MEANWHILE: &str = "UPDATE deliveries SET status = 'GONE', \
    finished_at = $1 WHERE id = $2 AND url IN (SELECT url FROM gone_webhook_urls)";

//! The statements both stores run as they are. Parameters are `$1`, `$2`, ... in the order they
//! first appear: PostgreSQL's form, which SQLite reads as named parameters numbered in that same
//! order, so one text and one list of values serve both. What truly differs (locking, claiming,
//! the event log's lock and NOTIFY, SQLite's single writer reading before it writes) stays in
//! each store's file.

use std::sync::LazyLock;

use super::SessionFilter;
use super::rows::{
    CODE_GRANT_FIELDS, DEFERRED_COLUMNS, EVENT_COLUMNS, ISSUED_CREDENTIAL_COLUMNS, PROFILE_SELECT,
    REQUEST_COLUMNS, REQUEST_FIELDS, SESSION_COLUMNS, SESSION_FIELDS, SESSION_JOINS,
    STATUS_LIST_COLUMNS, TOKEN_FIELDS,
};

pub(super) const NEWEST_EVENT: &str = "SELECT COALESCE(MAX(seq), 0) FROM events";

pub(super) const SETTING: &str = "SELECT value FROM settings WHERE name = $1";
pub(super) const INIT_SETTING: &str =
    "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING";

pub(super) const INSERT_KEY: &str = "INSERT INTO keys (id, algorithm, public_jwk, \
    sealed_private, created_at) VALUES ($1, $2, $3, $4, $5)";
pub(super) const KEY: &str = "SELECT * FROM keys WHERE id = $1";
pub(super) const KEYS: &str = "SELECT * FROM keys ORDER BY created_at, id";

/// The current version of every profile.
pub(super) static PROFILES: LazyLock<String> = LazyLock::new(|| {
    format!("{PROFILE_SELECT} WHERE v.version = h.version ORDER BY h.created_at, v.id")
});

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

/// A grant: session, kind, secret hash, tx_code object, tx_code MAC, created at, expires at,
/// request, DPoP key.
pub(super) const INSERT_GRANT: &str = "INSERT INTO grants (session_id, kind, secret_hash, \
    state, tx_code, tx_code_mac, created_at, expires_at, request_id, dpop_jkt) \
    VALUES ($1, $2, $3, 'UNUSED', $4, $5, $6, $7, $8, $9)";

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

/// Session.
pub(super) static SESSION: LazyLock<String> = LazyLock::new(|| session_where("s.id = $1"));

/// A value of a statement composed at run time, for its next parameter.
#[derive(Debug)]
pub(super) enum Bound {
    Text(String),
    Int(i64),
}

/// The page of sessions `filter` asks for, newest first: the statement and its values, `$1`
/// first. Only the filters given are in the SQL, so that each combination is planned on its own
/// and seeks in an index that also gives the order (status: `sessions_by_status_created`;
/// profile: `sessions_by_profile`; neither: `sessions_by_created`). A filter written as "this
/// value or any" would get one plan for every combination, and that plan reads sessions in
/// creation order until a page matches. The cursor is a row comparison, which both databases
/// seek to in an index on (created_at, id).
pub(super) fn sessions_page(filter: &SessionFilter) -> (String, Vec<Bound>) {
    let mut values = Vec::new();
    let mut next = |value: Bound| {
        values.push(value);
        format!("${}", values.len())
    };
    let mut conditions = Vec::new();
    if let Some(status) = filter.status {
        conditions.push(format!(
            "s.status = {}",
            next(Bound::Text(status.as_str().to_owned()))
        ));
    }
    if let Some(profile) = &filter.profile_id {
        conditions.push(format!(
            "s.profile_id = {}",
            next(Bound::Text(profile.as_str().to_owned()))
        ));
    }
    if let Some((at, id)) = filter.before {
        let at = next(Bound::Int(at));
        let id = next(Bound::Text(id.to_string()));
        conditions.push(format!("(s.created_at, s.id) < ({at}, {id})"));
    }
    let limit = next(Bound::Int(i64::from(filter.limit)));
    let condition = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {SESSION_FIELDS} FROM sessions s {SESSION_JOINS} {condition}\
         ORDER BY s.created_at DESC, s.id DESC LIMIT {limit}"
    );
    (sql, values)
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
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    )
});
/// Kind, signer, bits, size: the newest list of that kind, signer and shape with room.
pub(super) static OPEN_STATUS_LIST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {STATUS_LIST_COLUMNS} FROM status_lists WHERE kind = $1 AND signer = $2 \
         AND bits = $3 AND size = $4 AND allocated < size ORDER BY created_at DESC, id LIMIT 1"
    )
});

/// A new list: id, kind, signer, bits, size, now.
pub(super) const INSERT_STATUS_LIST: &str = "INSERT INTO status_lists \
    (id, kind, signer, bits, size, allocated, created_at, changed_at) \
    VALUES ($1, $2, $3, $4, $5, 0, $6, $6)";

/// List id: one more of its entries handed out, if it has room; its position.
pub(super) const TAKE_STATUS_ENTRY: &str = "UPDATE status_lists SET allocated = allocated + 1 \
    WHERE id = $1 AND allocated < size RETURNING allocated - 1 AS position";

pub(super) static STATUS_LIST: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {STATUS_LIST_COLUMNS} FROM status_lists WHERE id = $1"));

pub(super) static ISSUED_CREDENTIAL: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {ISSUED_CREDENTIAL_COLUMNS} FROM issued_credentials WHERE id = $1")
});

/// To, credential id, from: the status changed if it was still `from`.
pub(super) const CHANGE_CREDENTIAL_STATUS: &str = "UPDATE issued_credentials \
    SET status_value = $1 WHERE id = $2 AND status_value = $3 AND status_list_id IS NOT NULL";

/// Now, credential id: the list of the credential marked changed (later than any change
/// before, even within one millisecond, so that a signed copy never looks current).
pub(super) const TOUCH_STATUS_LIST: &str = "UPDATE status_lists SET changed_at = \
    CASE WHEN changed_at >= $1 THEN changed_at + 1 ELSE $1 END \
    WHERE id = (SELECT status_list_id FROM issued_credentials WHERE id = $2)";

/// List id: its entries that are not valid.
pub(super) const STATUS_ENTRIES: &str = "SELECT status_index, status_value \
    FROM issued_credentials WHERE status_list_id = $1 AND status_value <> 0 \
    ORDER BY status_index";

pub(super) static ISSUED_CREDENTIALS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {ISSUED_CREDENTIAL_COLUMNS} FROM issued_credentials \
         WHERE session_id = $1 ORDER BY issued_at, id"
    )
});

/// Cut-off, batch: how many sessions finished first before the cut-off (up to the batch), and
/// when the last of them finished. The batch's own cut-off is just after that, or the cut-off
/// when fewer than a batch are left.
pub(super) const PURGE_BATCH: &str = "SELECT COUNT(*), MAX(finished_at) FROM \
    (SELECT finished_at FROM sessions WHERE finished_at IS NOT NULL AND finished_at < $1 \
     ORDER BY finished_at LIMIT $2) AS batch";

/// Purging a batch, each statement with the batch's cut-off: everything a finished session
/// owns, then ([`PURGE_SESSIONS`]) the sessions.
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
        format!("DELETE FROM deferred_transactions WHERE session_id IN ({FINISHED})"),
        format!("DELETE FROM wallet_notifications WHERE session_id IN ({FINISHED})"),
    ]
});
/// The batch's cut-off; returns the sessions removed.
pub(super) const PURGE_SESSIONS: &str =
    "DELETE FROM sessions WHERE finished_at IS NOT NULL AND finished_at < $1";
/// Cut-off, batch: records of credentials that expired before the cut-off, oldest first. They
/// outlive their session until then (their status must stay answerable while they are valid).
pub(super) const PURGE_CREDENTIALS: &str = "DELETE FROM issued_credentials WHERE id IN \
    (SELECT id FROM issued_credentials WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)";
/// Now, batch: nonces that can no longer be replayed.
pub(super) const PURGE_NONCES: &str = "DELETE FROM used_nonces WHERE nonce_hash IN \
    (SELECT nonce_hash FROM used_nonces WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)";
/// Now, batch: authorization requests that can no longer be used (their code, if any, has
/// expired).
pub(super) const PURGE_AUTHORIZATION_REQUESTS: &str = "DELETE FROM authorization_requests \
    WHERE id IN (SELECT id FROM authorization_requests WHERE expires_at < $1 \
    ORDER BY expires_at LIMIT $2)";

/// The values of [`DEFERRED_COLUMNS`], in order; nothing when the session has one already.
pub(super) static INSERT_DEFERRED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO deferred_transactions ({DEFERRED_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
    )
});
/// Session.
pub(super) static DEFERRED_BY_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {DEFERRED_COLUMNS} FROM deferred_transactions WHERE session_id = $1")
});
/// Transaction hash.
pub(super) static DEFERRED_BY_HASH: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {DEFERRED_COLUMNS} FROM deferred_transactions WHERE transaction_hash = $1")
});
/// Expires at, now, session: a deferred session lives as long as its transaction may.
pub(super) const EXTEND_SESSION: &str =
    "UPDATE sessions SET expires_at = $1, updated_at = $2 WHERE id = $3";
/// Expires at, token: the access token stays usable for the deferred window.
pub(super) const EXTEND_TOKEN: &str =
    "UPDATE access_tokens SET expires_at = $1 WHERE token_hash = $2 AND expires_at < $1";
/// State, reason, now, session: a PENDING transaction resolved.
pub(super) const RESOLVE_DEFERRED: &str = "UPDATE deferred_transactions SET state = $1, \
    reason = $2, changed_at = $3 WHERE session_id = $4 AND state = 'PENDING'";
/// Template, now, session: the data of a completed deferred transaction.
pub(super) const READY_TEMPLATE: &str =
    "UPDATE sessions SET template = $1, updated_at = $2 WHERE id = $3 AND status = 'ACTIVE'";
/// Now, session.
pub(super) const DEFERRED_FAILED: &str = "UPDATE sessions SET status = 'UNSUCCESSFUL', \
    status_reason = 'deferred_issuance_failed', finished_at = $1, updated_at = $1 \
    WHERE id = $2 AND status = 'ACTIVE'";
/// Now, transaction hash: a READY transaction fetched.
pub(super) const SPEND_DEFERRED: &str = "UPDATE deferred_transactions SET state = 'ISSUED', \
    changed_at = $1 WHERE transaction_hash = $2 AND state = 'READY'";
/// Notification id, session.
pub(super) const NOTIFIED_CREDENTIAL: &str = "SELECT 1 FROM issued_credentials \
    WHERE notification_id = $1 AND session_id = $2 LIMIT 1";
/// Notification id, event, session, now: nothing when that event was reported before.
pub(super) const INSERT_WALLET_NOTIFICATION: &str = "INSERT INTO wallet_notifications \
    (notification_id, event, session_id, received_at) VALUES ($1, $2, $3, $4) \
    ON CONFLICT DO NOTHING";

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

/// Reads the partial index of pending deliveries only.
pub(super) const DELIVERY_BACKLOG: &str = "SELECT url, COUNT(*) AS pending, \
     MIN(created_at) AS oldest_created_at FROM deliveries WHERE status = 'PENDING' \
     GROUP BY url ORDER BY url";

/// Session.
pub(super) const SESSION_DELIVERIES: &str = "SELECT id, event_seq, url, status, \
    next_attempt_at FROM deliveries WHERE session_id = $1 ORDER BY event_seq, id";

/// Session: the attempts of its deliveries, by delivery and in order.
pub(super) const SESSION_DELIVERY_ATTEMPTS: &str = "SELECT delivery_id, started_at, \
    duration_ms, status_code, error, response FROM delivery_attempts \
    WHERE delivery_id IN (SELECT id FROM deliveries WHERE session_id = $1) \
    ORDER BY delivery_id, number";

/// Now, delivery: a retry whose URL answered 410 to another delivery meanwhile is gone too.
pub(super) const GONE_MEANWHILE: &str = "UPDATE deliveries SET status = 'GONE', \
    finished_at = $1 WHERE id = $2 AND url IN (SELECT url FROM gone_webhook_urls)";

/// The values of [`REQUEST_COLUMNS`], in order.
pub(super) static INSERT_AUTHORIZATION_REQUEST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO authorization_requests ({REQUEST_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    )
});

/// An authorization request by the hash of its request_uri.
pub(super) static REQUEST_BY_URI: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {REQUEST_FIELDS} FROM authorization_requests r WHERE r.request_uri_hash = $1")
});

/// An authorization request by the hash of the state sent to the provider.
pub(super) static REQUEST_BY_STATE: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {REQUEST_FIELDS} FROM authorization_requests r WHERE r.state_hash = $1")
});

/// State hash, expires at, id, now: a pushed request the holder now takes to the provider.
pub(super) const START_LOGIN: &str = "UPDATE authorization_requests \
    SET status = 'AT_PROVIDER', state_hash = $1, expires_at = $2 \
    WHERE id = $3 AND status = 'PUSHED' AND expires_at > $4";

/// Id: a request ends without a code.
pub(super) const FAIL_AUTHORIZATION: &str = "UPDATE authorization_requests SET status = 'FAILED' \
    WHERE id = $1 AND status IN ('PUSHED', 'AT_PROVIDER')";

/// Session, expires at (the code's), id: the holder logged in and the session is still active.
pub(super) const COMPLETE_AUTHORIZATION: &str = "UPDATE authorization_requests \
    SET status = 'COMPLETED', session_id = $1, expires_at = $2 \
    WHERE id = $3 AND status = 'AT_PROVIDER' \
    AND EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND status = 'ACTIVE')";

/// Now, session: the offer's issuer_state has done its work once the holder has logged in.
pub(super) const USE_ISSUER_STATE: &str = "UPDATE grants SET state = 'REDEEMED', redeemed_at = $1 \
    WHERE session_id = $2 AND kind = 'ISSUER_STATE' AND state = 'UNUSED'";

/// Template, now, session.
pub(super) const SET_TEMPLATE: &str =
    "UPDATE sessions SET template = $1, updated_at = $2 WHERE id = $3";

/// The grant of this kind (an authorization code or a refresh token) with this hash, its
/// request and its session.
pub(super) static CODE_GRANT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {CODE_GRANT_FIELDS}, {REQUEST_FIELDS}, {SESSION_FIELDS} FROM grants c \
         JOIN authorization_requests r ON r.id = c.request_id \
         JOIN sessions s ON s.id = c.session_id {SESSION_JOINS} \
         WHERE c.secret_hash = $1 AND c.kind = $2"
    )
});

/// Authorization request: the access tokens obtained with its grants.
pub(super) const REVOKE_REQUEST_TOKENS: &str = "DELETE FROM access_tokens WHERE grant_id IN \
    (SELECT id FROM grants WHERE request_id = $1)";

/// Authorization request: its refresh tokens not yet used, dead.
pub(super) const LOCK_REQUEST_GRANTS: &str =
    "UPDATE grants SET state = 'LOCKED' WHERE request_id = $1 AND state = 'UNUSED'";

pub(super) const INSERT_CONSOLE_SESSION: &str = "INSERT INTO console_sessions \
    (id_hash, key_fingerprint, created_at, expires_at) VALUES ($1, $2, $3, $4)";

pub(super) const FORGET_EXPIRED_CONSOLE_SESSIONS: &str =
    "DELETE FROM console_sessions WHERE expires_at <= $1";

pub(super) const CONSOLE_SESSION: &str = "SELECT id_hash, key_fingerprint, created_at, \
    expires_at FROM console_sessions WHERE id_hash = $1 AND expires_at > $2";

pub(super) const CLOSE_CONSOLE_SESSION: &str = "DELETE FROM console_sessions WHERE id_hash = $1";

pub(super) const SESSION_COUNTS: &str = "SELECT credential_configuration_id, status, \
    COUNT(*) AS count FROM sessions WHERE created_at >= $1 \
    GROUP BY credential_configuration_id, status ORDER BY credential_configuration_id, status";

/// A pending delivery that has been tried is retrying.
pub(super) const DELIVERY_COUNTS: &str = "SELECT state, COUNT(*) AS count FROM (SELECT \
    CASE WHEN status = 'PENDING' AND attempts > 0 THEN 'RETRYING' ELSE status END AS state \
    FROM deliveries WHERE created_at >= $1) AS recent GROUP BY state ORDER BY state";

/// How a database writes what seeding needs and the two dialects spell differently.
pub(super) struct Dialect {
    /// `WITH [RECURSIVE] n(i) AS (...)`: the integers `from..=to` as column `i` of `n`.
    pub numbers: fn(from: u64, to: u64) -> String,
    /// `expr` (a non-negative integer) as `width` lower-case hexadecimal digits.
    pub hex: fn(expr: &str, width: usize) -> String,
}

pub(super) const SQLITE: Dialect = Dialect {
    numbers: |from, to| {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {to})"
        )
    },
    hex: |expr, width| format!("printf('%0{width}x', {expr})"),
};

pub(super) const POSTGRES: Dialect = Dialect {
    numbers: |from, to| {
        format!("WITH n(i) AS (SELECT generate_series({from}::bigint, {to}::bigint))")
    },
    hex: |expr, width| format!("lpad(to_hex({expr}), {width}, '0')"),
};

/// The statements that write copies `first..first + count` of the finished session `template`
/// (see [`super::SeedBatch`]), in order: sessions, grants, access tokens, status lists, issued
/// credentials, events. Every value is a number or an identifier this module formats itself
/// (the template is a parsed session id), so the text carries no parameters.
///
/// Copy `i` of a row gets an identifier shaped like a random UUID and unique to the copy: a
/// scrambled `i` (multiplied by an odd constant modulo 2^32, a bijection), the run's tag, a kind
/// digit, and `i` itself; its unique hashes (offer handle, code, token) get the copy's session
/// id appended; its times move `(i + 1) * step_ms` into the past. Credentials with a status list
/// entry get entries on lists of their own, made full so that nothing else takes an entry of
/// them: entry number `e` (the copy's credentials numbered on from the template's) is index
/// `e % size` of seeded list `e / size`.
pub(super) fn seed_copies(
    dialect: &Dialect,
    template: &str,
    batch: &super::SeedBatch,
) -> Vec<String> {
    let super::SeedBatch {
        run,
        first,
        count,
        step_ms,
        events_per_session,
    } = *batch;
    // Callers write no statement for an empty batch.
    let last = first + count.max(1) - 1;
    let hex = dialect.hex;
    let uuid = |number: &str, kind: char| {
        format!(
            "{} || '-{run:04x}-4000-{kind}000-' || {}",
            hex(&format!("(({number}) * 2654435761) % 4294967296"), 8),
            hex(number, 12)
        )
    };
    let session = uuid("n.i", '8');
    let shift = format!("((n.i + 1) * {step_ms})");
    let numbers = (dialect.numbers)(first, last);
    let credentials = format!(
        "{numbers}, c AS (SELECT *, ROW_NUMBER() OVER (ORDER BY issued_at, id) - 1 AS r, \
         COUNT(*) OVER () AS m FROM issued_credentials WHERE session_id = '{template}')"
    );
    let entry = "(n.i * c.m + c.r)";
    let list = uuid(&format!("{entry} / l.size"), 'b');
    let index = format!("({entry} % l.size)");
    let events_numbers = (dialect.numbers)(
        first * u64::from(events_per_session),
        (last + 1) * u64::from(events_per_session) - 1,
    );
    let per = events_per_session;
    let event_session = uuid(&format!("e.i / {per}"), '8');
    vec![
        format!(
            "{numbers} INSERT INTO sessions (id, profile_id, profile_version, \
             credential_configuration_id, status, status_reason, offer_handle_hash, by_value, \
             template, issuer_key_id, created_at, updated_at, expires_at, resolved_at, \
             token_issued_at, finished_at) \
             SELECT {session}, s.profile_id, s.profile_version, s.credential_configuration_id, \
             s.status, s.status_reason, s.offer_handle_hash || '-' || {session}, s.by_value, \
             s.template, s.issuer_key_id, s.created_at - {shift}, s.updated_at - {shift}, \
             s.expires_at - {shift}, s.resolved_at - {shift}, s.token_issued_at - {shift}, \
             s.finished_at - {shift} \
             FROM n CROSS JOIN sessions s WHERE s.id = '{template}' ORDER BY n.i"
        ),
        format!(
            "{numbers} INSERT INTO grants (session_id, kind, secret_hash, state, tx_code, \
             tx_code_mac, tx_code_failures, created_at, redeemed_at, request_id, expires_at, \
             dpop_jkt) \
             SELECT {session}, g.kind, g.secret_hash || '-' || {session}, g.state, g.tx_code, \
             g.tx_code_mac, g.tx_code_failures, g.created_at - {shift}, \
             g.redeemed_at - {shift}, g.request_id, g.expires_at - {shift}, g.dpop_jkt \
             FROM n CROSS JOIN grants g WHERE g.session_id = '{template}' ORDER BY n.i, g.id"
        ),
        format!(
            "{numbers} INSERT INTO access_tokens (token_hash, session_id, grant_id, issued_at, \
             expires_at, dpop_jkt) \
             SELECT t.token_hash || '-' || {session}, {session}, \
             (SELECT copy.id FROM grants copy JOIN grants g ON g.id = t.grant_id \
              WHERE copy.secret_hash = g.secret_hash || '-' || {session}), \
             t.issued_at - {shift}, t.expires_at - {shift}, t.dpop_jkt \
             FROM n CROSS JOIN access_tokens t WHERE t.session_id = '{template}'"
        ),
        format!(
            "{credentials} INSERT INTO status_lists (id, kind, signer, bits, size, allocated, \
             created_at, changed_at) \
             SELECT DISTINCT {list}, l.kind, l.signer, l.bits, l.size, l.size, l.created_at, \
             l.changed_at \
             FROM n CROSS JOIN c JOIN status_lists l ON l.id = c.status_list_id WHERE TRUE \
             ON CONFLICT DO NOTHING"
        ),
        format!(
            "{credentials} INSERT INTO issued_credentials (id, session_id, \
             credential_configuration_id, format, holder, issued_at, expires_at, status, \
             status_list_id, status_index, status_value, notification_id) \
             SELECT {credential}, {session}, c.credential_configuration_id, c.format, c.holder, \
             c.issued_at - {shift}, c.expires_at - {shift}, \
             CASE WHEN l.id IS NULL THEN c.status ELSE \
             replace(replace(replace(c.status, l.id, {list}), \
             '\"idx\":' || c.status_index, '\"idx\":' || {index}), \
             '\"statusListIndex\":\"' || c.status_index || '\"', \
             '\"statusListIndex\":\"' || {index} || '\"') END, \
             CASE WHEN l.id IS NULL THEN NULL ELSE {list} END, \
             CASE WHEN l.id IS NULL THEN NULL ELSE {index} END, \
             CASE WHEN l.id IS NULL THEN c.status_value ELSE 0 END, c.notification_id \
             FROM n CROSS JOIN c LEFT JOIN status_lists l ON l.id = c.status_list_id \
             ORDER BY n.i, c.r",
            credential = uuid(entry, 'a'),
        ),
        format!(
            "{events_numbers}, t AS (SELECT type, timestamp, data, ROW_NUMBER() OVER (ORDER BY seq) - 1 AS k, \
             COUNT(*) OVER () AS m FROM events WHERE session_id = '{template}') \
             INSERT INTO events (id, session_id, type, timestamp, data) \
             SELECT {event}, {event_session}, t.type, \
             t.timestamp - ((e.i / {per} + 1) * {step_ms}), \
             replace(t.data, '{template}', {event_session}) \
             FROM n e JOIN t ON t.k = (e.i % {per}) % t.m ORDER BY e.i",
            event = uuid("e.i", '9'),
        ),
    ]
}

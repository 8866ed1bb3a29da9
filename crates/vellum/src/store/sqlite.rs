//! The embedded store: one SQLite file in WAL mode, driven by dedicated threads.
//!
//! Writes: one writer thread owns the only writing connection. Each store call is one closure
//! sent to it; the thread takes every call waiting in its queue, runs each inside its own
//! SAVEPOINT of one transaction, COMMITs once, and only then answers the callers (group commit).
//! A call is acknowledged only after its changes are committed, and with `synchronous = full`
//! one fsync covers the whole group. Because the writer is single-threaded, a call may read then
//! write without races: no other write can come between.
//!
//! Reads: a few reader threads with their own connections; WAL lets them run beside the writer
//! and see every commit that finished before they started.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::config::DbConfig;
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior, params,
};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::*;
use crate::config::Synchronous;

/// Migrations in order; file names match `migrations/postgres/` (checked by a test).
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_initial.sql",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        "0002_notifications.sql",
        include_str!("../../migrations/sqlite/0002_notifications.sql"),
    ),
    (
        "0003_deliveries_pending.sql",
        include_str!("../../migrations/sqlite/0003_deliveries_pending.sql"),
    ),
];

/// Largest number of calls committed together.
const MAX_GROUP: usize = 128;
const READERS: usize = 3;

trait WriteJob: Send {
    /// Runs the call inside its savepoint; returns whether to keep its changes.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the group's COMMIT has succeeded or failed.
    fn finish(self: Box<Self>, committed: &Result<(), String>);
}

struct Job<T, F> {
    work: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> StoreResult<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = match self.work.take() {
            Some(work) => work(conn),
            None => Err(StoreError::Corrupt("write job ran twice".into())),
        };
        let keep = result.is_ok();
        self.result = Some(result);
        keep
    }

    fn finish(self: Box<Self>, committed: &Result<(), String>) {
        let result = match (committed, self.result) {
            (_, Some(Err(error))) => Err(error),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Err(error), _) => Err(StoreError::Unavailable(format!("commit failed: {error}"))),
            (Ok(()), None) => Err(StoreError::Unavailable("the write was not run".into())),
        };
        let _ = self.reply.send(result);
    }
}

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn WriteJob>>,
    readers: mpsc::Sender<ReadJob>,
    newest_event: watch::Receiver<i64>,
}

thread_local! {
    /// Set by `insert_events` on the writer thread: the group being committed wrote events.
    static WROTE_EVENTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn db_error(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, _)
            if matches!(
                failure.code,
                ErrorCode::CannotOpen
                    | ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::ReadOnly
            ) =>
        {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Database(Box::new(error)),
    }
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(failure, _) if failure.code == ErrorCode::ConstraintViolation)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn json(text: &str) -> StoreResult<Value> {
    serde_json::from_str(text).map_err(|_| corrupt("JSON column"))
}

fn open(path: &Path, synchronous: Synchronous) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_error)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(db_error)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_error)?;
    conn.pragma_update(
        None,
        "synchronous",
        match synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        },
    )
    .map_err(db_error)?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(db_error)?;
    // One plan per statement, whatever the bound values: otherwise SQLite re-prepares a
    // statement whenever a value it planned with changes (a bound LIMIT, or a parameter
    // propagated through a join such as sessions + webhooks), i.e. on nearly every call.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(db_error)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    pub async fn open(path: &Path, synchronous: Synchronous) -> StoreResult<SqliteStore> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Unavailable(format!("{}: {error}", parent.display()))
            })?;
        }
        let mut writer_conn = open(path, synchronous)?;
        migrate(&mut writer_conn)?;
        // One process owns an SQLite file: leases left by a crashed predecessor are void.
        writer_conn
            .execute(
                "UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL",
                [],
            )
            .map_err(db_error)?;
        let newest: i64 = writer_conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
                row.get(0)
            })
            .map_err(db_error)?;
        let (announce, newest_event) = watch::channel(newest);
        let (writer, jobs) = mpsc::channel::<Box<dyn WriteJob>>();
        std::thread::Builder::new()
            .name("vellum-sqlite-writer".into())
            .spawn(move || write_loop(writer_conn, jobs, announce))
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;

        let (readers, reads) = mpsc::channel::<ReadJob>();
        let reads = Arc::new(Mutex::new(reads));
        for index in 0..READERS {
            let conn = open(path, synchronous)?;
            conn.pragma_update(None, "query_only", "ON")
                .map_err(db_error)?;
            let reads = reads.clone();
            std::thread::Builder::new()
                .name(format!("vellum-sqlite-reader-{index}"))
                .spawn(move || read_loop(conn, reads))
                .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        }
        Ok(SqliteStore {
            writer,
            readers,
            newest_event,
        })
    }

    /// Runs `work` as one atomic write, committed before this returns.
    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work: Some(work),
            result: None,
            reply,
        };
        self.writer
            .send(Box::new(job))
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }

    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.readers
            .send(Box::new(move |conn: &Connection| {
                let _ = reply.send(work(conn));
            }))
            .map_err(|_| StoreError::Unavailable("the readers have stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the readers have stopped".into()))?
    }
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(db_error)?;
    for (name, sql) in MIGRATIONS {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let applied: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM schema_migrations WHERE name = ?",
                [name],
                |row| row.get(0),
            )
            .optional()
            .map_err(db_error)?;
        if applied.is_none() {
            tx.execute_batch(sql).map_err(db_error)?;
            tx.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, unixepoch())",
                [name],
            )
            .map_err(db_error)?;
            tracing::info!(migration = name, "applied migration");
        }
        tx.commit().map_err(db_error)?;
    }
    Ok(())
}

fn write_loop(
    mut conn: Connection,
    jobs: mpsc::Receiver<Box<dyn WriteJob>>,
    announce: watch::Sender<i64>,
) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        WROTE_EVENTS.with(|flag| flag.set(false));
        let committed = run_group(&mut conn, &mut group);
        if let Err(error) = &committed {
            tracing::error!(%error, calls = group.len(), "SQLite commit failed");
        }
        for job in group {
            job.finish(&committed);
        }
        if committed.is_ok() && WROTE_EVENTS.with(std::cell::Cell::get) {
            match conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
                row.get(0)
            }) {
                Ok(newest) => {
                    announce.send_replace(newest);
                }
                Err(error) => tracing::warn!(%error, "cannot read the newest event"),
            }
        }
    }
}

fn run_group(conn: &mut Connection, group: &mut [Box<dyn WriteJob>]) -> Result<(), String> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|error| error.to_string())?;
    for job in group.iter_mut() {
        let savepoint = tx.savepoint().map_err(|error| error.to_string())?;
        if job.run(&savepoint) {
            savepoint.commit().map_err(|error| error.to_string())?;
        }
        // Dropping an uncommitted savepoint rolls that call back; the others stand.
    }
    tx.commit().map_err(|error| error.to_string())
}

fn read_loop(conn: Connection, reads: Arc<Mutex<mpsc::Receiver<ReadJob>>>) {
    loop {
        let job = match reads.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(&conn),
            Err(_) => return,
        }
    }
}

/// Appends events and, in the same transaction, one delivery per event for the session's
/// webhook when it wants that event type (the transactional outbox).
fn insert_events(conn: &Connection, events: &[NewEvent]) -> StoreResult<()> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO events (id, session_id, type, timestamp, data) VALUES (?, ?, ?, ?, ?)",
        )
        .map_err(db_error)?;
    let mut outbox = conn
        .prepare_cached(
            "INSERT INTO deliveries (event_seq, session_id, url, status, next_attempt_at, created_at) \
             SELECT ?1, w.session_id, w.url, \
                    CASE WHEN g.url IS NULL THEN 'PENDING' ELSE 'GONE' END, ?2, ?2 \
             FROM webhooks w LEFT JOIN gone_webhook_urls g ON g.url = w.url \
             WHERE w.session_id = ?3 AND (w.events IS NULL \
                   OR EXISTS (SELECT 1 FROM json_each(w.events) WHERE value = ?4))",
        )
        .map_err(db_error)?;
    for event in events {
        let session = event.session_id.map(|id| id.to_string());
        insert
            .execute(params![
                event.id,
                session,
                event.event_type,
                event.timestamp,
                event.data.to_string()
            ])
            .map_err(db_error)?;
        if let Some(session) = &session {
            let seq = conn.last_insert_rowid();
            outbox
                .execute(params![seq, event.timestamp, session, event.event_type])
                .map_err(db_error)?;
        }
    }
    WROTE_EVENTS.with(|flag| flag.set(true));
    Ok(())
}

/// A conditional UPDATE and, when it changed a row, the events announcing the change: the
/// shape of every state transition. Returns whether it applied.
fn transition(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    events: &[NewEvent],
) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached(sql)
        .and_then(|mut statement| statement.execute(params))
        .map_err(db_error)?;
    if changed == 0 {
        return Ok(false);
    }
    insert_events(conn, events)?;
    Ok(true)
}

fn publish_key(conn: &Connection, key: &KeyId) -> StoreResult<()> {
    conn.prepare_cached("UPDATE keys SET published = 1 WHERE id = ? AND published = 0")
        .and_then(|mut statement| statement.execute([key.as_str()]))
        .map_err(db_error)?;
    Ok(())
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<StoreResult<KeyRecord>> {
    let id: String = row.get("id")?;
    let public_jwk: String = row.get("public_jwk")?;
    let algorithm = row.get("algorithm")?;
    let sealed_private = row.get("sealed_private")?;
    let created_at = row.get("created_at")?;
    Ok((|| {
        Ok(KeyRecord {
            id: KeyId::parse(&id).map_err(|_| corrupt("key id"))?,
            algorithm,
            public_jwk: json(&public_jwk)?,
            sealed_private,
            created_at,
        })
    })())
}

fn profile_from_row(row: &Row<'_>) -> rusqlite::Result<StoreResult<ProfileRecord>> {
    let id: String = row.get("id")?;
    let key: String = row.get("issuer_key_id")?;
    let definition: String = row.get("definition")?;
    let version = row.get("version")?;
    let active: bool = row.get("active")?;
    let created_at = row.get("created_at")?;
    let updated_at = row.get("updated_at")?;
    Ok((|| {
        Ok(ProfileRecord {
            id: ProfileId::parse(&id).map_err(|_| corrupt("profile id"))?,
            version,
            active,
            definition: json(&definition)?,
            issuer_key_id: KeyId::parse(&key).map_err(|_| corrupt("key id"))?,
            created_at,
            updated_at,
        })
    })())
}

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<StoreResult<SessionRecord>> {
    let webhook_url: Option<String> = row.get("webhook_url")?;
    let webhook_events: Option<String> = row.get("webhook_events")?;
    let webhook_parts = (
        row.get::<_, Option<String>>("webhook_bearer_token")?,
        row.get::<_, Option<String>>("webhook_secret")?,
    );
    let id: String = row.get("id")?;
    let profile_id: String = row.get("profile_id")?;
    let status: String = row.get("status")?;
    let code_state: String = row.get("code_state")?;
    let tx_code: Option<String> = row.get("tx_code")?;
    let template: String = row.get("template")?;
    let issuer_key_id: String = row.get("issuer_key_id")?;
    let failures: i64 = row.get("tx_code_failures")?;
    let record = (
        row.get("profile_version")?,
        row.get("credential_configuration_id")?,
        row.get("status_reason")?,
        row.get("offer_handle_hash")?,
        row.get("code_hash")?,
        row.get("tx_code_mac")?,
        row.get("token_hash")?,
        row.get("token_expires_at")?,
        row.get("by_value")?,
    );
    let times = (
        row.get("created_at")?,
        row.get("updated_at")?,
        row.get("expires_at")?,
        row.get("resolved_at")?,
        row.get("token_issued_at")?,
        row.get("finished_at")?,
    );
    Ok((|| {
        Ok(SessionRecord {
            id: SessionId::parse(&id).ok_or_else(|| corrupt("session id"))?,
            profile_id: ProfileId::parse(&profile_id).map_err(|_| corrupt("profile id"))?,
            profile_version: record.0,
            credential_configuration_id: record.1,
            status: SessionStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
            status_reason: record.2,
            offer_handle_hash: record.3,
            code_hash: record.4,
            code_state: CodeState::parse(&code_state).ok_or_else(|| corrupt("code state"))?,
            tx_code: tx_code.as_deref().map(json).transpose()?,
            tx_code_mac: record.5,
            tx_code_failures: u32::try_from(failures).map_err(|_| corrupt("tx_code_failures"))?,
            token_hash: record.6,
            token_expires_at: record.7,
            by_value: record.8,
            template,
            webhook: match webhook_url {
                None => None,
                Some(url) => Some(WebhookTarget {
                    url,
                    bearer_token: webhook_parts.0,
                    secret: webhook_parts.1,
                    events: webhook_events
                        .as_deref()
                        .map(|text| {
                            serde_json::from_str(text).map_err(|_| corrupt("webhook events"))
                        })
                        .transpose()?,
                }),
            },
            issuer_key_id: KeyId::parse(&issuer_key_id).map_err(|_| corrupt("key id"))?,
            created_at: times.0,
            updated_at: times.1,
            expires_at: times.2,
            resolved_at: times.3,
            token_issued_at: times.4,
            finished_at: times.5,
        })
    })())
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<StoreResult<EventRecord>> {
    let session: Option<String> = row.get("session_id")?;
    let data: String = row.get("data")?;
    let seq = row.get("seq")?;
    let id = row.get("id")?;
    let event_type = row.get("type")?;
    let timestamp = row.get("timestamp")?;
    Ok((|| {
        Ok(EventRecord {
            seq,
            id,
            session_id: session
                .map(|text| SessionId::parse(&text).ok_or_else(|| corrupt("session id")))
                .transpose()?,
            event_type,
            timestamp,
            data: json(&data)?,
        })
    })())
}

/// Runs a query and converts every row, surfacing both SQL and conversion errors.
fn collect<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    convert: fn(&Row<'_>) -> rusqlite::Result<StoreResult<T>>,
) -> StoreResult<Vec<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(db_error)?;
    let rows = statement.query_map(params, convert).map_err(db_error)?;
    rows.map(|row| row.map_err(db_error)?).collect()
}

/// [`collect`] for listings: a row that does not convert is reported by its `id`, not fatal.
fn listing<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    convert: fn(&Row<'_>) -> rusqlite::Result<StoreResult<T>>,
) -> StoreResult<Listing<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(db_error)?;
    let mut rows = statement.query(params).map_err(db_error)?;
    let mut listing = Listing { rows: Vec::new() };
    while let Some(row) = rows.next().map_err(db_error)? {
        let converted = match convert(row) {
            Ok(converted) => converted,
            Err(error) => Err(db_error(error)),
        };
        listing.rows.push(converted.map_err(|error| Unreadable {
            id: row.get::<_, String>("id").unwrap_or_default(),
            reason: error.to_string(),
            created_at: row.get("created_at").ok(),
        }));
    }
    Ok(listing)
}

fn first<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    convert: fn(&Row<'_>) -> rusqlite::Result<StoreResult<T>>,
) -> StoreResult<Option<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(db_error)?;
    statement
        .query_row(params, convert)
        .optional()
        .map_err(db_error)?
        .transpose()
}

const SESSION_COLUMNS: &str = "id, profile_id, profile_version, credential_configuration_id, \
    status, status_reason, offer_handle_hash, code_hash, code_state, tx_code, tx_code_mac, \
    tx_code_failures, token_hash, token_expires_at, by_value, template, issuer_key_id, \
    created_at, updated_at, expires_at, resolved_at, token_issued_at, finished_at";

const PROFILE_SELECT: &str = "SELECT v.id, v.version, h.active, v.definition, v.issuer_key_id, \
    h.created_at, CASE WHEN v.version = h.version THEN h.updated_at ELSE v.created_at END \
    AS updated_at FROM profile_versions v JOIN profile_heads h ON h.id = v.id";

/// Sessions with their webhook (columns of `webhooks` do not clash with those of `sessions`).
const SESSION_SELECT: &str = "SELECT sessions.*, w.url AS webhook_url, \
    w.bearer_token AS webhook_bearer_token, w.secret AS webhook_secret, \
    w.events AS webhook_events FROM sessions LEFT JOIN webhooks w ON w.session_id = sessions.id";

fn session_by_column(
    conn: &Connection,
    column: &str,
    value: &str,
) -> StoreResult<Option<SessionRecord>> {
    first(
        conn,
        &format!("{SESSION_SELECT} WHERE sessions.{column} = ?"),
        [value],
        session_from_row,
    )
}

fn profile_version(
    conn: &Connection,
    id: &str,
    version: i64,
) -> StoreResult<Option<ProfileRecord>> {
    first(
        conn,
        &format!("{PROFILE_SELECT} WHERE v.id = ? AND v.version = ?"),
        params![id, version],
        profile_from_row,
    )
}

/// Leases up to `limit` due deliveries (see `Store::claim_deliveries`).
fn claim(
    conn: &Connection,
    now: Millis,
    lease_until: Millis,
    limit: u32,
    per_url: u32,
) -> StoreResult<Vec<DueDelivery>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // Per URL, by index seeks only (the cost does not grow with the backlog): the
    // URLs with pending deliveries (a skip scan), how many each has in flight, and its
    // first due deliveries up to its room, so the per-URL limit holds within this
    // claim too. Then the earliest due across URLs, up to `limit`.
    let mut next_url = conn
        .prepare_cached(
            "SELECT MIN(url) FROM deliveries INDEXED BY deliveries_pending \
             WHERE status = 'PENDING' AND url > ?",
        )
        .map_err(db_error)?;
    let mut in_flight = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_pending \
             WHERE status = 'PENDING' AND url = ?1 AND lease_until > ?2",
        )
        .map_err(db_error)?;
    let mut first_due = conn
        .prepare_cached(
            "SELECT next_attempt_at, id FROM deliveries INDEXED BY deliveries_pending \
             WHERE status = 'PENDING' AND url = ?1 AND lease_until IS NULL \
               AND next_attempt_at <= ?2 \
             UNION ALL \
             SELECT next_attempt_at, id FROM deliveries INDEXED BY deliveries_pending \
             WHERE status = 'PENDING' AND url = ?1 AND lease_until <= ?2 \
               AND next_attempt_at <= ?2 \
             ORDER BY 1, 2 LIMIT ?3",
        )
        .map_err(db_error)?;
    let mut candidates: Vec<(Millis, i64)> = Vec::new();
    let mut url = String::new();
    while let Some(next) = next_url
        .query_row([&url], |row| row.get::<_, Option<String>>(0))
        .map_err(db_error)?
    {
        let busy: u32 = in_flight
            .query_row(params![next, now], |row| row.get(0))
            .map_err(db_error)?;
        if busy < per_url {
            let rows = first_due
                .query_map(params![next, now, per_url - busy], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .map_err(db_error)?;
            for row in rows {
                candidates.push(row.map_err(db_error)?);
            }
        }
        url = next;
    }
    candidates.sort_unstable();
    candidates.truncate(limit as usize);
    let mut lease = conn
        .prepare_cached(
            "UPDATE deliveries SET lease_until = ?1 WHERE id = ?2 \
             RETURNING id, event_seq, session_id, attempts, retry_step",
        )
        .map_err(db_error)?;
    let mut claimed: Vec<(i64, i64, String, u32, u32)> = Vec::with_capacity(candidates.len());
    for (_, id) in candidates {
        claimed.push(
            lease
                .query_row(params![lease_until, id], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })
                .map_err(db_error)?,
        );
    }
    let mut due = Vec::with_capacity(claimed.len());
    for (id, seq, session, attempts, retry_step) in claimed {
        let event = first(
            conn,
            "SELECT seq, id, session_id, type, timestamp, data FROM events WHERE seq = ?",
            [seq],
            event_from_row,
        )?
        .ok_or_else(|| corrupt("delivery without event"))?;
        let webhook = conn
            .prepare_cached(
                "SELECT url, bearer_token, secret, events FROM webhooks WHERE session_id = ?",
            )
            .and_then(|mut statement| {
                statement
                    .query_row([&session], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })
                    .optional()
            })
            .map_err(db_error)?
            .ok_or_else(|| corrupt("delivery without webhook"))?;
        let (url, bearer_token, secret, events): (_, _, _, Option<String>) = webhook;
        let webhook = WebhookTarget {
            url,
            bearer_token,
            secret,
            events: events
                .as_deref()
                .map(|text| serde_json::from_str(text).map_err(|_| corrupt("webhook events")))
                .transpose()?,
        };
        due.push(DueDelivery {
            id,
            attempt: attempts + 1,
            retry_step,
            event,
            webhook,
        });
    }
    Ok(due)
}

/// Records an attempt and its consequence, and ends the lease.
fn record(
    conn: &Connection,
    delivery: i64,
    attempt: &AttemptRecord,
    outcome: AttemptOutcome,
    now: Millis,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO delivery_attempts \
         (delivery_id, number, started_at, duration_ms, status_code, error, response) \
         SELECT id, attempts + 1, ?, ?, ?, ?, ? FROM deliveries WHERE id = ?",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            attempt.started_at,
            attempt.duration_ms,
            attempt.status_code,
            attempt.error,
            attempt.response,
            delivery
        ])
    })
    .map_err(db_error)?;
    let (status, next, step) = match outcome {
        AttemptOutcome::Delivered => ("DELIVERED", None, 0),
        AttemptOutcome::RetryAt(at) => ("PENDING", Some(at), 1),
        AttemptOutcome::Failed => ("FAILED", None, 0),
        AttemptOutcome::Gone => ("GONE", None, 0),
    };
    conn.prepare_cached(
        "UPDATE deliveries SET attempts = attempts + 1, status = ?1, \
         next_attempt_at = COALESCE(?2, next_attempt_at), retry_step = retry_step + ?3, \
         lease_until = NULL, finished_at = CASE WHEN ?1 = 'PENDING' THEN NULL ELSE ?4 END \
         WHERE id = ?5",
    )
    .and_then(|mut statement| statement.execute(params![status, next, step, now, delivery]))
    .map_err(db_error)?;
    if matches!(outcome, AttemptOutcome::RetryAt(_)) {
        // Its URL answered 410 to another delivery while this one was in flight.
        conn.execute(
            "UPDATE deliveries SET status = 'GONE', finished_at = ?1 WHERE id = ?2 \
             AND url IN (SELECT url FROM gone_webhook_urls)",
            params![now, delivery],
        )
        .map_err(db_error)?;
    }
    if outcome == AttemptOutcome::Gone {
        conn.execute(
            "INSERT INTO gone_webhook_urls (url, gone_at) \
             SELECT url, ? FROM deliveries WHERE id = ? ON CONFLICT DO NOTHING",
            params![now, delivery],
        )
        .map_err(db_error)?;
        conn.execute(
            "UPDATE deliveries SET status = 'GONE', finished_at = ?1, lease_until = NULL \
             WHERE status = 'PENDING' AND url = (SELECT url FROM deliveries WHERE id = ?2)",
            params![now, delivery],
        )
        .map_err(db_error)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(db_error))
            .await
    }

    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.query_row("SELECT value FROM settings WHERE name = ?", [name], |row| {
                row.get(0)
            })
            .optional()
            .map_err(db_error)
        })
        .await
    }

    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [&name, &value],
            )
            .map_err(db_error)?;
            conn.query_row(
                "SELECT value FROM settings WHERE name = ?",
                [&name],
                |row| row.get(0),
            )
            .map_err(db_error)
        })
        .await
    }

    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |conn| {
            let result = conn.execute(
                "INSERT INTO keys (id, algorithm, public_jwk, sealed_private, created_at) \
                 VALUES (?, ?, ?, ?, ?)",
                params![
                    key.id.as_str(),
                    key.algorithm,
                    key.public_jwk.to_string(),
                    key.sealed_private,
                    key.created_at
                ],
            );
            match result {
                Ok(_) => Ok(()),
                Err(error) if is_unique_violation(&error) => {
                    Err(StoreError::Conflict(format!("key {}", key.id)))
                }
                Err(error) => Err(db_error(error)),
            }
        })
        .await
    }

    async fn key(&self, id: &KeyId) -> StoreResult<Option<KeyRecord>> {
        let id = id.clone();
        self.read(move |conn| {
            first(
                conn,
                "SELECT * FROM keys WHERE id = ?",
                [id.as_str()],
                key_from_row,
            )
        })
        .await
    }

    async fn keys(&self) -> StoreResult<Listing<KeyRecord>> {
        self.read(|conn| {
            listing(
                conn,
                "SELECT * FROM keys ORDER BY created_at, id",
                [],
                key_from_row,
            )
        })
        .await
    }

    async fn published_keys(&self) -> StoreResult<Listing<KeyRecord>> {
        self.read(|conn| {
            listing(
                conn,
                "SELECT * FROM keys WHERE published = 1 ORDER BY created_at, id",
                [],
                key_from_row,
            )
        })
        .await
    }

    async fn create_profile(&self, profile: &ProfileRecord) -> StoreResult<()> {
        let profile = profile.clone();
        self.write(move |conn| {
            let inserted = conn
                .execute(
                    "INSERT INTO profile_heads (id, version, active, created_at, updated_at) \
                     VALUES (?, 1, 1, ?, ?) ON CONFLICT DO NOTHING",
                    params![profile.id.as_str(), profile.created_at, profile.updated_at],
                )
                .map_err(db_error)?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("profile {}", profile.id)));
            }
            conn.execute(
                "INSERT INTO profile_versions (id, version, definition, issuer_key_id, created_at) \
                 VALUES (?, 1, ?, ?, ?)",
                params![
                    profile.id.as_str(),
                    profile.definition.to_string(),
                    profile.issuer_key_id.as_str(),
                    profile.created_at
                ],
            )
            .map_err(db_error)?;
            publish_key(conn, &profile.issuer_key_id)
        })
        .await
    }

    async fn update_profile(
        &self,
        id: &ProfileId,
        definition: &Value,
        issuer_key_id: &KeyId,
        now: Millis,
    ) -> StoreResult<Option<ProfileRecord>> {
        let (id, definition, key) = (id.clone(), definition.to_string(), issuer_key_id.clone());
        self.write(move |conn| {
            let version: Option<i64> = conn
                .query_row(
                    "UPDATE profile_heads SET version = version + 1, updated_at = ? \
                     WHERE id = ? AND active = 1 RETURNING version",
                    params![now, id.as_str()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db_error)?;
            let Some(version) = version else {
                return Ok(None);
            };
            conn.execute(
                "INSERT INTO profile_versions (id, version, definition, issuer_key_id, created_at) \
                 VALUES (?, ?, ?, ?, ?)",
                params![id.as_str(), version, definition, key.as_str(), now],
            )
            .map_err(db_error)?;
            publish_key(conn, &key)?;
            profile_version(conn, id.as_str(), version)
        })
        .await
    }

    async fn deactivate_profile(&self, id: &ProfileId, now: Millis) -> StoreResult<bool> {
        let id = id.clone();
        self.write(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE profile_heads SET active = 0, \
                     updated_at = CASE WHEN active = 1 THEN ? ELSE updated_at END WHERE id = ?",
                    params![now, id.as_str()],
                )
                .map_err(db_error)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn profile(
        &self,
        id: &ProfileId,
        version: Option<i64>,
    ) -> StoreResult<Option<ProfileRecord>> {
        let id = id.clone();
        self.read(move |conn| match version {
            Some(version) => profile_version(conn, id.as_str(), version),
            None => first(
                conn,
                &format!("{PROFILE_SELECT} WHERE v.id = ? AND v.version = h.version"),
                [id.as_str()],
                profile_from_row,
            ),
        })
        .await
    }

    async fn profiles(&self) -> StoreResult<Listing<ProfileRecord>> {
        self.read(|conn| {
            listing(
                conn,
                &format!(
                    "{PROFILE_SELECT} WHERE v.version = h.version ORDER BY h.created_at, v.id"
                ),
                [],
                profile_from_row,
            )
        })
        .await
    }

    async fn create_session(&self, session: &SessionRecord, event: &NewEvent) -> StoreResult<()> {
        let (s, event) = (session.clone(), event.clone());
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES \
                 (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .and_then(|mut statement| {
                statement.execute(params![
                    s.id.to_string(),
                    s.profile_id.as_str(),
                    s.profile_version,
                    s.credential_configuration_id,
                    s.status.as_str(),
                    s.status_reason,
                    s.offer_handle_hash,
                    s.code_hash,
                    s.code_state.as_str(),
                    s.tx_code.as_ref().map(Value::to_string),
                    s.tx_code_mac,
                    s.tx_code_failures,
                    s.token_hash,
                    s.token_expires_at,
                    s.by_value,
                    s.template,
                    s.issuer_key_id.as_str(),
                    s.created_at,
                    s.updated_at,
                    s.expires_at,
                    s.resolved_at,
                    s.token_issued_at,
                    s.finished_at,
                ])
            })
            .map_err(db_error)?;
            publish_key(conn, &s.issuer_key_id)?;
            if let Some(webhook) = &s.webhook {
                conn.prepare_cached(
                    "INSERT INTO webhooks (session_id, url, bearer_token, secret, events) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        s.id.to_string(),
                        webhook.url,
                        webhook.bearer_token,
                        webhook.secret,
                        webhook
                            .events
                            .as_ref()
                            .map(|events| Value::from(events.clone()).to_string()),
                    ])
                })
                .map_err(db_error)?;
            }
            insert_events(conn, std::slice::from_ref(&event))
        })
        .await
    }

    async fn session(&self, id: SessionId) -> StoreResult<Option<SessionRecord>> {
        self.read(move |conn| session_by_column(conn, "id", &id.to_string()))
            .await
    }

    async fn session_by(&self, lookup: SessionLookup<'_>) -> StoreResult<Option<SessionRecord>> {
        let (column, hash) = match lookup {
            SessionLookup::OfferHandle(hash) => ("offer_handle_hash", hash),
            SessionLookup::PreAuthorizedCode(hash) => ("code_hash", hash),
            SessionLookup::AccessToken(hash) => ("token_hash", hash),
        };
        let hash = hash.to_owned();
        self.read(move |conn| session_by_column(conn, column, &hash))
            .await
    }

    async fn sessions(&self, filter: &SessionFilter) -> StoreResult<Listing<SessionRecord>> {
        let filter = filter.clone();
        self.read(move |conn| {
            let (before_at, before_id) = filter
                .before
                .map(|(at, id)| (Some(at), Some(id.to_string())))
                .unwrap_or((None, None));
            listing(
                conn,
                &format!(
                    "{SESSION_SELECT} \
                     WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR profile_id = ?2) \
                     AND (?3 IS NULL OR created_at < ?3 OR (created_at = ?3 AND id < ?4)) \
                     ORDER BY created_at DESC, id DESC LIMIT ?5"
                ),
                params![
                    filter.status.map(SessionStatus::as_str),
                    filter.profile_id.as_ref().map(ProfileId::as_str),
                    before_at,
                    before_id,
                    filter.limit
                ],
                session_from_row,
            )
        })
        .await
    }

    async fn record_offer_resolved(
        &self,
        id: SessionId,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        let events = events.to_vec();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE sessions SET resolved_at = COALESCE(resolved_at, ?1), updated_at = ?1 \
                 WHERE id = ?2",
            )
            .and_then(|mut statement| statement.execute(params![now, id.to_string()]))
            .map_err(db_error)?;
            insert_events(conn, &events)
        })
        .await
    }

    async fn record_tx_code_failure(
        &self,
        id: SessionId,
        failure: &TxCodeFailure,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied> {
        let (failure, events) = (failure.clone(), events.to_vec());
        self.write(move |conn| {
            let sql = if failure.locks {
                "UPDATE sessions SET tx_code_failures = tx_code_failures + 1, code_state = 'LOCKED', \
                 status = 'UNSUCCESSFUL', status_reason = 'tx_code_attempts_exhausted', \
                 finished_at = ?1, updated_at = ?1 \
                 WHERE id = ?2 AND tx_code_failures = ?3 AND code_state = 'UNUSED' AND status = 'ACTIVE'"
            } else {
                "UPDATE sessions SET tx_code_failures = tx_code_failures + 1, updated_at = ?1 \
                 WHERE id = ?2 AND tx_code_failures = ?3 AND code_state = 'UNUSED' AND status = 'ACTIVE'"
            };
            let params = params![now, id.to_string(), failure.seen_failures];
            Ok(if transition(conn, sql, params, &events)? {
                Applied::Yes
            } else {
                Applied::Stale
            })
        })
        .await
    }

    async fn redeem_pre_authorized_code(
        &self,
        id: SessionId,
        token_hash: &str,
        token_expires_at: Millis,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied> {
        let (token_hash, events) = (token_hash.to_owned(), events.to_vec());
        self.write(move |conn| {
            let redeemed = transition(
                conn,
                "UPDATE sessions SET code_state = 'REDEEMED', token_hash = ?1, \
                 token_expires_at = ?2, token_issued_at = ?3, updated_at = ?3, \
                 expires_at = MAX(expires_at, ?2) \
                 WHERE id = ?4 AND code_state = 'UNUSED' AND status = 'ACTIVE' AND expires_at > ?3",
                params![token_hash, token_expires_at, now, id.to_string()],
                &events,
            )?;
            Ok(if redeemed {
                Applied::Yes
            } else {
                Applied::Stale
            })
        })
        .await
    }

    async fn complete_issuance(
        &self,
        id: SessionId,
        nonce_hash: &str,
        nonce_expires_at: Millis,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<IssuanceCommit> {
        let (nonce_hash, events) = (nonce_hash.to_owned(), events.to_vec());
        self.write(move |conn| {
            // Check before writing: the writer is the only one, so nothing can come between.
            let active: Option<i64> = conn
                .prepare_cached(
                    "SELECT 1 FROM sessions WHERE id = ?1 AND status = 'ACTIVE' \
                     AND code_state = 'REDEEMED' AND token_expires_at > ?2",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row(params![id.to_string(), now], |row| row.get(0))
                        .optional()
                })
                .map_err(db_error)?;
            if active.is_none() {
                return Ok(IssuanceCommit::SessionNotActive);
            }
            let fresh = conn
                .prepare_cached(
                    "INSERT INTO used_nonces (nonce_hash, expires_at) VALUES (?, ?) \
                     ON CONFLICT DO NOTHING",
                )
                .and_then(|mut statement| statement.execute(params![nonce_hash, nonce_expires_at]))
                .map_err(db_error)?;
            if fresh == 0 {
                return Ok(IssuanceCommit::NonceAlreadyUsed);
            }
            conn.prepare_cached(
                "UPDATE sessions SET status = 'SUCCESSFUL', finished_at = ?1, updated_at = ?1 \
                 WHERE id = ?2",
            )
            .and_then(|mut statement| statement.execute(params![now, id.to_string()]))
            .map_err(db_error)?;
            insert_events(conn, &events)?;
            Ok(IssuanceCommit::Issued)
        })
        .await
    }

    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        let events = events.to_vec();
        self.write(move |conn| insert_events(conn, &events)).await
    }

    async fn sessions_due_for_expiry(
        &self,
        now: Millis,
        limit: u32,
    ) -> StoreResult<Vec<SessionId>> {
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id FROM sessions WHERE status = 'ACTIVE' AND expires_at <= ? LIMIT ?",
                )
                .map_err(db_error)?;
            let ids = statement
                .query_map(params![now, limit], |row| row.get::<_, String>(0))
                .map_err(db_error)?;
            ids.map(|id| {
                let id = id.map_err(db_error)?;
                SessionId::parse(&id).ok_or_else(|| corrupt("session id"))
            })
            .collect()
        })
        .await
    }

    async fn expire_session(
        &self,
        id: SessionId,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let events = events.to_vec();
        self.write(move |conn| {
            transition(
                conn,
                "UPDATE sessions SET status = 'EXPIRED', status_reason = 'expired', \
                 finished_at = ?1, updated_at = ?1 \
                 WHERE id = ?2 AND status = 'ACTIVE' AND expires_at <= ?1",
                params![now, id.to_string()],
                &events,
            )
        })
        .await
    }

    async fn purge(&self, finished_before: Millis, now: Millis) -> StoreResult<u64> {
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM events WHERE session_id IN \
                 (SELECT id FROM sessions WHERE finished_at IS NOT NULL AND finished_at < ?)",
                [finished_before],
            )
            .map_err(db_error)?;
            conn.execute(
                "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT d.id FROM deliveries d \
                 JOIN sessions s ON s.id = d.session_id \
                 WHERE s.finished_at IS NOT NULL AND s.finished_at < ?)",
                [finished_before],
            )
            .map_err(db_error)?;
            for statement in [
                "DELETE FROM deliveries WHERE session_id IN \
                 (SELECT id FROM sessions WHERE finished_at IS NOT NULL AND finished_at < ?)",
                "DELETE FROM webhooks WHERE session_id IN \
                 (SELECT id FROM sessions WHERE finished_at IS NOT NULL AND finished_at < ?)",
            ] {
                conn.execute(statement, [finished_before])
                    .map_err(db_error)?;
            }
            let sessions = conn
                .execute(
                    "DELETE FROM sessions WHERE finished_at IS NOT NULL AND finished_at < ?",
                    [finished_before],
                )
                .map_err(db_error)?;
            conn.execute("DELETE FROM used_nonces WHERE expires_at < ?", [now])
                .map_err(db_error)?;
            Ok(sessions as u64)
        })
        .await
    }

    async fn events(
        &self,
        session: Option<SessionId>,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>> {
        self.read(move |conn| match session {
            Some(id) => collect(
                conn,
                "SELECT seq, id, session_id, type, timestamp, data FROM events \
                 WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                params![id.to_string(), after_seq, limit],
                event_from_row,
            ),
            None => collect(
                conn,
                "SELECT seq, id, session_id, type, timestamp, data FROM events \
                 WHERE seq > ? ORDER BY seq LIMIT ?",
                params![after_seq, limit],
                event_from_row,
            ),
        })
        .await
    }

    fn watch_events(&self) -> watch::Receiver<i64> {
        self.newest_event.clone()
    }

    async fn claim_deliveries(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
        per_url: u32,
    ) -> StoreResult<Vec<DueDelivery>> {
        self.write(move |conn| claim(conn, now, lease_until, limit, per_url))
            .await
    }

    async fn record_attempt(
        &self,
        delivery: i64,
        attempt: &AttemptRecord,
        outcome: AttemptOutcome,
        now: Millis,
    ) -> StoreResult<()> {
        let attempt = attempt.clone();
        self.write(move |conn| record(conn, delivery, &attempt, outcome, now))
            .await
    }

    async fn record_and_claim(
        &self,
        finished: Vec<FinishedAttempt>,
        now: Millis,
        lease_until: Millis,
        limit: u32,
        per_url: u32,
    ) -> StoreResult<Vec<DueDelivery>> {
        self.write(move |conn| {
            for attempt in &finished {
                record(
                    conn,
                    attempt.delivery,
                    &attempt.record,
                    attempt.outcome,
                    attempt.at,
                )?;
            }
            claim(conn, now, lease_until, limit, per_url)
        })
        .await
    }

    async fn session_deliveries(&self, id: SessionId) -> StoreResult<Vec<DeliveryRecord>> {
        self.read(move |conn| {
            let mut deliveries = conn
                .prepare_cached(
                    "SELECT id, event_seq, url, status, next_attempt_at FROM deliveries \
                     WHERE session_id = ? ORDER BY event_seq, id",
                )
                .map_err(db_error)?;
            let mut records: Vec<DeliveryRecord> = deliveries
                .query_map([id.to_string()], |row| {
                    let status: String = row.get(3)?;
                    let next: i64 = row.get(4)?;
                    Ok(DeliveryRecord {
                        id: row.get(0)?,
                        event_seq: row.get(1)?,
                        url: row.get(2)?,
                        next_attempt_at: (status == "PENDING").then_some(next),
                        status,
                        attempts: Vec::new(),
                    })
                })
                .map_err(db_error)?
                .collect::<Result<_, _>>()
                .map_err(db_error)?;
            let mut attempts = conn
                .prepare_cached(
                    "SELECT started_at, duration_ms, status_code, error, response \
                     FROM delivery_attempts WHERE delivery_id = ? ORDER BY number",
                )
                .map_err(db_error)?;
            for record in &mut records {
                record.attempts = attempts
                    .query_map([record.id], |row| {
                        Ok(AttemptRecord {
                            started_at: row.get(0)?,
                            duration_ms: row.get(1)?,
                            status_code: row.get(2)?,
                            error: row.get(3)?,
                            response: row.get(4)?,
                        })
                    })
                    .map_err(db_error)?
                    .collect::<Result<_, _>>()
                    .map_err(db_error)?;
            }
            Ok(records)
        })
        .await
    }

    async fn redeliver(
        &self,
        id: SessionId,
        event_id: Option<&str>,
        now: Millis,
    ) -> StoreResult<u64> {
        let event_id = event_id.map(str::to_owned);
        self.write(move |conn| {
            // One event's deliveries (whatever their state), or the session's FAILED/GONE ones;
            // never one that is in flight.
            const SELECTION: &str = "SELECT id FROM deliveries WHERE session_id = ?2 \
                AND (lease_until IS NULL OR status <> 'PENDING') \
                AND ((?3 IS NULL AND status IN ('FAILED', 'GONE')) \
                     OR event_seq = (SELECT seq FROM events WHERE id = ?3 AND session_id = ?2))";
            conn.execute(
                &format!(
                    "DELETE FROM gone_webhook_urls WHERE ?1 IS NOT NULL AND url IN \
                     (SELECT url FROM deliveries WHERE id IN ({SELECTION}))"
                ),
                params![now, id.to_string(), event_id],
            )
            .map_err(db_error)?;
            let changed = conn
                .execute(
                    &format!(
                        "UPDATE deliveries SET status = 'PENDING', next_attempt_at = ?1, \
                         retry_step = 0, finished_at = NULL WHERE id IN ({SELECTION})"
                    ),
                    params![now, id.to_string(), event_id],
                )
                .map_err(db_error)?;
            Ok(changed as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(url: &str) -> SessionRecord {
        let id = SessionId::generate();
        SessionRecord {
            id,
            profile_id: ProfileId::parse("p").expect("id"),
            profile_version: 1,
            credential_configuration_id: "c".into(),
            status: SessionStatus::Active,
            status_reason: None,
            offer_handle_hash: format!("h-{id}"),
            code_hash: format!("c-{id}"),
            code_state: CodeState::Unused,
            tx_code: None,
            tx_code_mac: None,
            tx_code_failures: 0,
            token_hash: None,
            token_expires_at: None,
            by_value: false,
            template: "null".into(),
            webhook: Some(WebhookTarget {
                url: url.into(),
                bearer_token: None,
                secret: None,
                events: None,
            }),
            issuer_key_id: KeyId::parse("k").expect("id"),
            created_at: 0,
            updated_at: 0,
            expires_at: 1,
            resolved_at: None,
            token_issued_at: None,
            finished_at: None,
        }
    }

    fn event(session: SessionId) -> NewEvent {
        NewEvent {
            id: uuid::Uuid::now_v7().to_string(),
            session_id: Some(session),
            event_type: "credential_offer_created".into(),
            timestamp: 0,
            data: Value::Null,
        }
    }

    #[tokio::test]
    async fn one_claim_never_leases_more_than_the_per_url_limit() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(&dir.path().join("v.db"), Synchronous::Normal)
            .await
            .expect("store");
        for url in ["http://slow.example/", "http://fast.example/"] {
            let session = session(url);
            store
                .create_session(&session, &event(session.id))
                .await
                .expect("session");
            let more: Vec<NewEvent> = (0..19).map(|_| event(session.id)).collect();
            store.append_events(&more).await.expect("events");
        }
        let first = store
            .claim_deliveries(1, 1000, 100, 8)
            .await
            .expect("claim");
        let per_url = |claimed: &[DueDelivery], url: &str| {
            claimed.iter().filter(|due| due.webhook.url == url).count()
        };
        assert_eq!(per_url(&first, "http://slow.example/"), 8);
        assert_eq!(per_url(&first, "http://fast.example/"), 8);
        // Nothing more while those are in flight; the next ones once a lease ends.
        let second = store
            .claim_deliveries(2, 1000, 100, 8)
            .await
            .expect("claim");
        assert!(second.is_empty(), "{} more claimed", second.len());
        let done = AttemptRecord {
            started_at: 2,
            duration_ms: 1,
            status_code: Some(200),
            error: None,
            response: None,
        };
        store
            .record_attempt(first[0].id, &done, AttemptOutcome::Delivered, 3)
            .await
            .expect("record");
        let third = store
            .claim_deliveries(4, 1000, 100, 8)
            .await
            .expect("claim");
        assert_eq!(third.len(), 1);
        assert_eq!(third[0].webhook.url, first[0].webhook.url);
    }

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|(name, _)| *name).collect();
        assert_eq!(files, listed);
    }
}

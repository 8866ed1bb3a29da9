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

use super::rows::{self, Columns, PROFILE_SELECT, corrupt};
use super::sql;
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
    (
        "0004_grants_and_issued_credentials.sql",
        include_str!("../../migrations/sqlite/0004_grants_and_issued_credentials.sql"),
    ),
    (
        "0005_dpop.sql",
        include_str!("../../migrations/sqlite/0005_dpop.sql"),
    ),
    (
        "0006_authorization_requests.sql",
        include_str!("../../migrations/sqlite/0006_authorization_requests.sql"),
    ),
    (
        "0007_refresh_tokens.sql",
        include_str!("../../migrations/sqlite/0007_refresh_tokens.sql"),
    ),
    (
        "0008_status_lists.sql",
        include_str!("../../migrations/sqlite/0008_status_lists.sql"),
    ),
    (
        "0009_wallet_notifications_and_deferred.sql",
        include_str!("../../migrations/sqlite/0009_wallet_notifications_and_deferred.sql"),
    ),
    (
        "0010_console.sql",
        include_str!("../../migrations/sqlite/0010_console.sql"),
    ),
    (
        "0011_listing_indexes.sql",
        include_str!("../../migrations/sqlite/0011_listing_indexes.sql"),
    ),
    (
        "0012_bounded_sweeps.sql",
        include_str!("../../migrations/sqlite/0012_bounded_sweeps.sql"),
    ),
];

/// Largest number of calls committed together.
const MAX_GROUP: usize = 128;
const READERS: usize = 3;
/// The writer connection's page cache, in KiB.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

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
        // Every write reads the index pages it changes: with a store of millions of sessions
        // each random key (ids, code and token hashes) lands on a leaf of its own, which the
        // default cache (2 MiB) has mostly lost by the next. Pages are cached as they are read,
        // so a small store never fills it.
        writer_conn
            .pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(db_error)?;
        migrate(&mut writer_conn)?;
        // One process owns an SQLite file: leases left by a crashed predecessor are void.
        writer_conn
            .execute(
                "UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL",
                [],
            )
            .map_err(db_error)?;
        let newest: i64 = writer_conn
            .query_row(sql::NEWEST_EVENT, [], |row| row.get(0))
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
        // Announced before any caller hears of its commit, so that what a caller reads next
        // (the overview's latest sequence, a stream) already knows its events.
        if committed.is_ok() && WROTE_EVENTS.with(std::cell::Cell::get) {
            match conn.query_row(sql::NEWEST_EVENT, [], |row| row.get(0)) {
                Ok(newest) => {
                    announce.send_replace(newest);
                }
                Err(error) => tracing::warn!(%error, "cannot read the newest event"),
            }
        }
        for job in group {
            job.finish(&committed);
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
fn insert_grant(
    conn: &Connection,
    session: SessionId,
    grant: &NewGrant,
    now: Millis,
) -> StoreResult<()> {
    conn.prepare_cached(sql::INSERT_GRANT)
        .and_then(|mut statement| {
            statement.execute(params![
                session.to_string(),
                grant.kind.as_str(),
                grant.secret_hash,
                grant.tx_code.as_ref().map(Value::to_string),
                grant.tx_code_mac,
                now,
                grant.expires_at,
                grant.request_id,
                grant.dpop_jkt,
            ])
        })
        .map_err(db_error)?;
    Ok(())
}

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

impl Columns for Row<'_> {
    fn text(&self, name: &str) -> StoreResult<String> {
        self.get(name).map_err(|error| column(name, error))
    }
    fn opt_text(&self, name: &str) -> StoreResult<Option<String>> {
        self.get(name).map_err(|error| column(name, error))
    }
    fn int(&self, name: &str) -> StoreResult<i64> {
        self.get(name).map_err(|error| column(name, error))
    }
    fn opt_int(&self, name: &str) -> StoreResult<Option<i64>> {
        self.get(name).map_err(|error| column(name, error))
    }
    fn flag(&self, name: &str) -> StoreResult<bool> {
        self.get(name).map_err(|error| column(name, error))
    }
    fn blob(&self, name: &str) -> StoreResult<Vec<u8>> {
        self.get(name).map_err(|error| column(name, error))
    }
}

fn column(name: &str, error: rusqlite::Error) -> StoreError {
    corrupt(format!("column {name}: {error}"))
}

type Convert<T> = fn(&dyn Columns) -> StoreResult<T>;

/// Runs a query and converts every row, surfacing both SQL and conversion errors.
fn collect<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    convert: Convert<T>,
) -> StoreResult<Vec<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(db_error)?;
    let mut rows = statement.query(params).map_err(db_error)?;
    let mut items = Vec::new();
    while let Some(row) = rows.next().map_err(db_error)? {
        items.push(convert(row)?);
    }
    Ok(items)
}

/// [`collect`] for listings: a row that does not convert is reported by its `id`, not fatal.
fn listing<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    convert: Convert<T>,
) -> StoreResult<Listing<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(db_error)?;
    let mut rows = statement.query(params).map_err(db_error)?;
    let mut listing = Listing { rows: Vec::new() };
    while let Some(row) = rows.next().map_err(db_error)? {
        listing.rows.push(convert(row).map_err(|error| Unreadable {
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
    convert: Convert<T>,
) -> StoreResult<Option<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(db_error)?;
    let mut rows = statement.query(params).map_err(db_error)?;
    match rows.next().map_err(db_error)? {
        Some(row) => convert(row).map(Some),
        None => Ok(None),
    }
}

fn session_where(
    conn: &Connection,
    condition: &str,
    value: &str,
) -> StoreResult<Option<SessionRecord>> {
    first(conn, &sql::session_where(condition), [value], rows::session)
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
        rows::profile,
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
        .prepare_cached("UPDATE deliveries SET lease_until = ?1 WHERE id = ?2")
        .map_err(db_error)?;
    let mut due = Vec::with_capacity(candidates.len());
    for (_, id) in candidates {
        lease.execute(params![lease_until, id]).map_err(db_error)?;
        due.push(
            first(
                conn,
                "SELECT d.id AS delivery_id, d.attempts, d.retry_step, \
                        e.seq, e.id, e.session_id, e.type, e.timestamp, e.data, \
                        w.url, w.bearer_token, w.secret, w.events AS webhook_events \
                 FROM deliveries d JOIN events e ON e.seq = d.event_seq \
                 JOIN webhooks w ON w.session_id = d.session_id WHERE d.id = ?",
                [id],
                rows::due_delivery,
            )?
            .ok_or_else(|| corrupt("delivery without event or webhook"))?,
        );
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
    let (status, next, step) = rows::consequence(outcome);
    let status = status.as_str();
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
        conn.execute(sql::GONE_MEANWHILE, params![now, delivery])
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
impl SettingsStore for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(db_error))
            .await
    }

    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.query_row(sql::SETTING, [name], |row| row.get(0))
                .optional()
                .map_err(db_error)
        })
        .await
    }

    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.execute(sql::INIT_SETTING, [&name, &value])
                .map_err(db_error)?;
            conn.query_row(sql::SETTING, [&name], |row| row.get(0))
                .map_err(db_error)
        })
        .await
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |conn| {
            let result = conn.execute(
                sql::INSERT_KEY,
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
        self.read(move |conn| first(conn, sql::KEY, [id.as_str()], rows::key))
            .await
    }

    async fn keys(&self) -> StoreResult<Listing<KeyRecord>> {
        self.read(|conn| listing(conn, sql::KEYS, [], rows::key))
            .await
    }

    async fn published_keys(&self) -> StoreResult<Listing<KeyRecord>> {
        self.read(|conn| {
            listing(
                conn,
                "SELECT * FROM keys WHERE published = 1 ORDER BY created_at, id",
                [],
                rows::key,
            )
        })
        .await
    }
}

#[async_trait]
impl ProfileStore for SqliteStore {
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
                sql::INSERT_PROFILE_VERSION,
                params![
                    profile.id.as_str(),
                    1,
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
                sql::INSERT_PROFILE_VERSION,
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
                rows::profile,
            ),
        })
        .await
    }

    async fn profiles(&self) -> StoreResult<Listing<ProfileRecord>> {
        self.read(|conn| listing(conn, &sql::PROFILES, [], rows::profile))
            .await
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(
        &self,
        session: &SessionRecord,
        grant: Option<&NewGrant>,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let (s, grant, event) = (session.clone(), grant.cloned(), event.clone());
        self.write(move |conn| {
            conn.prepare_cached(&sql::INSERT_SESSION)
                .and_then(|mut statement| {
                    statement.execute(params![
                        s.id.to_string(),
                        s.profile_id.as_str(),
                        s.profile_version,
                        s.credential_configuration_id,
                        s.status.as_str(),
                        s.status_reason,
                        s.offer_handle_hash,
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
            if let Some(grant) = &grant {
                insert_grant(conn, s.id, grant, s.created_at)?;
            }
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
        self.read(move |conn| first(conn, &sql::SESSION, [id.to_string()], rows::session))
            .await
    }

    async fn session_by(&self, lookup: SessionLookup<'_>) -> StoreResult<Option<SessionRecord>> {
        let (condition, hash) = match lookup {
            SessionLookup::OfferHandle(hash) => ("s.offer_handle_hash = $1", hash),
            SessionLookup::Grant(hash) => ("g.secret_hash = $1", hash),
        };
        let hash = hash.to_owned();
        self.read(move |conn| session_where(conn, condition, &hash))
            .await
    }

    async fn token_session(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(AccessTokenRecord, SessionRecord)>> {
        let hash = token_hash.to_owned();
        self.read(move |conn| first(conn, &sql::TOKEN_SESSION, [hash], rows::token_session))
            .await
    }

    async fn sessions(&self, filter: &SessionFilter) -> StoreResult<Listing<SessionRecord>> {
        let (statement, values) = sql::sessions_page(filter);
        self.read(move |conn| {
            let values = values.into_iter().map(|value| match value {
                sql::Bound::Text(text) => rusqlite::types::Value::Text(text),
                sql::Bound::Int(int) => rusqlite::types::Value::Integer(int),
            });
            listing(
                conn,
                &statement,
                rusqlite::params_from_iter(values),
                rows::session,
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
            conn.prepare_cached(sql::RESOLVED)
                .and_then(|mut statement| statement.execute(params![now, id.to_string()]))
                .map_err(db_error)?;
            insert_events(conn, &events)
        })
        .await
    }

    async fn record_tx_code_failure(
        &self,
        session: SessionId,
        grant: i64,
        failure: &TxCodeFailure,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied> {
        let (failure, events) = (failure.clone(), events.to_vec());
        self.write(move |conn| {
            // The writer is the only one: what is read here cannot change before the writes.
            let active: Option<i64> = conn
                .prepare_cached(
                    "SELECT 1 FROM sessions s JOIN grants g ON g.session_id = s.id \
                     WHERE s.id = ?1 AND s.status = 'ACTIVE' AND g.id = ?2 \
                     AND g.state = 'UNUSED' AND g.tx_code_failures = ?3",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row(
                            params![session.to_string(), grant, failure.seen_failures],
                            |row| row.get(0),
                        )
                        .optional()
                })
                .map_err(db_error)?;
            if active.is_none() {
                return Ok(Applied::Stale);
            }
            conn.prepare_cached(sql::COUNT_TX_CODE_FAILURE)
                .and_then(|mut statement| statement.execute(params![failure.locks, grant]))
                .map_err(db_error)?;
            let finish = if failure.locks {
                sql::LOCKED_OUT
            } else {
                sql::TOUCHED
            };
            conn.prepare_cached(finish)
                .and_then(|mut statement| statement.execute(params![now, session.to_string()]))
                .map_err(db_error)?;
            insert_events(conn, &events)?;
            Ok(Applied::Yes)
        })
        .await
    }

    async fn redeem_grant(
        &self,
        session: SessionId,
        grant: i64,
        token: &NewAccessToken,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied> {
        let (token, events) = (token.clone(), events.to_vec());
        self.write(move |conn| {
            let redeemed = conn
                .prepare_cached(
                    "UPDATE grants SET state = 'REDEEMED', redeemed_at = ?1 \
                     WHERE id = ?2 AND session_id = ?3 AND state = 'UNUSED' \
                     AND (expires_at IS NULL OR expires_at > ?1) AND EXISTS \
                     (SELECT 1 FROM sessions s WHERE s.id = ?3 \
                      AND ((s.status = 'ACTIVE' AND s.expires_at > ?1) \
                      OR (grants.kind = 'REFRESH_TOKEN' AND s.status = 'SUCCESSFUL')))",
                )
                .and_then(|mut statement| {
                    statement.execute(params![now, grant, session.to_string()])
                })
                .map_err(db_error)?;
            if redeemed == 0 {
                return Ok(Applied::Stale);
            }
            conn.prepare_cached(sql::INSERT_ACCESS_TOKEN)
                .and_then(|mut statement| {
                    statement.execute(params![
                        token.hash,
                        session.to_string(),
                        grant,
                        now,
                        token.expires_at,
                        token.dpop_jkt
                    ])
                })
                .map_err(db_error)?;
            if let Some(refresh) = &token.refresh {
                insert_grant(conn, session, refresh, now)?;
            }
            conn.prepare_cached(
                "UPDATE sessions SET token_issued_at = COALESCE(token_issued_at, ?1), \
                 updated_at = ?1, expires_at = MAX(expires_at, ?2) WHERE id = ?3",
            )
            .and_then(|mut statement| {
                statement.execute(params![now, token.expires_at, session.to_string()])
            })
            .map_err(db_error)?;
            insert_events(conn, &events)?;
            Ok(Applied::Yes)
        })
        .await
    }

    async fn sessions_due_for_expiry(
        &self,
        now: Millis,
        limit: u32,
    ) -> StoreResult<Vec<SessionId>> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(sql::DUE_FOR_EXPIRY).map_err(db_error)?;
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
            transition(conn, sql::EXPIRED, params![now, id.to_string()], &events)
        })
        .await
    }

    async fn purge(&self, finished_before: Millis, now: Millis, batch: u32) -> StoreResult<Purged> {
        self.write(move |conn| {
            let (count, last): (i64, Option<i64>) = conn
                .query_row(sql::PURGE_BATCH, params![finished_before, batch], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .map_err(db_error)?;
            let full = count >= i64::from(batch);
            let mut sessions = 0;
            if let Some(last) = last {
                let cut = if full { last + 1 } else { finished_before };
                for statement in sql::PURGE.iter() {
                    conn.execute(statement, [cut]).map_err(db_error)?;
                }
                sessions = conn.execute(sql::PURGE_SESSIONS, [cut]).map_err(db_error)?;
            }
            let mut more = full;
            for (statement, at) in [
                (sql::PURGE_CREDENTIALS, finished_before),
                (sql::PURGE_NONCES, now),
                (sql::PURGE_AUTHORIZATION_REQUESTS, now),
            ] {
                let removed = conn
                    .execute(statement, params![at, batch])
                    .map_err(db_error)?;
                more |= removed >= batch as usize;
            }
            Ok(Purged {
                sessions: sessions as u64,
                more,
            })
        })
        .await
    }
    async fn seed(&self, template: SessionId, batch: &SeedBatch) -> StoreResult<u64> {
        if batch.count == 0 {
            return Ok(0);
        }
        let statements = sql::seed_copies(&sql::SQLITE, &template.to_string(), batch);
        self.write(move |conn| {
            let mut events = 0;
            for statement in &statements {
                events = conn.execute(statement, []).map_err(db_error)?;
            }
            WROTE_EVENTS.with(|flag| flag.set(true));
            Ok(events as u64)
        })
        .await
    }
}

#[async_trait]
impl CredentialStore for SqliteStore {
    async fn complete_issuance(&self, issuance: &Issuance) -> StoreResult<IssuanceCommit> {
        let issuance = issuance.clone();
        self.write(move |conn| {
            let Issuance {
                session,
                token_hash,
                spends,
                credentials,
                finish,
                now,
                events,
            } = issuance;
            // Check before writing: the writer is the only one, so nothing can come between.
            let active: Option<i64> = conn
                .prepare_cached(
                    "SELECT 1 FROM sessions s JOIN access_tokens t ON t.session_id = s.id \
                     WHERE s.id = ?1 AND t.token_hash = ?2 AND (s.status = 'ACTIVE' \
                     OR (s.status = 'SUCCESSFUL' AND EXISTS (SELECT 1 FROM grants rg \
                     WHERE rg.id = t.grant_id AND rg.kind = 'REFRESH_TOKEN'))) \
                     AND t.expires_at > ?3",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row(params![session.to_string(), token_hash, now], |row| {
                            row.get(0)
                        })
                        .optional()
                })
                .map_err(db_error)?;
            if active.is_none() {
                return Ok(IssuanceCommit::SessionNotActive);
            }
            let fresh = match spends {
                Spent::Nonce { hash, expires_at } => conn
                    .prepare_cached(sql::USE_NONCE)
                    .and_then(|mut statement| statement.execute(params![hash, expires_at])),
                Spent::Deferred { transaction_hash } => conn
                    .prepare_cached(sql::SPEND_DEFERRED)
                    .and_then(|mut statement| statement.execute(params![now, transaction_hash])),
            }
            .map_err(db_error)?;
            if fresh == 0 {
                return Ok(IssuanceCommit::AlreadySpent);
            }
            let mut insert = conn
                .prepare_cached(&sql::INSERT_ISSUED_CREDENTIAL)
                .map_err(db_error)?;
            for credential in &credentials {
                insert
                    .execute(params![
                        credential.id,
                        credential.session_id.to_string(),
                        credential.credential_configuration_id,
                        credential.format,
                        credential.holder,
                        credential.issued_at,
                        credential.expires_at,
                        credential.status.as_ref().map(Value::to_string),
                        credential.status_entry.as_ref().map(|entry| &entry.list_id),
                        credential.status_entry.as_ref().map(|entry| entry.index),
                        credential.status_value,
                        credential.notification_id,
                    ])
                    .map_err(db_error)?;
            }
            let update = if finish { sql::SUCCEEDED } else { sql::TOUCHED };
            conn.prepare_cached(update)
                .and_then(|mut statement| statement.execute(params![now, session.to_string()]))
                .map_err(db_error)?;
            insert_events(conn, &events)?;
            Ok(IssuanceCommit::Issued)
        })
        .await
    }

    async fn issued_credentials(
        &self,
        session: SessionId,
    ) -> StoreResult<Vec<IssuedCredentialRecord>> {
        self.read(move |conn| {
            collect(
                conn,
                &sql::ISSUED_CREDENTIALS,
                [session.to_string()],
                rows::issued_credential,
            )
        })
        .await
    }

    async fn allocate_status_entry(
        &self,
        kind: StatusListKind,
        signer: &Value,
        bits: u8,
        size: i64,
        now: Millis,
    ) -> StoreResult<StatusAllocation> {
        let signer = signer.to_string();
        // The one writer: nothing comes between finding the list and taking its entry.
        self.write(move |conn| {
            let open = first(
                conn,
                &sql::OPEN_STATUS_LIST,
                params![kind.as_str(), signer, bits, size],
                rows::status_list,
            )?;
            let mut list = match open {
                Some(list) => list,
                None => {
                    let id = uuid::Uuid::new_v4().to_string();
                    conn.prepare_cached(sql::INSERT_STATUS_LIST)
                        .and_then(|mut statement| {
                            statement.execute(params![id, kind.as_str(), signer, bits, size, now])
                        })
                        .map_err(db_error)?;
                    first(conn, &sql::STATUS_LIST, [&id], rows::status_list)?
                        .ok_or_else(|| corrupt("the new status list"))?
                }
            };
            let position: i64 = conn
                .prepare_cached(sql::TAKE_STATUS_ENTRY)
                .and_then(|mut statement| statement.query_row([&list.id], |row| row.get(0)))
                .map_err(db_error)?;
            list.allocated = position + 1;
            Ok(StatusAllocation { list, position })
        })
        .await
    }

    async fn issued_credential(&self, id: &str) -> StoreResult<Option<IssuedCredentialRecord>> {
        let id = id.to_owned();
        self.read(move |conn| first(conn, &sql::ISSUED_CREDENTIAL, [id], rows::issued_credential))
            .await
    }

    async fn change_credential_status(
        &self,
        id: &str,
        from: u8,
        to: u8,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied> {
        let (id, events) = (id.to_owned(), events.to_vec());
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(sql::CHANGE_CREDENTIAL_STATUS)
                .and_then(|mut statement| statement.execute(params![to, id, from]))
                .map_err(db_error)?;
            if changed == 0 {
                return Ok(Applied::Stale);
            }
            conn.prepare_cached(sql::TOUCH_STATUS_LIST)
                .and_then(|mut statement| statement.execute(params![now, id]))
                .map_err(db_error)?;
            insert_events(conn, &events)?;
            Ok(Applied::Yes)
        })
        .await
    }

    async fn status_list(&self, id: &str) -> StoreResult<Option<StatusListRecord>> {
        let id = id.to_owned();
        self.read(move |conn| first(conn, &sql::STATUS_LIST, [id], rows::status_list))
            .await
    }

    async fn status_entries(&self, list_id: &str) -> StoreResult<Vec<(i64, u8)>> {
        let list_id = list_id.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(sql::STATUS_ENTRIES).map_err(db_error)?;
            let rows = statement
                .query_map([list_id], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(db_error)?;
            rows.collect::<Result<Vec<(i64, u8)>, _>>()
                .map_err(db_error)
        })
        .await
    }

    async fn defer_issuance(&self, deferral: &Deferral) -> StoreResult<IssuanceCommit> {
        let d = deferral.clone();
        self.write(move |conn| {
            let session = d.session.to_string();
            let active: Option<i64> = conn
                .prepare_cached(
                    "SELECT 1 FROM sessions s JOIN access_tokens t ON t.session_id = s.id \
                     WHERE s.id = ?1 AND t.token_hash = ?2 AND s.status = 'ACTIVE' \
                     AND t.expires_at > ?3",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row(params![session, d.token_hash, d.now], |row| row.get(0))
                        .optional()
                })
                .map_err(db_error)?;
            // A session defers once; checked before writing (the writer is the only one).
            let deferred: Option<i64> = conn
                .prepare_cached("SELECT 1 FROM deferred_transactions WHERE session_id = ?1")
                .and_then(|mut statement| {
                    statement.query_row([&session], |row| row.get(0)).optional()
                })
                .map_err(db_error)?;
            if active.is_none() || deferred.is_some() {
                return Ok(IssuanceCommit::SessionNotActive);
            }
            let fresh = conn
                .prepare_cached(sql::USE_NONCE)
                .and_then(|mut statement| {
                    statement.execute(params![d.nonce_hash, d.nonce_expires_at])
                })
                .map_err(db_error)?;
            if fresh == 0 {
                return Ok(IssuanceCommit::AlreadySpent);
            }
            conn.prepare_cached(&sql::INSERT_DEFERRED)
                .and_then(|mut statement| {
                    statement.execute(params![
                        session,
                        d.transaction_hash,
                        d.holders.to_string(),
                        DeferredState::Pending.as_str(),
                        Option::<String>::None,
                        d.now,
                        d.now,
                    ])
                })
                .map_err(db_error)?;
            conn.prepare_cached(sql::EXTEND_SESSION)
                .and_then(|mut statement| statement.execute(params![d.expires_at, d.now, session]))
                .map_err(db_error)?;
            conn.prepare_cached(sql::EXTEND_TOKEN)
                .and_then(|mut statement| statement.execute(params![d.expires_at, d.token_hash]))
                .map_err(db_error)?;
            insert_events(conn, &d.events)?;
            Ok(IssuanceCommit::Issued)
        })
        .await
    }

    async fn deferred_transaction(
        &self,
        lookup: DeferredLookup<'_>,
    ) -> StoreResult<Option<DeferredRecord>> {
        let (statement, key) = match lookup {
            DeferredLookup::Session(session) => (&*sql::DEFERRED_BY_SESSION, session.to_string()),
            DeferredLookup::TransactionHash(hash) => (&*sql::DEFERRED_BY_HASH, hash.to_owned()),
        };
        self.read(move |conn| first(conn, statement, [key], rows::deferred))
            .await
    }

    async fn resolve_deferred(
        &self,
        session: SessionId,
        outcome: &DeferredOutcome,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied> {
        let (outcome, events, session) = (outcome.clone(), events.to_vec(), session.to_string());
        self.write(move |conn| {
            // Checked before writing (the writer is the only one): a session still ACTIVE.
            let active: Option<i64> = conn
                .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1 AND status = 'ACTIVE'")
                .and_then(|mut statement| {
                    statement.query_row([&session], |row| row.get(0)).optional()
                })
                .map_err(db_error)?;
            if active.is_none() {
                return Ok(Applied::Stale);
            }
            let (state, reason) = match &outcome {
                DeferredOutcome::Ready { .. } => (DeferredState::Ready, None),
                DeferredOutcome::Failed { reason } => (DeferredState::Failed, Some(reason)),
            };
            let resolved = conn
                .prepare_cached(sql::RESOLVE_DEFERRED)
                .and_then(|mut statement| {
                    statement.execute(params![state.as_str(), reason, now, session])
                })
                .map_err(db_error)?;
            if resolved == 0 {
                return Ok(Applied::Stale);
            }
            match &outcome {
                DeferredOutcome::Ready { template } => conn
                    .prepare_cached(sql::READY_TEMPLATE)
                    .and_then(|mut statement| statement.execute(params![template, now, session])),
                DeferredOutcome::Failed { .. } => conn
                    .prepare_cached(sql::DEFERRED_FAILED)
                    .and_then(|mut statement| statement.execute(params![now, session])),
            }
            .map_err(db_error)?;
            insert_events(conn, &events)?;
            Ok(Applied::Yes)
        })
        .await
    }

    async fn record_wallet_notification(
        &self,
        notification: &WalletNotification,
    ) -> StoreResult<NotificationReceipt> {
        let n = notification.clone();
        self.write(move |conn| {
            let session = n.session.to_string();
            let known: Option<i64> = conn
                .prepare_cached(sql::NOTIFIED_CREDENTIAL)
                .and_then(|mut statement| {
                    statement
                        .query_row(params![n.notification_id, session], |row| row.get(0))
                        .optional()
                })
                .map_err(db_error)?;
            if known.is_none() {
                return Ok(NotificationReceipt::Unknown);
            }
            let recorded = conn
                .prepare_cached(sql::INSERT_WALLET_NOTIFICATION)
                .and_then(|mut statement| {
                    statement.execute(params![n.notification_id, n.event, session, n.now])
                })
                .map_err(db_error)?;
            if recorded == 0 {
                return Ok(NotificationReceipt::Repeated);
            }
            insert_events(conn, &n.events)?;
            Ok(NotificationReceipt::Recorded)
        })
        .await
    }
}

#[async_trait]
impl AuthorizationStore for SqliteStore {
    async fn create_authorization_request(
        &self,
        request: &AuthorizationRequestRecord,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        let (r, events) = (request.clone(), events.to_vec());
        self.write(move |conn| {
            conn.prepare_cached(&sql::INSERT_AUTHORIZATION_REQUEST)
                .and_then(|mut statement| {
                    statement.execute(params![
                        r.id,
                        r.request_uri_hash,
                        r.state_hash,
                        r.session_id.map(|id| id.to_string()),
                        r.profile_id.as_str(),
                        r.client_id,
                        r.parameters.to_string(),
                        r.status.as_str(),
                        r.created_at,
                        r.expires_at,
                    ])
                })
                .map_err(db_error)?;
            insert_events(conn, &events)
        })
        .await
    }

    async fn authorization_request(
        &self,
        lookup: RequestLookup<'_>,
    ) -> StoreResult<Option<AuthorizationRequestRecord>> {
        let (statement, hash): (&'static str, String) = match lookup {
            RequestLookup::RequestUri(hash) => (&sql::REQUEST_BY_URI, hash.to_owned()),
            RequestLookup::State(hash) => (&sql::REQUEST_BY_STATE, hash.to_owned()),
        };
        self.read(move |conn| first(conn, statement, [hash], rows::authorization_request))
            .await
    }

    async fn start_login(
        &self,
        id: &str,
        state_hash: &str,
        expires_at: Millis,
        now: Millis,
    ) -> StoreResult<Applied> {
        let (id, state_hash) = (id.to_owned(), state_hash.to_owned());
        self.write(move |conn| {
            let started = conn
                .prepare_cached(sql::START_LOGIN)
                .and_then(|mut statement| {
                    statement.execute(params![state_hash, expires_at, id, now])
                })
                .map_err(db_error)?;
            Ok(applied(started))
        })
        .await
    }

    async fn complete_authorization(
        &self,
        completion: &AuthorizationCompletion,
    ) -> StoreResult<Applied> {
        let c = completion.clone();
        self.write(move |conn| {
            let completed = conn
                .prepare_cached(sql::COMPLETE_AUTHORIZATION)
                .and_then(|mut statement| {
                    statement.execute(params![
                        c.session.to_string(),
                        c.grant.expires_at,
                        c.request_id
                    ])
                })
                .map_err(db_error)?;
            if completed == 0 {
                return Ok(Applied::Stale);
            }
            conn.prepare_cached(sql::SET_TEMPLATE)
                .and_then(|mut statement| {
                    statement.execute(params![c.template, c.now, c.session.to_string()])
                })
                .map_err(db_error)?;
            conn.prepare_cached(sql::USE_ISSUER_STATE)
                .and_then(|mut statement| statement.execute(params![c.now, c.session.to_string()]))
                .map_err(db_error)?;
            insert_grant(conn, c.session, &c.grant, c.now)?;
            insert_events(conn, &c.events)?;
            Ok(Applied::Yes)
        })
        .await
    }

    async fn fail_authorization(&self, id: &str, events: &[NewEvent]) -> StoreResult<Applied> {
        let (id, events) = (id.to_owned(), events.to_vec());
        self.write(move |conn| {
            let failed = conn
                .prepare_cached(sql::FAIL_AUTHORIZATION)
                .and_then(|mut statement| statement.execute(params![id]))
                .map_err(db_error)?;
            if failed == 0 {
                return Ok(Applied::Stale);
            }
            insert_events(conn, &events)?;
            Ok(Applied::Yes)
        })
        .await
    }

    async fn request_grant(
        &self,
        kind: GrantKind,
        secret_hash: &str,
    ) -> StoreResult<Option<(GrantRecord, AuthorizationRequestRecord, SessionRecord)>> {
        let hash = secret_hash.to_owned();
        self.read(move |conn| {
            first(
                conn,
                &sql::CODE_GRANT,
                [hash, kind.as_str().to_owned()],
                rows::code_grant,
            )
        })
        .await
    }

    async fn revoke_request(&self, request_id: &str, events: &[NewEvent]) -> StoreResult<u64> {
        let (request_id, events) = (request_id.to_owned(), events.to_vec());
        self.write(move |conn| {
            let revoked = conn
                .prepare_cached(sql::REVOKE_REQUEST_TOKENS)
                .and_then(|mut statement| statement.execute(params![request_id]))
                .map_err(db_error)?;
            conn.prepare_cached(sql::LOCK_REQUEST_GRANTS)
                .and_then(|mut statement| statement.execute(params![request_id]))
                .map_err(db_error)?;
            insert_events(conn, &events)?;
            Ok(revoked as u64)
        })
        .await
    }
}

fn applied(rows: usize) -> Applied {
    if rows == 0 {
        Applied::Stale
    } else {
        Applied::Yes
    }
}

#[async_trait]
impl ReplayStore for SqliteStore {
    async fn record_use(&self, hash: &str, remember_until: Millis) -> StoreResult<Applied> {
        let hash = hash.to_owned();
        self.write(move |conn| {
            let fresh = conn
                .prepare_cached(sql::USE_NONCE)
                .and_then(|mut statement| statement.execute(params![hash, remember_until]))
                .map_err(db_error)?;
            Ok(if fresh == 0 {
                Applied::Stale
            } else {
                Applied::Yes
            })
        })
        .await
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        let events = events.to_vec();
        self.write(move |conn| insert_events(conn, &events)).await
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
                &sql::SESSION_EVENTS,
                params![id.to_string(), after_seq, limit],
                rows::event,
            ),
            None => collect(conn, &sql::EVENTS, params![after_seq, limit], rows::event),
        })
        .await
    }

    fn watch_events(&self) -> watch::Receiver<i64> {
        self.newest_event.clone()
    }
}

#[async_trait]
impl Outbox for SqliteStore {
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

    async fn delivery_backlog(&self) -> StoreResult<Vec<Backlog>> {
        self.read(|conn| collect(conn, sql::DELIVERY_BACKLOG, [], rows::backlog))
            .await
    }

    async fn session_deliveries(&self, id: SessionId) -> StoreResult<Vec<DeliveryRecord>> {
        self.read(move |conn| {
            let id = id.to_string();
            let mut records = collect(conn, sql::SESSION_DELIVERIES, [&id], rows::delivery)?;
            let attempts = collect(
                conn,
                sql::SESSION_DELIVERY_ATTEMPTS,
                [&id],
                rows::delivery_attempt,
            )?;
            rows::attach_attempts(&mut records, attempts);
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

#[async_trait]
impl OperatorStore for SqliteStore {
    async fn open_console_session(
        &self,
        session: &ConsoleSessionRecord,
        now: Millis,
    ) -> StoreResult<()> {
        let s = session.clone();
        self.write(move |conn| {
            conn.prepare_cached(sql::FORGET_EXPIRED_CONSOLE_SESSIONS)
                .and_then(|mut statement| statement.execute([now]))
                .map_err(db_error)?;
            conn.prepare_cached(sql::INSERT_CONSOLE_SESSION)
                .and_then(|mut statement| {
                    statement.execute(params![
                        s.id_hash,
                        s.key_fingerprint,
                        s.created_at,
                        s.expires_at
                    ])
                })
                .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn console_session(
        &self,
        id_hash: &str,
        now: Millis,
    ) -> StoreResult<Option<ConsoleSessionRecord>> {
        let id_hash = id_hash.to_owned();
        self.read(move |conn| {
            let found = collect(
                conn,
                sql::CONSOLE_SESSION,
                params![id_hash, now],
                rows::console_session,
            )?;
            Ok(found.into_iter().next())
        })
        .await
    }

    async fn close_console_session(&self, id_hash: &str) -> StoreResult<bool> {
        let id_hash = id_hash.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(sql::CLOSE_CONSOLE_SESSION)
                .and_then(|mut statement| statement.execute([id_hash]))
                .map(|closed| closed > 0)
                .map_err(db_error)
        })
        .await
    }

    async fn session_counts(&self, since: Millis) -> StoreResult<Vec<SessionCount>> {
        self.read(move |conn| collect(conn, sql::SESSION_COUNTS, [since], rows::session_count))
            .await
    }

    async fn delivery_counts(&self, since: Millis) -> StoreResult<Vec<DeliveryCount>> {
        self.read(move |conn| collect(conn, sql::DELIVERY_COUNTS, [since], rows::delivery_count))
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
            offer_grant: None,
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
                .create_session(&session, None, &event(session.id))
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

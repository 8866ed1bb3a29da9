//! The server store: PostgreSQL through a small pool of `tokio-postgres` connections.
//!
//! Every store call is one transaction on one pooled connection. Unlike SQLite, several
//! instances (and several calls of one instance) write at once, so where the SQLite store could
//! read and then write (its writer thread is alone) this one locks what it reads
//! (`SELECT ... FOR UPDATE`) or lets one conditional statement decide.
//!
//! Event sequence numbers are handed out under a transaction-level advisory lock, so events
//! commit in sequence order: a reader that has seen sequence N has seen everything before it
//! (live streams and `watch_events` rely on that, as they do with SQLite's single writer).
//! A transaction that wrote events sends `NOTIFY vellum_events, '<seq>'`; one dedicated
//! connection LISTENs, and also polls the newest sequence every second in case a notification
//! was lost with a connection.
//!
//! Requests go out pipelined ([`pipeline`]): BEGIN with a transaction's first statement, and
//! its last writes, its events' statement and COMMIT together ([`Tx::commit_with`]), so the
//! event-log lock is held for one statement and the commit's flush, never across a round trip.
//!
//! Deliveries are claimed per URL under a try-lock (another claimer working on the URL is
//! skipped, so the per-URL limit holds across instances) and row by row with
//! `FOR UPDATE SKIP LOCKED`. Leases are never voided at open: other instances may hold them.

use std::collections::HashMap;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::sync::{Semaphore, SemaphorePermit, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Config, GenericClient, NoTls, Row, Statement};
use tokio_util::sync::CancellationToken;

use super::rows::{self, Columns, PROFILE_SELECT, corrupt};
use super::sql;
use super::*;

/// Migrations in order; file names match `migrations/sqlite/` (checked by a test).
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_initial.sql",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        "0002_notifications.sql",
        include_str!("../../migrations/postgres/0002_notifications.sql"),
    ),
    (
        "0003_deliveries_pending.sql",
        include_str!("../../migrations/postgres/0003_deliveries_pending.sql"),
    ),
    (
        "0004_grants_and_issued_credentials.sql",
        include_str!("../../migrations/postgres/0004_grants_and_issued_credentials.sql"),
    ),
    (
        "0005_dpop.sql",
        include_str!("../../migrations/postgres/0005_dpop.sql"),
    ),
    (
        "0006_authorization_requests.sql",
        include_str!("../../migrations/postgres/0006_authorization_requests.sql"),
    ),
    (
        "0007_refresh_tokens.sql",
        include_str!("../../migrations/postgres/0007_refresh_tokens.sql"),
    ),
    (
        "0008_status_lists.sql",
        include_str!("../../migrations/postgres/0008_status_lists.sql"),
    ),
    (
        "0009_wallet_notifications_and_deferred.sql",
        include_str!("../../migrations/postgres/0009_wallet_notifications_and_deferred.sql"),
    ),
    (
        "0010_console.sql",
        include_str!("../../migrations/postgres/0010_console.sql"),
    ),
    (
        "0011_listing_indexes.sql",
        include_str!("../../migrations/postgres/0011_listing_indexes.sql"),
    ),
    (
        "0012_bounded_sweeps.sql",
        include_str!("../../migrations/postgres/0012_bounded_sweeps.sql"),
    ),
];

/// How many connections, and how long opening one may take.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    pub size: usize,
    pub connect_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            size: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}
/// The LISTEN/NOTIFY channel announcing committed events.
const EVENTS_CHANNEL: &str = "vellum_events";
/// Advisory lock keys (one namespace for the whole service, chosen arbitrarily).
const MIGRATION_LOCK: i64 = 0x7665_6c6c_756d_0001;
const EVENT_LOG_LOCK: i64 = 0x7665_6c6c_756d_0002;
/// First key of the two-key advisory locks taken per webhook URL while claiming.
const CLAIM_LOCK_SPACE: i32 = 0x7665_6c6c;
/// How often the listener reads the newest sequence, in case a notification was missed.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

fn db_error(error: tokio_postgres::Error) -> StoreError {
    let unavailable = match error.code() {
        // No server answer at all: I/O, a closed connection, a timeout.
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            // Connection exceptions, transaction rollback (a deadlock or serialization victim:
            // nothing was applied, a retry may succeed), insufficient resources, operator
            // intervention (e.g. the server shutting down).
            matches!(class, "08" | "40" | "53" | "57")
        }
    };
    if unavailable {
        // The driver's message ("error connecting to server") leaves the why to its source.
        let mut text = error.to_string();
        if let Some(cause) = std::error::Error::source(&error) {
            text = format!("{text}: {cause}");
        }
        StoreError::Unavailable(text)
    } else {
        StoreError::Database(Box::new(error))
    }
}

fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

fn count(value: u32) -> i64 {
    i64::from(value)
}

/// Moves the announced sequence forward, never back.
fn advance(announce: &watch::Sender<i64>, seq: i64) {
    announce.send_if_modified(|newest| {
        if seq > *newest {
            *newest = seq;
            true
        } else {
            false
        }
    });
}

struct Pool {
    config: Config,
    idle: Mutex<Vec<(Client, Arc<Statements>)>>,
    permits: Semaphore,
}

/// The statements prepared on one connection, by SQL text. tokio-postgres sends a statement
/// given as text to be parsed and planned before every execution (a round trip of its own);
/// prepared once per connection, each later call is one round trip and no parsing.
#[derive(Default)]
struct Statements(Mutex<HashMap<String, Statement>>);

/// What a [`Db`] runs its statements on: a connection, or a [`Tx`] on one.
trait Session: Sync {
    fn client(&self) -> &Client;
    /// Whether BEGIN has yet to go out: it does with the transaction's first statement.
    fn begins(&self) -> bool;
}

impl Session for Client {
    fn client(&self) -> &Client {
        self
    }
    fn begins(&self) -> bool {
        false
    }
}

/// A connection or a transaction on it, with the connection's prepared statements: the store
/// runs every statement through this.
struct Db<'a, S> {
    session: &'a S,
    statements: &'a Statements,
}

impl<S> Clone for Db<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Db<'_, S> {}

impl<'a, S: Session> Db<'a, S> {
    fn new(session: &'a S, statements: &'a Statements) -> Self {
        Db {
            session,
            statements,
        }
    }

    fn client(&self) -> &'a Client {
        self.session.client()
    }

    async fn statement(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        let cached = self
            .statements
            .0
            .lock()
            .ok()
            .and_then(|statements| statements.get(sql).cloned());
        if let Some(statement) = cached {
            return Ok(statement);
        }
        let statement = self.client().prepare(sql).await?;
        if let Ok(mut statements) = self.statements.0.lock() {
            statements.insert(sql.to_owned(), statement.clone());
        }
        Ok(statement)
    }

    /// Sends `request`, behind a BEGIN if it is its transaction's first statement: one round
    /// trip for both. (A request goes out when first polled, so `biased` keeps the order.)
    async fn run<T>(
        &self,
        request: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, tokio_postgres::Error> {
        if self.session.begins() {
            let (begun, result) =
                tokio::join!(biased; self.client().batch_execute("BEGIN"), request);
            begun?;
            result
        } else {
            request.await
        }
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.run(self.client().query(&statement, params)).await
    }

    async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.run(self.client().query_one(&statement, params)).await
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.run(self.client().query_opt(&statement, params)).await
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.run(self.client().execute(&statement, params)).await
    }

    /// Runs `statements` in one round trip, in order (see [`pipeline`]); returns the rows each
    /// changed (or, a SELECT, found). The first error is the answer.
    async fn execute_all(
        &self,
        statements: &[(&str, &[&(dyn ToSql + Sync)])],
    ) -> Result<Vec<u64>, tokio_postgres::Error> {
        let mut prepared = Vec::with_capacity(statements.len());
        for (sql, _) in statements {
            prepared.push(self.statement(sql).await?);
        }
        let client = self.client();
        let requests = prepared
            .iter()
            .zip(statements)
            .map(|(statement, (_, params))| Box::pin(client.execute(statement, params)))
            .collect();
        self.run(async { pipeline(requests).await.into_iter().collect() })
            .await
    }

    /// A statement run once (not prepared and kept): generated ones such as seeding's.
    async fn execute_once(&self, sql: &str) -> Result<u64, tokio_postgres::Error> {
        self.run(self.client().execute(sql, &[])).await
    }
}

/// A connection taken from the pool; it goes back when dropped (unless it has closed).
struct Conn<'a> {
    client: Option<Client>,
    statements: Arc<Statements>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
}

impl<'p> Conn<'p> {
    /// Statements outside a transaction.
    fn db(&self) -> Db<'_, Client> {
        Db::new(&**self, &self.statements)
    }

    /// A transaction. Nothing is sent yet: BEGIN goes with its first statement, and COMMIT with
    /// its events (see [`Tx::commit_with`]).
    fn begin(&mut self) -> Tx<'_, 'p> {
        Tx {
            conn: self,
            begun: AtomicBool::new(false),
            done: false,
        }
    }
}

/// A transaction on a pooled connection. One dropped without [`Tx::commit`] (an early return,
/// an error, a cancelled request) sends ROLLBACK as it goes, ahead of whatever the connection
/// runs next.
struct Tx<'t, 'p> {
    conn: &'t mut Conn<'p>,
    begun: AtomicBool,
    done: bool,
}

impl Session for Tx<'_, '_> {
    fn client(&self) -> &Client {
        self.conn
    }
    fn begins(&self) -> bool {
        !self.begun.swap(true, Ordering::Relaxed)
    }
}

impl Tx<'_, '_> {
    fn db(&self) -> Db<'_, Self> {
        Db::new(self, &self.conn.statements)
    }

    async fn commit(self) -> StoreResult<()> {
        self.commit_with(&[], &[]).await.map(|_| ())
    }

    /// [`Tx::commit_with`] with no writes of its own.
    async fn commit_events(self, events: &[NewEvent]) -> StoreResult<Option<i64>> {
        self.commit_with(&[], events).await
    }

    /// Runs `writes`, appends `events` and commits, all in one round trip: each statement goes
    /// out behind the one before, and COMMIT last (after a statement that fails, it rolls the
    /// transaction back, and that statement's error is the answer). Returns the newest sequence
    /// written, to announce. A transaction of one statement is that statement, committed on
    /// its own.
    ///
    /// The events statement appends the events and, for the session's webhook when it wants
    /// that event type, one delivery per event (the transactional outbox), and sends the NOTIFY.
    /// It takes the event-log lock, which is held until COMMIT so that sequences become visible
    /// in order (see the module comment); every instance's event-writing transactions queue on
    /// it, so it is held for that statement and the commit's flush, never across a round trip
    /// to this instance and back.
    async fn commit_with(
        mut self,
        writes: &[(&str, &[&(dyn ToSql + Sync)])],
        events: &[NewEvent],
    ) -> StoreResult<Option<i64>> {
        let begun = *self.begun.get_mut();
        let db = self.db();
        // Prepared first: nothing may go out between these statements and their COMMIT.
        let mut prepared = Vec::with_capacity(writes.len());
        for (sql, _) in writes {
            prepared.push(db.statement(sql).await.map_err(db_error)?);
        }
        let append = match events {
            [] => None,
            _ => Some(db.statement(INSERT_EVENTS).await.map_err(db_error)?),
        };
        let columns = EventColumns::of(events);
        let events_params = columns.params();
        let client = db.client();
        let wrapped = begun || writes.len() + usize::from(append.is_some()) > 1;
        let mut requests: Vec<Request<'_>> = Vec::with_capacity(writes.len() + 3);
        if wrapped && !begun {
            requests.push(Box::pin(async {
                client.batch_execute("BEGIN").await.map(|()| Answer::Done)
            }));
        }
        for (statement, (_, params)) in prepared.iter().zip(writes) {
            requests.push(Box::pin(async move {
                client
                    .execute(statement, params)
                    .await
                    .map(|_| Answer::Done)
            }));
        }
        if let Some(statement) = &append {
            requests.push(Box::pin(async {
                client
                    .query_one(statement, &events_params)
                    .await
                    .map(Answer::Row)
            }));
        }
        if wrapped {
            requests.push(Box::pin(async {
                client.batch_execute("COMMIT").await.map(|()| Answer::Done)
            }));
        }
        let answers = pipeline(requests).await;
        self.done = true;
        let mut newest = None;
        for answer in answers {
            if let Answer::Row(row) = answer.map_err(db_error)? {
                let seq: Option<i64> = row.try_get(0).map_err(db_error)?;
                newest = Some(seq.ok_or_else(|| corrupt("no event was written"))?);
            }
        }
        Ok(newest)
    }
}

/// What one request of a [`pipeline`] answered.
enum Answer {
    Row(Row),
    Done,
}

type Request<'a> = Pin<Box<dyn Future<Output = Result<Answer, tokio_postgres::Error>> + Send + 'a>>;

/// Sends `requests` in one round trip and waits for every answer. A request goes out when it is
/// first polled, so polling each in order sends them in order, and PostgreSQL answers them in
/// that order.
async fn pipeline<F: Future + Unpin>(mut requests: Vec<F>) -> Vec<F::Output> {
    let mut answers: Vec<Option<F::Output>> = requests.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (request, answer) in requests.iter_mut().zip(answers.iter_mut()) {
            if answer.is_none() {
                match Pin::new(request).poll(cx) {
                    Poll::Ready(output) => *answer = Some(output),
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    answers.into_iter().flatten().collect()
}

impl Drop for Tx<'_, '_> {
    fn drop(&mut self) {
        if !self.done && *self.begun.get_mut() {
            // A request goes out when first polled; its answer is not waited for.
            let _ = self.conn.batch_execute("ROLLBACK").now_or_never();
        }
    }
}

/// The events statement of [`Tx::commit_with`].
const INSERT_EVENTS: &str = "WITH locked AS (SELECT pg_advisory_xact_lock($1)), \
     inserted AS ( \
       INSERT INTO events (id, session_id, type, timestamp, data) \
       SELECT e.id, e.session_id, e.type, e.timestamp, e.data \
       FROM locked, unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[]) \
            WITH ORDINALITY AS e(id, session_id, type, timestamp, data, position) \
       ORDER BY e.position \
       RETURNING seq, session_id, type, timestamp), \
     outbox AS ( \
       INSERT INTO deliveries \
         (event_seq, session_id, url, status, next_attempt_at, created_at) \
       SELECT i.seq, w.session_id, w.url, \
              CASE WHEN g.url IS NULL THEN 'PENDING' ELSE 'GONE' END, \
              i.timestamp, i.timestamp \
       FROM inserted i JOIN webhooks w ON w.session_id = i.session_id \
       LEFT JOIN gone_webhook_urls g ON g.url = w.url \
       WHERE w.events IS NULL OR w.events @> jsonb_build_array(i.type)) \
     SELECT MAX(seq), pg_notify($7, MAX(seq)::text)::text FROM inserted";

/// Events as the column arrays [`INSERT_EVENTS`] unnests.
struct EventColumns<'a> {
    ids: Vec<&'a str>,
    sessions: Vec<Option<String>>,
    types: Vec<&'a str>,
    timestamps: Vec<Millis>,
    data: Vec<String>,
}

impl<'a> EventColumns<'a> {
    fn of(events: &'a [NewEvent]) -> Self {
        EventColumns {
            ids: events.iter().map(|event| event.id.as_str()).collect(),
            sessions: events
                .iter()
                .map(|event| event.session_id.map(|id| id.to_string()))
                .collect(),
            types: events
                .iter()
                .map(|event| event.event_type.as_str())
                .collect(),
            timestamps: events.iter().map(|event| event.timestamp).collect(),
            data: events.iter().map(|event| event.data.to_string()).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &EVENT_LOG_LOCK,
            &self.ids,
            &self.sessions,
            &self.types,
            &self.timestamps,
            &self.data,
            &EVENTS_CHANNEL,
        ]
    }
}

impl Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a pooled connection is present until dropped")
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("a pooled connection is present until dropped")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !client.is_closed()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push((client, self.statements.clone()));
        }
    }
}

async fn connect(config: &Config) -> StoreResult<Client> {
    let (client, connection) = config.connect(NoTls).await.map_err(db_error)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

impl Pool {
    async fn get(&self) -> StoreResult<Conn<'_>> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the pool is closed".into()))?;
        let reused = {
            let mut idle = self
                .idle
                .lock()
                .map_err(|_| StoreError::Unavailable("the pool is poisoned".into()))?;
            let mut found = None;
            while let Some((client, statements)) = idle.pop() {
                if !client.is_closed() {
                    found = Some((client, statements));
                    break;
                }
            }
            found
        };
        let (client, statements) = match reused {
            Some(reused) => reused,
            None => (connect(&self.config).await?, Arc::default()),
        };
        Ok(Conn {
            client: Some(client),
            statements,
            pool: self,
            _permit: permit,
        })
    }
}

pub struct PostgresStore {
    pool: Pool,
    announce: Arc<watch::Sender<i64>>,
    newest_event: watch::Receiver<i64>,
    stop: CancellationToken,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/database`), migrates, and starts listening
    /// for committed events.
    pub async fn open(url: &str, options: PoolOptions) -> StoreResult<PostgresStore> {
        let mut config: Config = url
            .parse()
            .map_err(|error: tokio_postgres::Error| StoreError::Unavailable(error.to_string()))?;
        config.connect_timeout(options.connect_timeout);
        let pool = Pool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(options.size),
        };
        {
            let mut conn = pool.get().await?;
            migrate(&mut conn).await?;
        }
        let newest = newest_seq(&*pool.get().await?).await?;
        let (announce, newest_event) = watch::channel(newest);
        let announce = Arc::new(announce);
        let stop = CancellationToken::new();
        tokio::spawn(listen(pool.config.clone(), announce.clone(), stop.clone()));
        Ok(PostgresStore {
            pool,
            announce,
            newest_event,
            stop,
        })
    }

    /// Announces events committed by this instance at once (the NOTIFY comes round later).
    fn committed(&self, newest: Option<i64>) {
        if let Some(seq) = newest {
            advance(&self.announce, seq);
        }
    }

    /// A conditional UPDATE and, when it changed a row, the events announcing the change, in
    /// one transaction: the shape of every state transition. Returns whether it applied.
    async fn transition(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        let changed = db.execute(sql, params).await.map_err(db_error)?;
        if changed == 0 {
            return Ok(false);
        }
        let newest = tx.commit_events(events).await?;
        self.committed(newest);
        Ok(true)
    }
}

async fn newest_seq(client: &impl GenericClient) -> StoreResult<i64> {
    let row = client
        .query_one(sql::NEWEST_EVENT, &[])
        .await
        .map_err(db_error)?;
    Ok(row.get(0))
}

async fn migrate(client: &mut Client) -> StoreResult<()> {
    // Under the lock too: instances starting together on an empty database would otherwise race
    // on creating the table (CREATE TABLE IF NOT EXISTS is not safe against itself).
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations \
         (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    for (name, sql) in MIGRATIONS {
        let tx = client.transaction().await.map_err(db_error)?;
        // Instances starting together migrate one after the other.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db_error)?;
        let applied = tx
            .query_opt("SELECT 1 FROM schema_migrations WHERE name = $1", &[name])
            .await
            .map_err(db_error)?;
        if applied.is_none() {
            tx.batch_execute(sql).await.map_err(db_error)?;
            tx.execute(
                "INSERT INTO schema_migrations (name, applied_at) \
                 VALUES ($1, EXTRACT(EPOCH FROM now())::bigint)",
                &[name],
            )
            .await
            .map_err(db_error)?;
            tracing::info!(migration = name, "applied migration");
        }
        tx.commit().await.map_err(db_error)?;
    }
    Ok(())
}

/// Follows committed events on a dedicated connection: LISTEN, plus a poll as a backstop.
async fn listen(config: Config, announce: Arc<watch::Sender<i64>>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        if let Err(error) = follow(&config, &announce, &stop).await {
            tracing::warn!(%error, "PostgreSQL event listener disconnected");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

async fn follow(
    config: &Config,
    announce: &Arc<watch::Sender<i64>>,
    stop: &CancellationToken,
) -> StoreResult<()> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(db_error)?;
    let notified = announce.clone();
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let driver = tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if let Ok(seq) = notification.payload().parse::<i64>() {
                        advance(&notified, seq);
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "PostgreSQL listener connection ended");
                    break;
                }
            }
        }
    });
    let result = async {
        client
            .batch_execute(&format!("LISTEN {EVENTS_CHANNEL}"))
            .await
            .map_err(db_error)?;
        loop {
            advance(announce, newest_seq(&client).await?);
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }
    .await;
    driver.abort();
    result
}

/// Marks a key as used (by a profile or an offer).
const PUBLISH_KEY: &str = "UPDATE keys SET published = TRUE WHERE id = $1 AND NOT published";

async fn publish_key(db: Db<'_, Tx<'_, '_>>, key: &KeyId) -> StoreResult<()> {
    db.execute(PUBLISH_KEY, &[&key.as_str()])
        .await
        .map_err(db_error)?;
    Ok(())
}

impl Columns for Row {
    fn text(&self, name: &str) -> StoreResult<String> {
        self.try_get(name).map_err(|error| column(name, error))
    }
    fn opt_text(&self, name: &str) -> StoreResult<Option<String>> {
        self.try_get(name).map_err(|error| column(name, error))
    }
    /// BIGINT, or INTEGER (the counters).
    fn int(&self, name: &str) -> StoreResult<i64> {
        self.try_get::<_, i64>(name)
            .or_else(|_| self.try_get::<_, i32>(name).map(i64::from))
            .map_err(|error| column(name, error))
    }
    fn opt_int(&self, name: &str) -> StoreResult<Option<i64>> {
        self.try_get::<_, Option<i64>>(name)
            .or_else(|_| {
                self.try_get::<_, Option<i32>>(name)
                    .map(|value| value.map(i64::from))
            })
            .map_err(|error| column(name, error))
    }
    fn flag(&self, name: &str) -> StoreResult<bool> {
        self.try_get(name).map_err(|error| column(name, error))
    }
    fn blob(&self, name: &str) -> StoreResult<Vec<u8>> {
        self.try_get(name).map_err(|error| column(name, error))
    }
}

fn column(name: &str, error: tokio_postgres::Error) -> StoreError {
    corrupt(format!("column {name}: {error}"))
}

async fn collect<T>(
    db: Db<'_, impl Session>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    convert: fn(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let rows = db.query(sql, params).await.map_err(db_error)?;
    rows.iter().map(|row| convert(row)).collect()
}

/// [`collect`] for listings: a row that does not convert is reported by its `id`, not fatal.
async fn listing<T>(
    db: Db<'_, impl Session>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    convert: fn(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<Listing<T>> {
    let rows = db.query(sql, params).await.map_err(db_error)?;
    let rows = rows
        .iter()
        .map(|row| {
            convert(row).map_err(|error| Unreadable {
                id: row.try_get::<_, String>("id").unwrap_or_default(),
                reason: error.to_string(),
                created_at: row.try_get("created_at").ok(),
            })
        })
        .collect();
    Ok(Listing { rows })
}

/// An issued credential as the parameters of `sql::INSERT_ISSUED_CREDENTIAL`.
struct CredentialColumns<'a> {
    credential: &'a IssuedCredentialRecord,
    session: String,
    status: Option<String>,
    list: Option<&'a String>,
    index: Option<i64>,
    value: i32,
}

impl<'a> CredentialColumns<'a> {
    fn of(credential: &'a IssuedCredentialRecord) -> Self {
        CredentialColumns {
            credential,
            session: credential.session_id.to_string(),
            status: credential.status.as_ref().map(Value::to_string),
            list: credential.status_entry.as_ref().map(|entry| &entry.list_id),
            index: credential.status_entry.as_ref().map(|entry| entry.index),
            value: i32::from(credential.status_value),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 12] {
        let credential = self.credential;
        [
            &credential.id,
            &self.session,
            &credential.credential_configuration_id,
            &credential.format,
            &credential.holder,
            &credential.issued_at,
            &credential.expires_at,
            &self.status,
            &self.list,
            &self.index,
            &self.value,
            &credential.notification_id,
        ]
    }
}

/// A grant as the parameters of `sql::INSERT_GRANT`.
struct GrantColumns<'a> {
    session: String,
    kind: &'static str,
    grant: &'a NewGrant,
    tx_code: Option<String>,
    now: Millis,
}

impl<'a> GrantColumns<'a> {
    fn of(session: SessionId, grant: &'a NewGrant, now: Millis) -> Self {
        GrantColumns {
            session: session.to_string(),
            kind: grant.kind.as_str(),
            grant,
            tx_code: grant.tx_code.as_ref().map(Value::to_string),
            now,
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 9] {
        [
            &self.session,
            &self.kind,
            &self.grant.secret_hash,
            &self.tx_code,
            &self.grant.tx_code_mac,
            &self.now,
            &self.grant.expires_at,
            &self.grant.request_id,
            &self.grant.dpop_jkt,
        ]
    }
}

async fn first<T>(
    db: Db<'_, impl Session>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    convert: fn(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let row = db.query_opt(sql, params).await.map_err(db_error)?;
    row.as_ref().map(|row| convert(row)).transpose()
}

async fn session_where(
    db: Db<'_, impl Session>,
    condition: &str,
    value: &str,
) -> StoreResult<Option<SessionRecord>> {
    first(db, &sql::session_where(condition), &[&value], rows::session).await
}

async fn profile_version(
    db: Db<'_, impl Session>,
    id: &str,
    version: i64,
) -> StoreResult<Option<ProfileRecord>> {
    first(
        db,
        &format!("{PROFILE_SELECT} WHERE v.id = $1 AND v.version = $2"),
        &[&id, &version],
        rows::profile,
    )
    .await
}

/// Whether any delivery is due and not leased: one cheap read before a claim transaction, since
/// every commit anywhere wakes every instance's dispatcher and most have nothing to claim.
async fn anything_due(db: Db<'_, Client>, now: Millis) -> StoreResult<bool> {
    let row = db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE status = 'PENDING' \
             AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1))",
            &[&now],
        )
        .await
        .map_err(db_error)?;
    row.try_get(0).map_err(db_error)
}

/// Leases up to `limit` due deliveries (see `Store::claim_deliveries`).
async fn claim(
    db: Db<'_, Tx<'_, '_>>,
    now: Millis,
    lease_until: Millis,
    limit: u32,
    per_url: u32,
) -> StoreResult<Vec<DueDelivery>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // The URLs with pending deliveries, by a skip scan over the pending index (one seek per
    // URL, however deep the backlog).
    let urls = db
        .query(
            "WITH RECURSIVE urls(url) AS ( \
               SELECT MIN(url) FROM deliveries WHERE status = 'PENDING' \
               UNION ALL \
               SELECT (SELECT MIN(d.url) FROM deliveries d \
                       WHERE d.status = 'PENDING' AND d.url > urls.url) \
               FROM urls WHERE urls.url IS NOT NULL) \
             SELECT url FROM urls WHERE url IS NOT NULL",
            &[],
        )
        .await
        .map_err(db_error)?;
    // Per URL: skip it if another claimer holds it (until that one commits), count what it has
    // in flight, and take its first due deliveries up to its room, so the per-URL limit holds
    // within this claim and across claimers: never leased ones, then ones whose lease ran out
    // (each in index order, so neither sorts the backlog). Then the earliest due across URLs,
    // up to `limit`.
    let mut candidates: Vec<(Millis, i64)> = Vec::new();
    for row in urls {
        let url: String = row.get(0);
        let lock = db
            .query_one(
                "SELECT pg_try_advisory_xact_lock($1, hashtext($2)), \
                        (SELECT COUNT(*) FROM deliveries \
                         WHERE status = 'PENDING' AND url = $2 AND lease_until > $3)",
                &[&CLAIM_LOCK_SPACE, &url, &now],
            )
            .await
            .map_err(db_error)?;
        let (mine, busy): (bool, i64) = (lock.get(0), lock.get(1));
        if !mine {
            continue;
        }
        let mut room = count(per_url) - busy;
        for leases in [
            "lease_until IS NULL",
            "lease_until IS NOT NULL AND lease_until <= $2",
        ] {
            if room <= 0 {
                break;
            }
            let due = db
                .query(
                    &format!(
                        "SELECT next_attempt_at, id FROM deliveries \
                         WHERE status = 'PENDING' AND url = $1 AND {leases} \
                           AND next_attempt_at <= $2 \
                         ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED"
                    ),
                    &[&url, &now, &room],
                )
                .await
                .map_err(db_error)?;
            room -= i64::try_from(due.len()).unwrap_or(i64::MAX);
            candidates.extend(due.iter().map(|row| (row.get(0), row.get(1))));
        }
    }
    candidates.sort_unstable();
    candidates.truncate(limit as usize);
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = candidates.iter().map(|(_, id)| *id).collect();
    let rows = db
        .query(
            "WITH leased AS (UPDATE deliveries SET lease_until = $1 WHERE id = ANY($2) \
               RETURNING id, event_seq, session_id, attempts, retry_step, next_attempt_at) \
             SELECT d.id AS delivery_id, d.attempts, d.retry_step, \
                    e.seq, e.id, e.session_id, e.type, e.timestamp, e.data, \
                    w.url, w.bearer_token, w.secret, CAST(w.events AS TEXT) AS webhook_events \
             FROM leased d JOIN events e ON e.seq = d.event_seq \
             JOIN webhooks w ON w.session_id = d.session_id \
             ORDER BY d.next_attempt_at, d.id",
            &[&lease_until, &ids],
        )
        .await
        .map_err(db_error)?;
    if rows.len() != ids.len() {
        return Err(corrupt("delivery without event or webhook"));
    }
    rows.iter().map(|row| rows::due_delivery(row)).collect()
}

/// Records an attempt and its consequence, and ends the lease.
async fn record(
    db: Db<'_, Tx<'_, '_>>,
    delivery: i64,
    attempt: &AttemptRecord,
    outcome: AttemptOutcome,
    now: Millis,
) -> StoreResult<()> {
    let (status, next, step) = rows::consequence(outcome);
    let (status, step) = (status.as_str(), i32::try_from(step).unwrap_or(0));
    // The attempt and its consequence in one statement, the delivery locked while it runs.
    let Some(row) = db
        .query_opt(
            "WITH target AS ( \
               SELECT id, attempts FROM deliveries WHERE id = $1 FOR UPDATE), \
             attempt AS ( \
               INSERT INTO delivery_attempts \
                 (delivery_id, number, started_at, duration_ms, status_code, error, response) \
               SELECT id, attempts + 1, $2, $3, $4, $5, $6 FROM target) \
             UPDATE deliveries d SET attempts = target.attempts + 1, status = $7::text, \
               next_attempt_at = COALESCE($8::bigint, d.next_attempt_at), \
               retry_step = d.retry_step + $9::integer, lease_until = NULL, \
               finished_at = CASE WHEN $7::text = 'PENDING' THEN NULL ELSE $10::bigint END \
             FROM target WHERE d.id = target.id RETURNING d.url",
            &[
                &delivery,
                &attempt.started_at,
                &attempt.duration_ms,
                &attempt.status_code.map(i32::from),
                &attempt.error,
                &attempt.response,
                &status,
                &next,
                &step,
                &now,
            ],
        )
        .await
        .map_err(db_error)?
    else {
        return Ok(());
    };
    let url: String = row.get(0);
    if matches!(outcome, AttemptOutcome::RetryAt(_)) {
        // Its URL answered 410 to another delivery while this one was in flight.
        db.execute(sql::GONE_MEANWHILE, &[&now, &delivery])
            .await
            .map_err(db_error)?;
    }
    if outcome == AttemptOutcome::Gone {
        db.execute(
            "INSERT INTO gone_webhook_urls (url, gone_at) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
            &[&url, &now],
        )
        .await
        .map_err(db_error)?;
        db.execute(
            "UPDATE deliveries SET status = 'GONE', finished_at = $1, lease_until = NULL \
             WHERE status = 'PENDING' AND url = $2",
            &[&now, &url],
        )
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

#[async_trait]
impl SettingsStore for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        self.pool
            .get()
            .await?
            .execute("SELECT 1", &[])
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        let conn = self.pool.get().await?;
        let row = conn
            .db()
            .query_opt(sql::SETTING, &[&name])
            .await
            .map_err(db_error)?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        db.execute(sql::INIT_SETTING, &[&name, &value])
            .await
            .map_err(db_error)?;
        let row = db
            .query_one(sql::SETTING, &[&name])
            .await
            .map_err(db_error)?;
        tx.commit().await?;
        Ok(row.get(0))
    }
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let conn = self.pool.get().await?;
        let result = conn
            .db()
            .execute(
                sql::INSERT_KEY,
                &[
                    &key.id.as_str(),
                    &key.algorithm,
                    &key.public_jwk.to_string(),
                    &key.sealed_private,
                    &key.created_at,
                ],
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_unique_violation(&error) => {
                Err(StoreError::Conflict(format!("key {}", key.id)))
            }
            Err(error) => Err(db_error(error)),
        }
    }

    async fn key(&self, id: &KeyId) -> StoreResult<Option<KeyRecord>> {
        let conn = self.pool.get().await?;
        first(conn.db(), sql::KEY, &[&id.as_str()], rows::key).await
    }

    async fn keys(&self) -> StoreResult<Listing<KeyRecord>> {
        let conn = self.pool.get().await?;
        listing(conn.db(), sql::KEYS, &[], rows::key).await
    }

    async fn published_keys(&self) -> StoreResult<Listing<KeyRecord>> {
        let conn = self.pool.get().await?;
        listing(
            conn.db(),
            "SELECT * FROM keys WHERE published ORDER BY created_at, id",
            &[],
            rows::key,
        )
        .await
    }
}

#[async_trait]
impl ProfileStore for PostgresStore {
    async fn create_profile(&self, profile: &ProfileRecord) -> StoreResult<()> {
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        let inserted = db
            .execute(
                "INSERT INTO profile_heads (id, version, active, created_at, updated_at) \
                 VALUES ($1, 1, TRUE, $2, $3) ON CONFLICT DO NOTHING",
                &[
                    &profile.id.as_str(),
                    &profile.created_at,
                    &profile.updated_at,
                ],
            )
            .await
            .map_err(db_error)?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("profile {}", profile.id)));
        }
        db.execute(
            sql::INSERT_PROFILE_VERSION,
            &[
                &profile.id.as_str(),
                &1_i64,
                &profile.definition.to_string(),
                &profile.issuer_key_id.as_str(),
                &profile.created_at,
            ],
        )
        .await
        .map_err(db_error)?;
        publish_key(db, &profile.issuer_key_id).await?;
        tx.commit().await
    }

    async fn update_profile(
        &self,
        id: &ProfileId,
        definition: &Value,
        issuer_key_id: &KeyId,
        now: Millis,
    ) -> StoreResult<Option<ProfileRecord>> {
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        let Some(row) = db
            .query_opt(
                "UPDATE profile_heads SET version = version + 1, updated_at = $1 \
                 WHERE id = $2 AND active RETURNING version",
                &[&now, &id.as_str()],
            )
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let version: i64 = row.get(0);
        db.execute(
            sql::INSERT_PROFILE_VERSION,
            &[
                &id.as_str(),
                &version,
                &definition.to_string(),
                &issuer_key_id.as_str(),
                &now,
            ],
        )
        .await
        .map_err(db_error)?;
        publish_key(db, issuer_key_id).await?;
        let profile = profile_version(db, id.as_str(), version).await?;
        tx.commit().await?;
        Ok(profile)
    }

    async fn deactivate_profile(&self, id: &ProfileId, now: Millis) -> StoreResult<bool> {
        let conn = self.pool.get().await?;
        let changed = conn
            .db()
            .execute(
                "UPDATE profile_heads SET active = FALSE, \
                 updated_at = CASE WHEN active THEN $1 ELSE updated_at END WHERE id = $2",
                &[&now, &id.as_str()],
            )
            .await
            .map_err(db_error)?;
        Ok(changed == 1)
    }

    async fn profile(
        &self,
        id: &ProfileId,
        version: Option<i64>,
    ) -> StoreResult<Option<ProfileRecord>> {
        let conn = self.pool.get().await?;
        match version {
            Some(version) => profile_version(conn.db(), id.as_str(), version).await,
            None => {
                first(
                    conn.db(),
                    &format!("{PROFILE_SELECT} WHERE v.id = $1 AND v.version = h.version"),
                    &[&id.as_str()],
                    rows::profile,
                )
                .await
            }
        }
    }

    async fn profiles(&self) -> StoreResult<Listing<ProfileRecord>> {
        let conn = self.pool.get().await?;
        listing(conn.db(), &sql::PROFILES, &[], rows::profile).await
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_session(
        &self,
        session: &SessionRecord,
        grant: Option<&NewGrant>,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let s = session;
        let id = s.id.to_string();
        let session_params: [&(dyn ToSql + Sync); 16] = [
            &id,
            &s.profile_id.as_str(),
            &s.profile_version,
            &s.credential_configuration_id,
            &s.status.as_str(),
            &s.status_reason,
            &s.offer_handle_hash,
            &s.by_value,
            &s.template,
            &s.issuer_key_id.as_str(),
            &s.created_at,
            &s.updated_at,
            &s.expires_at,
            &s.resolved_at,
            &s.token_issued_at,
            &s.finished_at,
        ];
        let key: [&(dyn ToSql + Sync); 1] = [&s.issuer_key_id.as_str()];
        let grant = grant.map(|grant| GrantColumns::of(s.id, grant, s.created_at));
        let grant_params = grant.as_ref().map(GrantColumns::params);
        let webhook = s.webhook.as_ref().map(|webhook| {
            let events = webhook
                .events
                .as_ref()
                .map(|events| Value::from(events.clone()).to_string());
            (webhook, events)
        });
        let webhook_params =
            webhook
                .as_ref()
                .map(|(webhook, events)| -> [&(dyn ToSql + Sync); 5] {
                    [
                        &id,
                        &webhook.url,
                        &webhook.bearer_token,
                        &webhook.secret,
                        events,
                    ]
                });
        let mut writes: Vec<(&str, &[&(dyn ToSql + Sync)])> =
            vec![(&sql::INSERT_SESSION, &session_params)];
        if let Some(params) = &grant_params {
            writes.push((sql::INSERT_GRANT, params));
        }
        writes.push((PUBLISH_KEY, &key));
        if let Some(params) = &webhook_params {
            writes.push((
                "INSERT INTO webhooks (session_id, url, bearer_token, secret, events) \
                 VALUES ($1, $2, $3, $4, $5::text::jsonb)",
                params,
            ));
        }
        let mut conn = self.pool.get().await?;
        let newest = conn
            .begin()
            .commit_with(&writes, std::slice::from_ref(event))
            .await?;
        self.committed(newest);
        Ok(())
    }

    async fn session(&self, id: SessionId) -> StoreResult<Option<SessionRecord>> {
        let conn = self.pool.get().await?;
        first(conn.db(), &sql::SESSION, &[&id.to_string()], rows::session).await
    }

    async fn session_by(&self, lookup: SessionLookup<'_>) -> StoreResult<Option<SessionRecord>> {
        let (condition, hash) = match lookup {
            SessionLookup::OfferHandle(hash) => ("s.offer_handle_hash = $1", hash),
            SessionLookup::Grant(hash) => ("g.secret_hash = $1", hash),
        };
        let conn = self.pool.get().await?;
        session_where(conn.db(), condition, hash).await
    }

    async fn token_session(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(AccessTokenRecord, SessionRecord)>> {
        let conn = self.pool.get().await?;
        first(
            conn.db(),
            &sql::TOKEN_SESSION,
            &[&token_hash],
            rows::token_session,
        )
        .await
    }

    async fn sessions(&self, filter: &SessionFilter) -> StoreResult<Listing<SessionRecord>> {
        let (statement, values) = sql::sessions_page(filter);
        let values: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|value| match value {
                sql::Bound::Text(text) => text as &(dyn ToSql + Sync),
                sql::Bound::Int(int) => int as &(dyn ToSql + Sync),
            })
            .collect();
        let conn = self.pool.get().await?;
        listing(conn.db(), &statement, &values, rows::session).await
    }

    async fn record_offer_resolved(
        &self,
        id: SessionId,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        let mut conn = self.pool.get().await?;
        let newest = conn
            .begin()
            .commit_with(&[(sql::RESOLVED, &[&now, &id.to_string()])], events)
            .await?;
        self.committed(newest);
        Ok(())
    }

    async fn record_tx_code_failure(
        &self,
        session: SessionId,
        grant: i64,
        failure: &TxCodeFailure,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied> {
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        // The session is locked first, as every transition on it does, so a concurrent expiry
        // or redemption waits and then sees this one's outcome.
        let seen = i32::try_from(failure.seen_failures).unwrap_or(i32::MAX);
        let active = db
            .query_opt(
                "SELECT 1 FROM sessions s JOIN grants g ON g.session_id = s.id \
                 WHERE s.id = $1 AND s.status = 'ACTIVE' AND g.id = $2 AND g.state = 'UNUSED' \
                 AND g.tx_code_failures = $3 FOR UPDATE",
                &[&session.to_string(), &grant, &seen],
            )
            .await
            .map_err(db_error)?;
        if active.is_none() {
            return Ok(Applied::Stale);
        }
        let finish = if failure.locks {
            sql::LOCKED_OUT
        } else {
            sql::TOUCHED
        };
        let writes: [(&str, &[&(dyn ToSql + Sync)]); 2] = [
            (sql::COUNT_TX_CODE_FAILURE, &[&failure.locks, &grant]),
            (finish, &[&now, &session.to_string()]),
        ];
        let newest = tx.commit_with(&writes, events).await?;
        self.committed(newest);
        Ok(Applied::Yes)
    }

    async fn redeem_grant(
        &self,
        session: SessionId,
        grant: i64,
        token: &NewAccessToken,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied> {
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        let active = db
            .query_opt(
                "SELECT 1 FROM sessions s JOIN grants g ON g.session_id = s.id \
                 WHERE s.id = $1 AND g.id = $3 AND g.state = 'UNUSED' \
                 AND (g.expires_at IS NULL OR g.expires_at > $2) \
                 AND ((s.status = 'ACTIVE' AND s.expires_at > $2) \
                 OR (g.kind = 'REFRESH_TOKEN' AND s.status = 'SUCCESSFUL')) FOR UPDATE",
                &[&session.to_string(), &now, &grant],
            )
            .await
            .map_err(db_error)?;
        if active.is_none() {
            return Ok(Applied::Stale);
        }
        let id = session.to_string();
        let refresh = token
            .refresh
            .as_ref()
            .map(|refresh| GrantColumns::of(session, refresh, now));
        let refresh_params = refresh.as_ref().map(GrantColumns::params);
        let redeemed: [&(dyn ToSql + Sync); 2] = [&now, &grant];
        let access_token: [&(dyn ToSql + Sync); 6] = [
            &token.hash,
            &id,
            &grant,
            &now,
            &token.expires_at,
            &token.dpop_jkt,
        ];
        let issued: [&(dyn ToSql + Sync); 3] = [&now, &token.expires_at, &id];
        let mut writes: Vec<(&str, &[&(dyn ToSql + Sync)])> = vec![
            (
                "UPDATE grants SET state = 'REDEEMED', redeemed_at = $1 WHERE id = $2",
                &redeemed,
            ),
            (sql::INSERT_ACCESS_TOKEN, &access_token),
        ];
        if let Some(params) = &refresh_params {
            writes.push((sql::INSERT_GRANT, params));
        }
        writes.push((
            "UPDATE sessions SET token_issued_at = COALESCE(token_issued_at, $1), \
             updated_at = $1, expires_at = GREATEST(expires_at, $2) WHERE id = $3",
            &issued,
        ));
        let newest = tx.commit_with(&writes, events).await?;
        self.committed(newest);
        Ok(Applied::Yes)
    }

    async fn sessions_due_for_expiry(
        &self,
        now: Millis,
        limit: u32,
    ) -> StoreResult<Vec<SessionId>> {
        let conn = self.pool.get().await?;
        let rows = conn
            .db()
            .query(sql::DUE_FOR_EXPIRY, &[&now, &count(limit)])
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| SessionId::parse(row.get(0)).ok_or_else(|| corrupt("session id")))
            .collect()
    }

    async fn expire_session(
        &self,
        id: SessionId,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        self.transition(sql::EXPIRED, &[&now, &id.to_string()], events)
            .await
    }

    async fn purge(&self, finished_before: Millis, now: Millis, batch: u32) -> StoreResult<Purged> {
        let limit = i64::from(batch);
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        let row = db
            .query_one(sql::PURGE_BATCH, &[&finished_before, &limit])
            .await
            .map_err(db_error)?;
        let count: i64 = row.get(0);
        let last: Option<i64> = row.get(1);
        let full = count >= limit;
        let mut sessions = 0;
        if let Some(last) = last {
            let cut = if full { last + 1 } else { finished_before };
            for statement in sql::PURGE.iter() {
                db.execute(statement, &[&cut]).await.map_err(db_error)?;
            }
            sessions = db
                .execute(sql::PURGE_SESSIONS, &[&cut])
                .await
                .map_err(db_error)?;
        }
        let mut more = full;
        for (statement, at) in [
            (sql::PURGE_CREDENTIALS, finished_before),
            (sql::PURGE_NONCES, now),
            (sql::PURGE_AUTHORIZATION_REQUESTS, now),
        ] {
            let removed = db
                .execute(statement, &[&at, &limit])
                .await
                .map_err(db_error)?;
            more |= removed >= batch.into();
        }
        tx.commit().await?;
        Ok(Purged { sessions, more })
    }
    async fn seed(&self, template: SessionId, batch: &SeedBatch) -> StoreResult<u64> {
        if batch.count == 0 {
            return Ok(0);
        }
        let statements = sql::seed_copies(&sql::POSTGRES, &template.to_string(), batch);
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        // The event log's order is its commit order: seeding takes its lock as appends do.
        db.execute("SELECT pg_advisory_xact_lock($1)", &[&EVENT_LOG_LOCK])
            .await
            .map_err(db_error)?;
        let mut events = 0;
        for statement in &statements {
            events = db.execute_once(statement).await.map_err(db_error)?;
        }
        let newest: i64 = db
            .query_one(sql::NEWEST_EVENT, &[])
            .await
            .map_err(db_error)?
            .get(0);
        tx.commit().await?;
        self.committed(Some(newest));
        Ok(events)
    }
}

#[async_trait]
impl CredentialStore for PostgresStore {
    async fn complete_issuance(&self, issuance: &Issuance) -> StoreResult<IssuanceCommit> {
        let session = issuance.session.to_string();
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        // The session is locked while checked (a concurrent completion waits, then sees it
        // finished), and what the issuance spends is spent with it, in one round trip: if either
        // fails, the transaction is rolled back.
        let check = "SELECT 1 FROM sessions s JOIN access_tokens t ON t.session_id = s.id \
             WHERE s.id = $1 AND t.token_hash = $2 AND (s.status = 'ACTIVE' \
             OR (s.status = 'SUCCESSFUL' AND EXISTS (SELECT 1 FROM grants rg \
             WHERE rg.id = t.grant_id AND rg.kind = 'REFRESH_TOKEN'))) \
             AND t.expires_at > $3 FOR UPDATE OF s";
        let check_params: [&(dyn ToSql + Sync); 3] =
            [&session, &issuance.token_hash, &issuance.now];
        let spend = match &issuance.spends {
            Spent::Nonce { hash, expires_at } => {
                (sql::USE_NONCE, [hash as &(dyn ToSql + Sync), expires_at])
            }
            Spent::Deferred { transaction_hash } => (
                sql::SPEND_DEFERRED,
                [&issuance.now as _, transaction_hash as _],
            ),
        };
        let found = db
            .execute_all(&[(check, &check_params), (spend.0, &spend.1)])
            .await
            .map_err(db_error)?;
        match found[..] {
            [0, _] => return Ok(IssuanceCommit::SessionNotActive),
            [_, 0] => return Ok(IssuanceCommit::AlreadySpent),
            _ => {}
        }
        let credentials: Vec<CredentialColumns> = issuance
            .credentials
            .iter()
            .map(CredentialColumns::of)
            .collect();
        let credential_params: Vec<_> = credentials.iter().map(CredentialColumns::params).collect();
        let mut writes: Vec<(&str, &[&(dyn ToSql + Sync)])> = credential_params
            .iter()
            .map(|params| (sql::INSERT_ISSUED_CREDENTIAL.as_str(), &params[..]))
            .collect();
        let update = if issuance.finish {
            sql::SUCCEEDED
        } else {
            sql::TOUCHED
        };
        let updated: [&(dyn ToSql + Sync); 2] = [&issuance.now, &session];
        writes.push((update, &updated));
        let newest = tx.commit_with(&writes, &issuance.events).await?;
        self.committed(newest);
        Ok(IssuanceCommit::Issued)
    }

    async fn issued_credentials(
        &self,
        session: SessionId,
    ) -> StoreResult<Vec<IssuedCredentialRecord>> {
        let conn = self.pool.get().await?;
        collect(
            conn.db(),
            &sql::ISSUED_CREDENTIALS,
            &[&session.to_string()],
            rows::issued_credential,
        )
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
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        let bits_column = i32::from(bits);
        // One allocator per kind and shape at a time, across instances: the entry taken from a
        // list and a new list when it is full are then never raced (no list made twice).
        let shape = format!("status-lists:{}:{signer}:{bits}:{size}", kind.as_str());
        db.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&shape])
            .await
            .map_err(db_error)?;
        let open = first(
            db,
            &sql::OPEN_STATUS_LIST,
            &[&kind.as_str(), &signer, &bits_column, &size],
            rows::status_list,
        )
        .await?;
        let mut list = match open {
            Some(list) => list,
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                db.execute(
                    sql::INSERT_STATUS_LIST,
                    &[&id, &kind.as_str(), &signer, &bits_column, &size, &now],
                )
                .await
                .map_err(db_error)?;
                first(db, &sql::STATUS_LIST, &[&id], rows::status_list)
                    .await?
                    .ok_or_else(|| corrupt("the new status list"))?
            }
        };
        let row = db
            .query_opt(sql::TAKE_STATUS_ENTRY, &[&list.id])
            .await
            .map_err(db_error)?
            .ok_or_else(|| corrupt("a status list with room had none"))?;
        let position: i64 = row.try_get(0).map_err(db_error)?;
        tx.commit().await?;
        list.allocated = position + 1;
        Ok(StatusAllocation { list, position })
    }

    async fn issued_credential(&self, id: &str) -> StoreResult<Option<IssuedCredentialRecord>> {
        let conn = self.pool.get().await?;
        first(
            conn.db(),
            &sql::ISSUED_CREDENTIAL,
            &[&id],
            rows::issued_credential,
        )
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
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        let changed = db
            .execute(
                sql::CHANGE_CREDENTIAL_STATUS,
                &[&i32::from(to), &id, &i32::from(from)],
            )
            .await
            .map_err(db_error)?;
        if changed == 0 {
            return Ok(Applied::Stale);
        }
        db.execute(sql::TOUCH_STATUS_LIST, &[&now, &id])
            .await
            .map_err(db_error)?;
        let newest = tx.commit_events(events).await?;
        self.committed(newest);
        Ok(Applied::Yes)
    }

    async fn status_list(&self, id: &str) -> StoreResult<Option<StatusListRecord>> {
        let conn = self.pool.get().await?;
        first(conn.db(), &sql::STATUS_LIST, &[&id], rows::status_list).await
    }

    async fn status_entries(&self, list_id: &str) -> StoreResult<Vec<(i64, u8)>> {
        let conn = self.pool.get().await?;
        let rows = conn
            .db()
            .query(sql::STATUS_ENTRIES, &[&list_id])
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let index: i64 = row.try_get(0).map_err(db_error)?;
                let value: i32 = row.try_get(1).map_err(db_error)?;
                let value = u8::try_from(value).map_err(|_| corrupt("status_value"))?;
                Ok((index, value))
            })
            .collect()
    }

    async fn defer_issuance(&self, d: &Deferral) -> StoreResult<IssuanceCommit> {
        let session = d.session.to_string();
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        // Lock the session while checking it: a concurrent request waits, then sees the
        // transaction this one made.
        let active = db
            .query_opt(
                "SELECT 1 FROM sessions s JOIN access_tokens t ON t.session_id = s.id \
                 WHERE s.id = $1 AND t.token_hash = $2 AND s.status = 'ACTIVE' \
                 AND t.expires_at > $3 AND NOT EXISTS (SELECT 1 FROM deferred_transactions dt \
                 WHERE dt.session_id = s.id) FOR UPDATE OF s",
                &[&session, &d.token_hash, &d.now],
            )
            .await
            .map_err(db_error)?;
        if active.is_none() {
            return Ok(IssuanceCommit::SessionNotActive);
        }
        let fresh = db
            .execute(sql::USE_NONCE, &[&d.nonce_hash, &d.nonce_expires_at])
            .await
            .map_err(db_error)?;
        if fresh == 0 {
            return Ok(IssuanceCommit::AlreadySpent);
        }
        db.execute(
            &sql::INSERT_DEFERRED,
            &[
                &session,
                &d.transaction_hash,
                &d.holders.to_string(),
                &DeferredState::Pending.as_str(),
                &Option::<String>::None,
                &d.now,
                &d.now,
            ],
        )
        .await
        .map_err(db_error)?;
        db.execute(sql::EXTEND_SESSION, &[&d.expires_at, &d.now, &session])
            .await
            .map_err(db_error)?;
        db.execute(sql::EXTEND_TOKEN, &[&d.expires_at, &d.token_hash])
            .await
            .map_err(db_error)?;
        let newest = tx.commit_events(&d.events).await?;
        self.committed(newest);
        Ok(IssuanceCommit::Issued)
    }

    async fn deferred_transaction(
        &self,
        lookup: DeferredLookup<'_>,
    ) -> StoreResult<Option<DeferredRecord>> {
        let conn = self.pool.get().await?;
        match lookup {
            DeferredLookup::Session(session) => {
                let session = session.to_string();
                first(
                    conn.db(),
                    &sql::DEFERRED_BY_SESSION,
                    &[&session],
                    rows::deferred,
                )
                .await
            }
            DeferredLookup::TransactionHash(hash) => {
                first(conn.db(), &sql::DEFERRED_BY_HASH, &[&hash], rows::deferred).await
            }
        }
    }

    async fn resolve_deferred(
        &self,
        session: SessionId,
        outcome: &DeferredOutcome,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied> {
        let session = session.to_string();
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        let active = db
            .query_opt(
                "SELECT 1 FROM sessions WHERE id = $1 AND status = 'ACTIVE' FOR UPDATE",
                &[&session],
            )
            .await
            .map_err(db_error)?;
        if active.is_none() {
            return Ok(Applied::Stale);
        }
        let (state, reason) = match outcome {
            DeferredOutcome::Ready { .. } => (DeferredState::Ready, None),
            DeferredOutcome::Failed { reason } => (DeferredState::Failed, Some(reason)),
        };
        let resolved = db
            .execute(
                sql::RESOLVE_DEFERRED,
                &[&state.as_str(), &reason, &now, &session],
            )
            .await
            .map_err(db_error)?;
        if resolved == 0 {
            return Ok(Applied::Stale);
        }
        match outcome {
            DeferredOutcome::Ready { template } => {
                db.execute(sql::READY_TEMPLATE, &[template, &now, &session])
                    .await
            }
            DeferredOutcome::Failed { .. } => {
                db.execute(sql::DEFERRED_FAILED, &[&now, &session]).await
            }
        }
        .map_err(db_error)?;
        let newest = tx.commit_events(events).await?;
        self.committed(newest);
        Ok(Applied::Yes)
    }

    async fn record_wallet_notification(
        &self,
        n: &WalletNotification,
    ) -> StoreResult<NotificationReceipt> {
        let session = n.session.to_string();
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        let known = db
            .query_opt(sql::NOTIFIED_CREDENTIAL, &[&n.notification_id, &session])
            .await
            .map_err(db_error)?;
        if known.is_none() {
            return Ok(NotificationReceipt::Unknown);
        }
        let recorded = db
            .execute(
                sql::INSERT_WALLET_NOTIFICATION,
                &[&n.notification_id, &n.event, &session, &n.now],
            )
            .await
            .map_err(db_error)?;
        if recorded == 0 {
            return Ok(NotificationReceipt::Repeated);
        }
        let newest = tx.commit_events(&n.events).await?;
        self.committed(newest);
        Ok(NotificationReceipt::Recorded)
    }
}

#[async_trait]
impl AuthorizationStore for PostgresStore {
    async fn create_authorization_request(
        &self,
        request: &AuthorizationRequestRecord,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        let r = request;
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        db.execute(
            &sql::INSERT_AUTHORIZATION_REQUEST,
            &[
                &r.id,
                &r.request_uri_hash,
                &r.state_hash,
                &r.session_id.map(|id| id.to_string()),
                &r.profile_id.as_str(),
                &r.client_id,
                &r.parameters.to_string(),
                &r.status.as_str(),
                &r.created_at,
                &r.expires_at,
            ],
        )
        .await
        .map_err(db_error)?;
        let newest = tx.commit_events(events).await?;
        self.committed(newest);
        Ok(())
    }

    async fn authorization_request(
        &self,
        lookup: RequestLookup<'_>,
    ) -> StoreResult<Option<AuthorizationRequestRecord>> {
        let (statement, hash): (&str, &str) = match lookup {
            RequestLookup::RequestUri(hash) => (&sql::REQUEST_BY_URI, hash),
            RequestLookup::State(hash) => (&sql::REQUEST_BY_STATE, hash),
        };
        let conn = self.pool.get().await?;
        first(conn.db(), statement, &[&hash], rows::authorization_request).await
    }

    async fn start_login(
        &self,
        id: &str,
        state_hash: &str,
        expires_at: Millis,
        now: Millis,
    ) -> StoreResult<Applied> {
        let conn = self.pool.get().await?;
        let started = conn
            .db()
            .execute(sql::START_LOGIN, &[&state_hash, &expires_at, &id, &now])
            .await
            .map_err(db_error)?;
        Ok(applied(started))
    }

    async fn complete_authorization(
        &self,
        completion: &AuthorizationCompletion,
    ) -> StoreResult<Applied> {
        let c = completion;
        let session = c.session.to_string();
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        let completed = db
            .execute(
                sql::COMPLETE_AUTHORIZATION,
                &[&session, &c.grant.expires_at, &c.request_id],
            )
            .await
            .map_err(db_error)?;
        if completed == 0 {
            return Ok(Applied::Stale);
        }
        let grant = GrantColumns::of(c.session, &c.grant, c.now);
        let writes: [(&str, &[&(dyn ToSql + Sync)]); 3] = [
            (sql::SET_TEMPLATE, &[&c.template, &c.now, &session]),
            (sql::USE_ISSUER_STATE, &[&c.now, &session]),
            (sql::INSERT_GRANT, &grant.params()),
        ];
        let newest = tx.commit_with(&writes, &c.events).await?;
        self.committed(newest);
        Ok(Applied::Yes)
    }

    async fn fail_authorization(&self, id: &str, events: &[NewEvent]) -> StoreResult<Applied> {
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        let failed = db
            .execute(sql::FAIL_AUTHORIZATION, &[&id])
            .await
            .map_err(db_error)?;
        if failed == 0 {
            return Ok(Applied::Stale);
        }
        let newest = tx.commit_events(events).await?;
        self.committed(newest);
        Ok(Applied::Yes)
    }

    async fn request_grant(
        &self,
        kind: GrantKind,
        secret_hash: &str,
    ) -> StoreResult<Option<(GrantRecord, AuthorizationRequestRecord, SessionRecord)>> {
        let conn = self.pool.get().await?;
        first(
            conn.db(),
            &sql::CODE_GRANT,
            &[&secret_hash, &kind.as_str()],
            rows::code_grant,
        )
        .await
    }

    async fn revoke_request(&self, request_id: &str, events: &[NewEvent]) -> StoreResult<u64> {
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        let revoked = db
            .execute(sql::REVOKE_REQUEST_TOKENS, &[&request_id])
            .await
            .map_err(db_error)?;
        db.execute(sql::LOCK_REQUEST_GRANTS, &[&request_id])
            .await
            .map_err(db_error)?;
        let newest = tx.commit_events(events).await?;
        self.committed(newest);
        Ok(revoked)
    }
}

fn applied(rows: u64) -> Applied {
    if rows == 0 {
        Applied::Stale
    } else {
        Applied::Yes
    }
}

#[async_trait]
impl ReplayStore for PostgresStore {
    async fn record_use(&self, hash: &str, remember_until: Millis) -> StoreResult<Applied> {
        let conn = self.pool.get().await?;
        let fresh = conn
            .db()
            .execute(sql::USE_NONCE, &[&hash, &remember_until])
            .await
            .map_err(db_error)?;
        Ok(if fresh == 0 {
            Applied::Stale
        } else {
            Applied::Yes
        })
    }
}

#[async_trait]
impl EventLog for PostgresStore {
    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        let mut conn = self.pool.get().await?;
        let newest = conn.begin().commit_events(events).await?;
        self.committed(newest);
        Ok(())
    }

    async fn events(
        &self,
        session: Option<SessionId>,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>> {
        let conn = self.pool.get().await?;
        match session {
            Some(id) => {
                collect(
                    conn.db(),
                    &sql::SESSION_EVENTS,
                    &[&id.to_string(), &after_seq, &count(limit)],
                    rows::event,
                )
                .await
            }
            None => {
                collect(
                    conn.db(),
                    &sql::EVENTS,
                    &[&after_seq, &count(limit)],
                    rows::event,
                )
                .await
            }
        }
    }

    fn watch_events(&self) -> watch::Receiver<i64> {
        self.newest_event.clone()
    }
}

#[async_trait]
impl Outbox for PostgresStore {
    async fn claim_deliveries(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
        per_url: u32,
    ) -> StoreResult<Vec<DueDelivery>> {
        let mut conn = self.pool.get().await?;
        if limit == 0 || !anything_due(conn.db(), now).await? {
            return Ok(Vec::new());
        }
        let tx = conn.begin();
        let db = tx.db();
        let due = claim(db, now, lease_until, limit, per_url).await?;
        tx.commit().await?;
        Ok(due)
    }

    async fn record_attempt(
        &self,
        delivery: i64,
        attempt: &AttemptRecord,
        outcome: AttemptOutcome,
        now: Millis,
    ) -> StoreResult<()> {
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        record(db, delivery, attempt, outcome, now).await?;
        tx.commit().await
    }

    async fn record_and_claim(
        &self,
        mut finished: Vec<FinishedAttempt>,
        now: Millis,
        lease_until: Millis,
        limit: u32,
        per_url: u32,
    ) -> StoreResult<Vec<DueDelivery>> {
        if finished.is_empty() {
            return self
                .claim_deliveries(now, lease_until, limit, per_url)
                .await;
        }
        // Row locks in one order, so two instances recording at once cannot deadlock on them.
        finished.sort_by_key(|attempt| attempt.delivery);
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        for attempt in &finished {
            record(
                db,
                attempt.delivery,
                &attempt.record,
                attempt.outcome,
                attempt.at,
            )
            .await?;
        }
        let due = claim(db, now, lease_until, limit, per_url).await?;
        tx.commit().await?;
        Ok(due)
    }

    async fn delivery_backlog(&self) -> StoreResult<Vec<Backlog>> {
        let conn = self.pool.get().await?;
        collect(conn.db(), sql::DELIVERY_BACKLOG, &[], rows::backlog).await
    }

    async fn session_deliveries(&self, id: SessionId) -> StoreResult<Vec<DeliveryRecord>> {
        let conn = self.pool.get().await?;
        let mut records = collect(
            conn.db(),
            sql::SESSION_DELIVERIES,
            &[&id.to_string()],
            rows::delivery,
        )
        .await?;
        let attempts = collect(
            conn.db(),
            sql::SESSION_DELIVERY_ATTEMPTS,
            &[&id.to_string()],
            rows::delivery_attempt,
        )
        .await?;
        rows::attach_attempts(&mut records, attempts);
        Ok(records)
    }

    async fn redeliver(
        &self,
        id: SessionId,
        event_id: Option<&str>,
        now: Millis,
    ) -> StoreResult<u64> {
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        // One event's deliveries (whatever their state), or the session's FAILED/GONE ones;
        // never one that is in flight. Locked, so that no claim leases them meanwhile.
        let rows = db
            .query(
                "SELECT id FROM deliveries WHERE session_id = $1 \
                 AND (lease_until IS NULL OR status <> 'PENDING') \
                 AND (($2::text IS NULL AND status IN ('FAILED', 'GONE')) \
                      OR event_seq = (SELECT seq FROM events WHERE id = $2 AND session_id = $1)) \
                 ORDER BY id FOR UPDATE",
                &[&id.to_string(), &event_id],
            )
            .await
            .map_err(db_error)?;
        let ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        db.execute(
            "DELETE FROM gone_webhook_urls WHERE url IN \
             (SELECT url FROM deliveries WHERE id = ANY($1))",
            &[&ids],
        )
        .await
        .map_err(db_error)?;
        let changed = db
            .execute(
                "UPDATE deliveries SET status = 'PENDING', next_attempt_at = $1, \
                 retry_step = 0, finished_at = NULL WHERE id = ANY($2)",
                &[&now, &ids],
            )
            .await
            .map_err(db_error)?;
        tx.commit().await?;
        Ok(changed)
    }
}

#[async_trait]
impl OperatorStore for PostgresStore {
    async fn open_console_session(&self, s: &ConsoleSessionRecord, now: Millis) -> StoreResult<()> {
        let mut conn = self.pool.get().await?;
        let tx = conn.begin();
        let db = tx.db();
        db.execute(sql::FORGET_EXPIRED_CONSOLE_SESSIONS, &[&now])
            .await
            .map_err(db_error)?;
        db.execute(
            sql::INSERT_CONSOLE_SESSION,
            &[&s.id_hash, &s.key_fingerprint, &s.created_at, &s.expires_at],
        )
        .await
        .map_err(db_error)?;
        tx.commit().await
    }

    async fn console_session(
        &self,
        id_hash: &str,
        now: Millis,
    ) -> StoreResult<Option<ConsoleSessionRecord>> {
        let conn = self.pool.get().await?;
        let found = collect(
            conn.db(),
            sql::CONSOLE_SESSION,
            &[&id_hash, &now],
            rows::console_session,
        )
        .await?;
        Ok(found.into_iter().next())
    }

    async fn close_console_session(&self, id_hash: &str) -> StoreResult<bool> {
        let conn = self.pool.get().await?;
        let closed = conn
            .db()
            .execute(sql::CLOSE_CONSOLE_SESSION, &[&id_hash])
            .await
            .map_err(db_error)?;
        Ok(closed > 0)
    }

    async fn session_counts(&self, since: Millis) -> StoreResult<Vec<SessionCount>> {
        let conn = self.pool.get().await?;
        collect(
            conn.db(),
            sql::SESSION_COUNTS,
            &[&since],
            rows::session_count,
        )
        .await
    }

    async fn delivery_counts(&self, since: Millis) -> StoreResult<Vec<DeliveryCount>> {
        let conn = self.pool.get().await?;
        collect(
            conn.db(),
            sql::DELIVERY_COUNTS,
            &[&since],
            rows::delivery_count,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(backend: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
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
        files
    }

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let listed: Vec<&str> = MIGRATIONS.iter().map(|(name, _)| *name).collect();
        assert_eq!(names("postgres"), listed);
    }

    #[test]
    fn both_backends_have_the_same_migration_files() {
        assert_eq!(names("postgres"), names("sqlite"));
    }
}

//! Where a test's data lives: a temporary directory and, when the suite runs on PostgreSQL
//! (`VELLUM_TEST_BACKEND=postgres`), a database of its own on the server
//! `VELLUM_TEST_DATABASE_URL` names (by default the local one at 127.0.0.1:5432), dropped with
//! the directory.
//!
//! Tests that need PostgreSQL whatever the suite's backend (the store conformance suite's
//! PostgreSQL half, several instances, an outage) ask [`postgres_or_skip`] first. Without a
//! reachable server a plain `cargo test` skips them and says so on the terminal, one line per
//! test; `scripts/test` sets `VELLUM_TEST_REQUIRE_POSTGRES`, and then they fail instead. With
//! `VELLUM_TEST_BACKEND=postgres` every test needs the server.

use std::path::Path;

use tempfile::TempDir;

/// The server test databases are created on.
const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn admin_url() -> String {
    std::env::var("VELLUM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned())
}

/// Whether the test server answers (asked once per test binary).
async fn postgres_reachable() -> bool {
    static REACHABLE: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    *REACHABLE
        .get_or_init(|| async {
            let url = admin_url();
            let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
            matches!(
                tokio::time::timeout(std::time::Duration::from_secs(5), connect).await,
                Ok(Ok(_))
            )
        })
        .await
}

/// `true` when the test may go on with PostgreSQL. Without a reachable server: a failure when
/// `VELLUM_TEST_REQUIRE_POSTGRES` is set (scripts/test), else `false` and a line on the
/// terminal naming the skipped test (written past the harness's output capture, so that a
/// plain `cargo test` says loudly what it left out).
pub async fn postgres_or_skip() -> bool {
    if postgres_reachable().await {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    assert!(
        std::env::var_os("VELLUM_TEST_REQUIRE_POSTGRES").is_none(),
        "{test} needs PostgreSQL at {} (VELLUM_TEST_DATABASE_URL), which does not answer",
        admin_url()
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: no PostgreSQL answers at {} (set VELLUM_TEST_DATABASE_URL; scripts/test \
         requires one)",
        admin_url()
    );
    false
}

/// The store the app-level tests run on: SQLite unless `VELLUM_TEST_BACKEND=postgres`.
pub fn on_postgres() -> bool {
    match std::env::var("VELLUM_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("VELLUM_TEST_BACKEND is sqlite or postgres, not {other:?}"),
    }
}

/// A database of its own on the test server, dropped (even when the test panics) when this
/// goes out of scope.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let admin_url = admin_url();
        let name = format!("vellum_test_{}", uuid::Uuid::new_v4().simple());
        let mut url = url::Url::parse(&admin_url).expect("VELLUM_TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        admin(&admin_url, &format!("CREATE DATABASE {name}")).await;
        TestDatabase {
            admin_url,
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside async: a runtime of its own, on a thread of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(admin(
                    &admin_url,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ));
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// Runs `sql` on the server at `url` (an administrative connection).
pub async fn admin(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect(
            "connect to PostgreSQL (VELLUM_TEST_DATABASE_URL, default 127.0.0.1:5432): \
             the tests need a server they may create databases on",
        );
    let driver = tokio::spawn(connection);
    client.batch_execute(sql).await.expect(sql);
    drop(client);
    let _ = driver.await;
}

/// A test's files and its database: an SQLite file in the directory, or (on PostgreSQL) a
/// database of its own. Apps started one after the other on one `TestDir` share the data.
pub struct TestDir {
    temp: TempDir,
    database: Option<TestDatabase>,
}

impl TestDir {
    /// On the suite's backend.
    pub async fn new() -> TestDir {
        if on_postgres() {
            TestDir::postgres().await
        } else {
            TestDir {
                temp: tempfile::tempdir().expect("temp dir"),
                database: None,
            }
        }
    }

    /// On PostgreSQL whatever the suite's backend: for what only PostgreSQL does (several
    /// instances on one database).
    pub async fn postgres() -> TestDir {
        TestDir {
            temp: tempfile::tempdir().expect("temp dir"),
            database: Some(TestDatabase::create().await),
        }
    }

    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// `database.url` for an app on this directory.
    pub fn database_url(&self) -> String {
        match &self.database {
            Some(database) => database.url.clone(),
            None => format!("sqlite://{}", self.path().join("vellum.db").display()),
        }
    }

    /// Runs `sql` directly on this directory's database, bypassing the app: how a test damages
    /// a row as a failing disk or a careless operator would.
    pub async fn execute_sql(&self, sql: &str) {
        match &self.database {
            Some(database) => admin(&database.url, sql).await,
            None => {
                let path = self.path().join("vellum.db");
                let sql = sql.to_owned();
                tokio::task::spawn_blocking(move || {
                    let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
                    conn.busy_timeout(std::time::Duration::from_secs(5))
                        .expect("busy timeout");
                    conn.execute_batch(&sql).expect("run the SQL");
                })
                .await
                .expect("SQL task");
            }
        }
    }

    /// The PostgreSQL database, when the suite runs on PostgreSQL.
    pub fn postgres_url(&self) -> Option<&str> {
        self.database.as_ref().map(|database| database.url.as_str())
    }
}

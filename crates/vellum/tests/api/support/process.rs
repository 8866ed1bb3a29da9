//! The real `vellum` binary as a child process, for tests that SIGKILL it and start it again
//! on the same database.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use tokio::process::{Child, Command};

use crate::support::database::TestDir;
use crate::support::{API_KEY, MASTER_KEY};

pub struct Server {
    child: Child,
    pub url: String,
    /// The file its output goes to.
    pub log: std::path::PathBuf,
}

/// Starts `vellum serve` in `dir` on `port`, on the directory's database, with the test keys,
/// plus `env`; waits until healthy.
pub async fn start(dir: &TestDir, port: u16, env: &[(&str, String)]) -> Server {
    start_on_database(dir.path(), &dir.database_url(), port, env).await
}

/// [`start`] in `dir`, on the database at `database_url`.
pub async fn start_on_database(
    dir: &std::path::Path,
    database_url: &str,
    port: u16,
    env: &[(&str, String)],
) -> Server {
    crate::support::install_tls();
    let mut command = Command::new(env!("CARGO_BIN_EXE_vellum"));
    command
        .arg("serve")
        .current_dir(dir)
        .env("VELLUM_HTTP__PORT", port.to_string())
        .env("VELLUM_API_KEY", API_KEY)
        .env("VELLUM_MASTER_KEY", MASTER_KEY)
        .env("VELLUM_DATABASE__URL", database_url)
        .env("VELLUM_LOG", "warn")
        .stdout(log_file(dir, port))
        .stderr(log_file(dir, port))
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn vellum");
    let url = format!("http://127.0.0.1:{port}");
    let client = Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = || std::fs::read_to_string(log_path(dir, port)).unwrap_or_default();
    loop {
        if let Ok(response) = client.get(format!("{url}/health")).send().await
            && response.status() == StatusCode::OK
        {
            return Server {
                child,
                url,
                log: log_path(dir, port),
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "vellum exited ({status}) before it was healthy; its log:\n{}",
                log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "vellum did not become healthy; its log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where an instance's output goes (its log on stdout, a failure to start on stderr): one file
/// per port in its directory, appended to by both, shown when it fails.
fn log_file(dir: &std::path::Path, port: u16) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(dir, port))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

pub fn log_path(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    dir.join(format!("vellum-{port}.log"))
}

impl Server {
    /// A client that talks to the server directly, whatever proxy the environment names.
    pub fn client(&self) -> Client {
        Client::builder().no_proxy().build().expect("client")
    }

    pub async fn kill_9(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
    }
}

//! PostgreSQL going away under load: a PostgreSQL server of the test's own (initdb into a
//! temporary directory, on a free port, so that no other test loses its database) is stopped
//! abruptly and started again while two Vellum instances take requests. While it is down every
//! request is answered 503 in its surface's error format, never 500; nothing that was
//! acknowledged is lost (every 201 offer exists afterwards and its event reaches the webhook);
//! and both instances serve again, deliver again and hear each other's events again, by
//! themselves.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::API_KEY;
use crate::support::process::{Server, start_on_database};
use crate::support::webhooks::{Receiver, WAIT};
use crate::support::{DEMO_PROFILE, free_port};

/// A PostgreSQL server run by the test: its own data directory, port and socket directory.
struct PrivateServer {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivateServer {
    fn start() -> PrivateServer {
        let output = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .expect("pg_config (PostgreSQL's server binaries) is installed");
        let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        let dir = tempfile::tempdir().expect("temp dir");
        let server = PrivateServer {
            dir,
            bin,
            port: free_port(),
        };
        // PostgreSQL refuses to run as root: then its files belong to, and it runs as, postgres.
        if as_root() {
            let chown = Command::new("chown")
                .arg("postgres")
                .arg(server.dir.path())
                .status()
                .expect("chown");
            assert!(chown.success(), "chown the data directory to postgres");
        }
        server.run(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        server.up();
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of PostgreSQL's programs as the user that owns the data directory.
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let status = if as_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .status()
        } else {
            Command::new(&path).args(args).status()
        }
        .unwrap_or_else(|error| panic!("run {}: {error}", path.display()));
        assert!(status.success(), "{program} {args:?} failed");
    }

    fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server as a crash would: no checkpoint, every connection cut.
    fn crash(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = Command::new(if as_root() { "runuser" } else { "true" })
            .args(if as_root() {
                vec!["-u", "postgres", "--"]
            } else {
                vec![]
            })
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .status();
    }
}

fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}

/// What the load saw: every acknowledged offer, and every answer's status.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<String>,
    statuses: Vec<(Instant, StatusCode, Value)>,
}

async fn create_offer(client: &Client, server: &str, receiver: &Receiver) -> (StatusCode, Value) {
    let body = json!({"profileId": DEMO_PROFILE,
                      "runtimeOverrides": {"notifications": {"webhook": {"url": receiver.url}}}});
    match client
        .post(format!("{server}/api/v1/offers"))
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status();
            let body = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
        Err(error) => panic!("the instance stopped answering: {error}"),
    }
}

async fn status_of(client: &Client, url: &str) -> (StatusCode, Value) {
    let response = client.get(url).send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_postgresql_restart_is_503_while_down_loses_nothing_acknowledged_and_heals_itself() {
    if !crate::support::database::postgres_or_skip().await {
        return;
    }
    crate::support::install_tls();
    let postgres = PrivateServer::start();
    crate::support::database::admin(&postgres.url("postgres"), "CREATE DATABASE vellum").await;
    let database = postgres.url("vellum");
    let receiver = Receiver::start(Vec::new()).await;
    let public_port = free_port();
    let public_url = format!("http://127.0.0.1:{public_port}");
    let env = [
        ("VELLUM_PUBLIC_URL", public_url.clone()),
        (
            "VELLUM_NOTIFICATIONS__ALLOW_PRIVATE_TARGETS",
            r#"["127.0.0.1/32"]"#.to_owned(),
        ),
        ("VELLUM_NOTIFICATIONS__POLL_INTERVAL", "100ms".to_owned()),
        (
            "VELLUM_NOTIFICATIONS__RETRY_SCHEDULE",
            r#"["200ms"]"#.to_owned(),
        ),
        ("VELLUM_DATABASE__CONNECT_TIMEOUT", "1s".to_owned()),
    ];
    let work = tempfile::tempdir().expect("temp dir");
    let servers: Vec<Server> = vec![
        start_on_database(work.path(), &database, public_port, &env).await,
        start_on_database(work.path(), &database, free_port(), &env).await,
    ];
    let urls: Vec<String> = servers.iter().map(|server| server.url.clone()).collect();
    let client = Client::new();

    // Load: four clients creating offers on both instances, until told to stop.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for worker in 0..4 {
        let (client, urls, receiver, seen, stop) = (
            client.clone(),
            urls.clone(),
            receiver.clone(),
            seen.clone(),
            stop.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut turn = worker;
            while !stop.is_cancelled() {
                let (status, body) = create_offer(&client, &urls[turn % 2], &receiver).await;
                turn += 1;
                {
                    let mut seen = seen.lock().expect("lock");
                    if status == StatusCode::CREATED {
                        let id = body["offerId"].as_str().expect("offerId").to_owned();
                        seen.acknowledged.push(id);
                    }
                    seen.statuses.push((Instant::now(), status, body));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    postgres.crash();
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // While it is down: health, the protocol and the management API all say 503.
    for url in &urls {
        let (status, body) = status_of(&client, &format!("{url}/health")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let response = client
            .post(format!("{url}/token"))
            .form(&[
                ("grant_type", crate::support::wallet::PRE_AUTHORIZED_GRANT),
                ("pre-authorized_code", "whatever"),
            ])
            .send()
            .await
            .expect("token");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = response.json().await.expect("OAuth error body");
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    }
    postgres.up();
    let up_at = Instant::now();

    // The load goes on until both instances have acknowledged offers again.
    let deadline = Instant::now() + WAIT;
    loop {
        let recovered = {
            let seen = seen.lock().expect("lock");
            seen.statuses
                .iter()
                .filter(|(at, status, _)| *at > up_at && *status == StatusCode::CREATED)
                .count()
        };
        if recovered >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the instances did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    for task in load {
        task.await.expect("a load client failed");
    }

    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    let refused: Vec<_> = seen
        .statuses
        .iter()
        .filter(|(_, status, _)| *status != StatusCode::CREATED)
        .collect();
    assert!(
        refused
            .iter()
            .any(|(at, _, _)| *at > down_at && *at < up_at),
        "no request was refused while PostgreSQL was down"
    );
    for (_, status, body) in &refused {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "unavailable", "{body}");
    }
    let before = seen
        .statuses
        .iter()
        .filter(|(at, status, _)| *at < down_at && *status == StatusCode::CREATED)
        .count();
    assert!(before > 0, "no offer was made before the crash");
    println!(
        "{} offers acknowledged ({before} before the crash), {} refused with 503; down for {:?}",
        seen.acknowledged.len(),
        refused.len(),
        up_at.duration_since(down_at)
    );

    // Nothing acknowledged is lost: every offer exists, and its event reached the webhook.
    for (index, id) in seen.acknowledged.iter().enumerate() {
        let (status, session) = {
            let response = client
                .get(format!("{}/api/v1/sessions/{id}", urls[index % 2]))
                .bearer_auth(API_KEY)
                .send()
                .await
                .expect("session");
            (
                response.status(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        };
        assert_eq!(
            status,
            StatusCode::OK,
            "acknowledged offer {id} is gone: {session}"
        );
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let delivered: std::collections::HashSet<String> = receiver
            .received()
            .iter()
            .filter_map(|request| request.body["id"].as_str().map(str::to_owned))
            .collect();
        let missing: Vec<_> = seen
            .acknowledged
            .iter()
            .filter(|id| !delivered.contains(*id))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged offers were never delivered, e.g. {:?}",
            missing.len(),
            missing.first()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The instances hear each other again: a stream on one sees an offer made on the other.
    let response = client
        .get(format!("{}/api/v1/events", urls[1]))
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("stream");
    let mut stream = crate::support::streams::EventStream::new(response);
    let (status, created) = create_offer(&client, &urls[0], &receiver).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let event = tokio::time::timeout(WAIT, async {
        loop {
            let event = stream.event().await;
            if event.data["id"] == created["offerId"] {
                return event;
            }
        }
    })
    .await
    .expect("the other instance's event never came");
    assert_eq!(event.event, "credential_offer_created");
}

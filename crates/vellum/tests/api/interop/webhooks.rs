//! Webhooks against software written by others, run as child processes: the contract's own
//! example receivers (interop/receivers: Express and Flask, unchanged) and the Standard
//! Webhooks reference verifier (PyPI standardwebhooks). scripts/test installs them, pinned.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::offer_id;
use crate::support::wallet::Wallet;
use crate::support::webhooks::{
    Receiver, WAIT, all_delivered, attempt_codes, delivery, offer_to, wait_for_events, webhook_app,
};

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop")
}

/// Fails (never skips) unless interop/install installed `manifest` as it is now: the install
/// script keeps a copy of what it installed from (`stamp`).
fn require_installed(manifest: &str, stamp: &str, what: &str) {
    let dir = interop_dir();
    let wanted = std::fs::read(dir.join(manifest)).expect("the interop manifest");
    let installed = std::fs::read(dir.join(stamp)).ok();
    assert!(
        installed.as_deref() == Some(wanted.as_slice()),
        "{what} are not installed as interop/{manifest} pins them: \
         run scripts/test (or interop/install) first"
    );
}

fn require_node_packages() {
    require_installed(
        "package-lock.json",
        "node_modules/.vellum-lock",
        "the npm packages (express)",
    );
}

fn require_python_packages() {
    require_installed(
        "requirements.txt",
        ".venv/.vellum-requirements",
        "the Python packages (flask, standardwebhooks)",
    );
}

/// The seed's receivers listen on port 3000, hard-coded: one test at a time.
static PORT_3000: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const SEED_URL: &str = "http://127.0.0.1:3000/webhook/issuance";
const SEED_TOKEN: &str = "your-secret-token";

/// A receiver process and everything it printed so far.
struct SeedReceiver {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn collect(pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = sink.lock().expect("lock");
            text.push_str(&line);
            text.push('\n');
        }
    });
    text
}

fn port_3000_is_free() -> bool {
    std::net::TcpListener::bind("127.0.0.1:3000").is_ok()
}

impl SeedReceiver {
    /// Starts the process and waits (bounded) until port 3000 accepts connections.
    async fn start(mut command: Command, what: &str) -> SeedReceiver {
        let deadline = Instant::now() + WAIT;
        while !port_3000_is_free() {
            assert!(
                Instant::now() < deadline,
                "port 3000 stays in use by another program; the seed's {what} needs it"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut child = command
            .current_dir(interop_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {what} ({error}): run scripts/test"));
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        let mut receiver = SeedReceiver {
            child,
            stdout,
            stderr,
        };
        loop {
            if let Some(status) = receiver.child.try_wait().expect("child status") {
                panic!("{what} exited ({status}):\n{}", receiver.stderr());
            }
            if tokio::net::TcpStream::connect("127.0.0.1:3000")
                .await
                .is_ok()
            {
                return receiver;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not listen on port 3000:\n{}",
                receiver.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().expect("lock").clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// Waits (bounded) until every one of `lines` was printed.
    async fn wait_for_lines(&self, lines: &[String]) {
        let deadline = Instant::now() + WAIT;
        loop {
            let printed = self.stdout();
            // Contained, not whole lines: the Flask server prints from a thread per request,
            // and two prints may share a line.
            if lines.iter().all(|line| printed.contains(line.as_str())) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected {lines:?}; the receiver printed:\n{printed}\nand on stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn stop(mut self) {
        self.child.kill().await.expect("kill the receiver");
    }
}

/// A full flow reaches the receiver: it prints the seed's three events for the offer, and every
/// delivery is DELIVERED with 200. A wrong token gets 401s, which are retried.
async fn seed_receiver_gets_a_full_flow(receiver: &SeedReceiver) {
    let app = webhook_app(json!({})).await;
    let wrong = app
        .create_offer(offer_to(json!({
            "url": SEED_URL, "bearerToken": "not-the-token",
            "events": ["credential_offer_created"]})))
        .await;
    let created = app
        .create_offer(offer_to(
            json!({"url": SEED_URL, "bearerToken": SEED_TOKEN}),
        ))
        .await;
    Wallet::new().complete(&app, &created).await;
    let id = offer_id(&created);
    let expected: Vec<String> = [
        "resolved_credential_offer",
        "requested_token",
        "sdjwt_issue",
    ]
    .iter()
    .map(|event| format!("Event: {event} for offer {id}"))
    .collect();
    receiver.wait_for_lines(&expected).await;
    let items = wait_for_events(&app, &id, "all delivered", all_delivered).await;
    assert_eq!(items.len(), 5);
    for item in &items {
        assert_eq!(attempt_codes(item), [Some(200)], "{item}");
        assert_eq!(delivery(item)["attempts"][0]["response"], "OK", "{item}");
    }
    let wrong = offer_id(&wrong);
    let items = wait_for_events(&app, &wrong, "two attempts", |items| {
        attempt_codes(&items[0]).len() >= 2
    })
    .await;
    let attempts = delivery(&items[0])["attempts"]
        .as_array()
        .expect("attempts");
    for attempt in attempts {
        assert_eq!(attempt["statusCode"], 401, "{attempt}");
        assert_eq!(attempt["response"], "Unauthorized", "{attempt}");
    }
    assert!(!receiver.stdout().contains(&wrong), "{}", receiver.stdout());
}

#[tokio::test]
async fn the_seeds_express_receiver_gets_every_event_of_a_full_flow() {
    require_node_packages();
    let _port = PORT_3000.lock().await;
    let mut command = Command::new("node");
    command.arg("receivers/express_receiver.js");
    let receiver = SeedReceiver::start(command, "Express receiver").await;
    seed_receiver_gets_a_full_flow(&receiver).await;
    // The Express example also says what each event meant.
    let printed = receiver.stdout();
    for line in [
        "Offer resolved by wallet",
        "Token requested",
        "Credential issued",
    ] {
        assert!(printed.contains(line), "{printed}");
    }
    receiver.stop().await;
}

#[tokio::test]
async fn the_seeds_flask_receiver_gets_every_event_of_a_full_flow() {
    require_python_packages();
    let python = interop_dir().join(".venv/bin/python");
    let _port = PORT_3000.lock().await;
    let mut command = Command::new(python);
    // Unbuffered, so that its prints reach the pipe as they happen; the file is as the seed has it.
    command.args(["-u", "receivers/flask_receiver.py"]);
    let receiver = SeedReceiver::start(command, "Flask receiver").await;
    seed_receiver_gets_a_full_flow(&receiver).await;
    receiver.stop().await;
}

/// `verify_webhook_signatures.py SECRET FILE` over `requests`: one result per request.
async fn standard_webhooks_verify(secret: &str, requests: &[Value]) -> Vec<Value> {
    let dir = interop_dir();
    require_python_packages();
    let python = dir.join(".venv/bin/python");
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    for request in requests {
        writeln!(file, "{request}").expect("write");
    }
    file.flush().expect("flush");
    let output = Command::new(python)
        .arg(dir.join("verify_webhook_signatures.py"))
        .arg(secret)
        .arg(file.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the verifier finished")
        .expect("run the verifier");
    assert!(
        output.status.success(),
        "the verifier failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn every_retry_is_signed_afresh_and_the_standard_webhooks_library_verifies_each() {
    let failures = (0..3)
        .map(|_| (StatusCode::INTERNAL_SERVER_ERROR, "no").into_response())
        .collect();
    let receiver = Receiver::start(failures).await;
    // Retries a second apart, so that each attempt's timestamp (Unix seconds) differs.
    let app = webhook_app(json!({"notifications": {"retry_schedule": ["1s", "1s", "1s"]}})).await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let created = app
        .create_offer(offer_to(json!({
            "url": receiver.url, "secret": secret, "events": ["credential_offer_created"]})))
        .await;
    let id = offer_id(&created);
    let items = wait_for_events(&app, &id, "delivered", all_delivered).await;
    assert_eq!(
        attempt_codes(&items[0]),
        [Some(500), Some(500), Some(500), Some(200)]
    );
    let received = receiver.wait_for(4).await;
    assert_eq!(received.len(), 4);
    let mut timestamps = Vec::new();
    let mut requests = Vec::new();
    for request in &received {
        assert_eq!(request.header("webhook-id"), items[0]["eventId"]);
        let timestamp: i64 = request
            .header("webhook-timestamp")
            .parse()
            .expect("webhook-timestamp is Unix seconds");
        assert!(
            (request.unix_seconds - 1..=request.unix_seconds).contains(&timestamp),
            "the timestamp {timestamp} is not the attempt's time ({})",
            request.unix_seconds
        );
        timestamps.push(timestamp);
        assert!(request.header("webhook-signature").starts_with("v1,"));
        let headers: Map<String, Value> = request
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    Value::from(value.to_str().expect("ASCII header")),
                )
            })
            .collect();
        requests.push(json!({
            "body": String::from_utf8(request.raw.to_vec()).expect("UTF-8 body"),
            "headers": headers,
        }));
    }
    assert!(
        timestamps.windows(2).all(|pair| pair[0] < pair[1]),
        "each attempt has a fresh timestamp: {timestamps:?}"
    );
    // Tampered copies of the first request: another body, another timestamp.
    let mut tampered_body = requests[0].clone();
    let body = tampered_body["body"].as_str().expect("body").replacen(
        "credential_offer_created",
        "sdjwt_issue",
        1,
    );
    assert_ne!(tampered_body["body"], body.as_str());
    tampered_body["body"] = Value::from(body);
    let mut tampered_timestamp = requests[0].clone();
    tampered_timestamp["headers"]["webhook-timestamp"] =
        Value::from((timestamps[0] + 1).to_string());
    requests.push(tampered_body);
    requests.push(tampered_timestamp);
    let results = standard_webhooks_verify(secret, &requests).await;
    assert_eq!(results.len(), 6, "{results:?}");
    for result in &results[..4] {
        assert_eq!(result["verified"], true, "{result}");
        assert_eq!(result["id"], id.as_str(), "{result}");
    }
    for result in &results[4..] {
        assert_eq!(result["verified"], false, "{result}");
        assert_eq!(result["error"], "No matching signature found", "{result}");
    }
    // A different secret verifies nothing.
    let other = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX";
    let results = standard_webhooks_verify(other, &requests[..1]).await;
    assert_eq!(results[0]["verified"], false, "{results:?}");
}

//! The `vellum` management commands, run as the real binary against a running issuer: what they
//! print for people and with `--json`, and exit codes that tell failures apart.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::interop::run_within;
use crate::support::wallet::Wallet;
use crate::support::{API_KEY, DEMO_PROFILE, TestApp, free_port, profile_body, spawn_app};

/// What a run printed, and how it ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", self.stdout))
    }
}

/// `vellum ARGS` against `url` with `key` as `VELLUM_API_KEY` (unset when `None`).
async fn vellum_at(url: &str, key: Option<&str>, args: &[&str], stdin: Option<&str>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vellum"));
    command
        .args(args)
        .env("VELLUM_URL", url)
        .env_remove("VELLUM_API_KEY");
    if let Some(key) = key {
        command.env("VELLUM_API_KEY", key);
    }
    let output = run_within(command, stdin, "vellum", Duration::from_secs(30)).await;
    Run {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn vellum(app: &TestApp, args: &[&str]) -> Run {
    vellum_at(&app.url, Some(API_KEY), args, None).await
}

#[tokio::test]
async fn profiles_are_listed_read_and_applied_from_a_file() {
    let app = spawn_app().await;
    let listed = vellum(&app, &["profiles", "list"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed
            .stdout
            .lines()
            .any(|line| line.starts_with(DEMO_PROFILE)),
        "{}",
        listed.stdout
    );
    let listed = vellum(&app, &["profiles", "list", "--json"]).await.json();
    assert!(
        listed
            .as_array()
            .is_some_and(|profiles| !profiles.is_empty()),
        "{listed}"
    );

    let mut profile = profile_body(json!({}));
    profile["id"] = json!("cli-badge");
    let file = app.dir.path().join("profile.json");
    std::fs::write(&file, profile.to_string()).expect("write");
    let file = file.to_str().expect("utf-8 path");
    let created = vellum(&app, &["profiles", "apply", file]).await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    assert_eq!(created.stdout, "created profile cli-badge version 1\n");
    profile["name"] = json!("Renamed");
    std::fs::write(file, profile.to_string()).expect("write");
    let updated = vellum(&app, &["profiles", "apply", file, "--json"])
        .await
        .json();
    assert_eq!(updated["version"], 2, "{updated}");
    let read = vellum(&app, &["profiles", "get", "cli-badge", "--json"])
        .await
        .json();
    assert_eq!(read["profileId"], "cli-badge", "{read}");
    assert_eq!(read["name"], "Renamed");

    // An invalid profile is the API's refusal, with its code; from stdin too.
    let refused = vellum_at(
        &app.url,
        Some(API_KEY),
        &["profiles", "apply", "-"],
        Some(r#"{"id": "broken", "name": "x"}"#),
    )
    .await;
    assert_eq!(refused.code, 6, "{}", refused.stderr);
    assert!(
        refused.stderr.starts_with("vellum: 400 Bad Request: "),
        "{}",
        refused.stderr
    );
    let missing = vellum(&app, &["profiles", "get", "nothing-here"]).await;
    assert_eq!(missing.code, 5, "{}", missing.stderr);
    let unreadable = vellum(&app, &["profiles", "apply", "/nonexistent/profile.json"]).await;
    assert_eq!(unreadable.code, 1, "{}", unreadable.stderr);
}

#[tokio::test]
async fn an_offer_is_created_with_its_qr_code_and_its_session_followed() {
    let app = spawn_app().await;
    let human = vellum(
        &app,
        &[
            "offers",
            "create",
            "--profile",
            DEMO_PROFILE,
            "--tx-code",
            "--qr",
        ],
    )
    .await;
    assert_eq!(human.code, 0, "{}", human.stderr);
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert!(lines[0].starts_with("offer "), "{}", human.stdout);
    assert!(
        lines[1].starts_with("openid-credential-offer://?"),
        "{}",
        human.stdout
    );
    assert!(lines[2].starts_with("tx code "), "{}", human.stdout);
    assert!(
        lines[3].chars().all(|cell| cell == '█'),
        "the QR code's quiet zone: {}",
        lines[3]
    );

    let created = vellum(
        &app,
        &[
            "offers",
            "create",
            "--profile",
            DEMO_PROFILE,
            "--json",
            "--qr",
        ],
    )
    .await;
    assert!(
        created.stderr.contains('▀'),
        "the QR code goes to stderr with --json"
    );
    let created = created.json();
    let session = created["offerId"].as_str().expect("offerId").to_owned();
    Wallet::new().complete(&app, &created).await;

    let view = vellum(&app, &["sessions", "get", &session, "--json"])
        .await
        .json();
    assert_eq!(view["sessionId"], session.as_str(), "{view}");
    assert_eq!(view["status"], "SUCCESSFUL", "{view}");
    let listed = vellum(&app, &["sessions", "list", "--status", "SUCCESSFUL"]).await;
    assert!(listed.stdout.contains(&session), "{}", listed.stdout);
    let events = vellum(&app, &["sessions", "events", &session]).await;
    assert!(
        events.stdout.contains("  sdjwt_issue  "),
        "{}",
        events.stdout
    );
    let events = vellum(&app, &["sessions", "events", &session, "--json"])
        .await
        .json();
    let count = events["items"].as_array().expect("items").len();

    // The stream replays the session's events, then the command stops at --count.
    let tailed = vellum(
        &app,
        &[
            "sessions",
            "tail",
            &session,
            "--count",
            &count.to_string(),
            "--json",
        ],
    )
    .await;
    assert_eq!(tailed.code, 0, "{}", tailed.stderr);
    let types: Vec<String> = tailed
        .stdout
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("one event per line");
            assert_eq!(event["id"], session.as_str());
            event["type"].as_str().expect("type").to_owned()
        })
        .collect();
    assert_eq!(types.len(), count);
    assert!(types.contains(&"sdjwt_issue".to_owned()), "{types:?}");

    let redelivered = vellum(&app, &["events", "redeliver", &session]).await;
    assert_eq!(
        redelivered.stdout, "redelivered 0\n",
        "{}",
        redelivered.stderr
    );
}

#[tokio::test]
async fn keys_and_certificates_are_managed_and_private_keys_never_printed() {
    let app = spawn_app().await;
    let generated = vellum(&app, &["keys", "generate", "cli-iaca", "--json"])
        .await
        .json();
    assert_eq!(generated["id"], "cli-iaca");
    let listed = vellum(&app, &["keys", "list"]).await;
    assert!(
        listed
            .stdout
            .lines()
            .any(|line| line.starts_with("cli-iaca  P-256  ES256")),
        "{}",
        listed.stdout
    );
    let request = r#"{"profile": "IACA", "commonName": "CLI IACA", "country": "DE"}"#;
    let certificate = vellum_at(
        &app.url,
        Some(API_KEY),
        &["certs", "cli-iaca", "-"],
        Some(request),
    )
    .await;
    assert_eq!(certificate.code, 0, "{}", certificate.stderr);
    assert!(
        certificate
            .stdout
            .starts_with("-----BEGIN CERTIFICATE-----"),
        "{}",
        certificate.stdout
    );
    for run in [&generated.to_string(), &listed.stdout, &certificate.stdout] {
        assert!(!run.contains("\"d\""), "a private key was printed: {run}");
    }
}

#[tokio::test]
async fn exit_codes_tell_a_missing_key_a_refused_key_and_an_absent_issuer_apart() {
    let app = spawn_app().await;
    let unset = vellum_at(&app.url, None, &["profiles", "list"], None).await;
    assert_eq!(unset.code, 1, "{}", unset.stderr);
    assert!(unset.stderr.contains("VELLUM_API_KEY"), "{}", unset.stderr);
    let refused = vellum_at(&app.url, Some("not-the-key"), &["profiles", "list"], None).await;
    assert_eq!(refused.code, 4, "{}", refused.stderr);
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let absent = vellum_at(&nobody, Some(API_KEY), &["profiles", "list"], None).await;
    assert_eq!(absent.code, 3, "{}", absent.stderr);
    assert!(!absent.stderr.contains(API_KEY), "the key is never printed");
    let usage = vellum(&app, &["offers", "create"]).await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);
}

//! A bounded schema fuzz run: schemathesis (PyPI, pinned in interop/requirements.txt) reads the
//! OpenAPI description the real `vellum` binary serves, sends what it admits and what it does
//! not, and checks every answer against it: no 5xx, statuses, content types, headers and bodies
//! as described, invalid requests refused and valid ones accepted (interop/schemathesis.toml says
//! where a valid request may still be refused, and why). The server must log no ERROR meanwhile.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::API_KEY;
use crate::support::database::TestDir;
use crate::support::interop::{interop_dir, require_installed, run_within};
use crate::support::process::{self, log_path};
use crate::support::wallet::PRE_AUTHORIZED_GRANT;
use crate::support::{DEMO_PROFILE, free_port};

/// Fixed, so that a run is reproducible and a failure can be replayed; `VELLUM_TEST_FUZZ_SEED`
/// tries another.
const SEED: &str = "20261204";
/// Test cases per operation and phase, about two minutes in all; `VELLUM_TEST_FUZZ_EXAMPLES` sets
/// another number (for a longer search by hand).
const EXAMPLES: &str = "400";
/// A safety net for a hung run, well above its usual length.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::test]
async fn the_served_description_holds_under_a_schema_fuzz_run() {
    let schemathesis =
        require_installed(&interop_dir().join(".venv/bin/st"), "schemathesis (PyPI)");
    let dir = TestDir::new().await;
    let port = free_port();
    let env = [
        // INFO and above, uncoloured, so that ERROR lines can be found.
        ("VELLUM_LOG", "info".to_owned()),
        ("NO_COLOR", "1".to_owned()),
        // The fuzzer's webhook URLs name hosts anywhere: nothing is delivered to them.
        ("VELLUM_ROLES__WORKER", "false".to_owned()),
        // The access token the run uses must outlive it, however slow the machine.
        (
            "VELLUM_PROTOCOL__ACCESS_TOKEN_TTL_SECONDS",
            "3600".to_owned(),
        ),
    ];
    let server = process::start(&dir, port, &env).await;
    let data = FuzzData::make(&server.url).await;

    let mut command = Command::new(schemathesis);
    command
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(interop_dir().join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", server.url))
        // Every check: schemathesis runs them all unless told otherwise (`--checks all` would
        // also override what schemathesis.toml switches off for one operation).
        .arg("--seed")
        .arg(std::env::var("VELLUM_TEST_FUZZ_SEED").unwrap_or_else(|_| SEED.to_owned()))
        .arg("--max-examples")
        .arg(std::env::var("VELLUM_TEST_FUZZ_EXAMPLES").unwrap_or_else(|_| EXAMPLES.to_owned()))
        // One worker: the same requests in the same order on every run.
        .args(["--workers", "1", "--no-color"])
        .env("VELLUM_API_KEY", API_KEY)
        .env("VELLUM_TEST_FUZZ_ACCESS_TOKEN", &data.access_token)
        .env("VELLUM_TEST_FUZZ_OFFER_HANDLE", &data.offer_handle)
        .env("VELLUM_TEST_FUZZ_SESSION_ID", &data.session_id)
        .env("VELLUM_TEST_FUZZ_EVENT_ID", &data.event_id);
    let output = run_within(command, None, "schemathesis (st run)", RUN_TIMEOUT).await;

    let log = std::fs::read_to_string(log_path(dir.path(), port)).expect("the server's log");
    let errors: Vec<&str> = log
        .lines()
        .filter(|line| line.split_whitespace().nth(1) == Some("ERROR"))
        .collect();
    assert!(
        output.status.success(),
        "the schema fuzz run failed ({}):\n{}{}\nthe server's ERROR lines:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        errors.join("\n")
    );
    assert!(
        errors.is_empty(),
        "the server logged errors during the run:\n{}",
        errors.join("\n")
    );
}

/// What the run needs beyond the description: a live offer, an access token and an event.
struct FuzzData {
    offer_handle: String,
    access_token: String,
    session_id: String,
    event_id: String,
}

impl FuzzData {
    async fn make(url: &str) -> FuzzData {
        let client = Client::new();
        let offer = || async {
            let response = client
                .post(format!("{url}/api/v1/offers"))
                .bearer_auth(API_KEY)
                .json(&json!({"profileId": DEMO_PROFILE, "expiresInSeconds": 3600}))
                .send()
                .await
                .expect("create an offer");
            assert_eq!(response.status(), StatusCode::CREATED);
            response.json::<Value>().await.expect("the offer")
        };
        let offer_uri = |created: &Value| {
            created["credentialOfferUri"]
                .as_str()
                .expect("credentialOfferUri")
                .to_owned()
        };
        let shown = offer().await;
        let redeemed = offer().await;

        let resolved: Value = client
            .get(offer_uri(&redeemed))
            .send()
            .await
            .expect("resolve the offer")
            .json()
            .await
            .expect("the credential offer");
        let code = resolved["grants"][PRE_AUTHORIZED_GRANT]["pre-authorized_code"]
            .as_str()
            .expect("pre-authorized_code");
        let token: Value = client
            .post(format!("{url}/token"))
            .form(&[
                ("grant_type", PRE_AUTHORIZED_GRANT),
                ("pre-authorized_code", code),
            ])
            .send()
            .await
            .expect("redeem the code")
            .json()
            .await
            .expect("the token response");

        let session_id = shown["offerId"].as_str().expect("offerId").to_owned();
        let events: Value = client
            .get(format!("{url}/api/v1/sessions/{session_id}/events"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("list events")
            .json()
            .await
            .expect("the events");
        FuzzData {
            offer_handle: offer_uri(&shown)
                .rsplit('/')
                .next()
                .expect("a handle")
                .to_owned(),
            access_token: token["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            session_id,
            event_id: events["items"][0]["eventId"]
                .as_str()
                .expect("eventId")
                .to_owned(),
        }
    }
}

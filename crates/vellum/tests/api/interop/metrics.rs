//! `GET /metrics` read by the parser of the official Prometheus client (PyPI prometheus_client,
//! interop/metrics.py) after a known workload: every value checked exactly.

use std::collections::BTreeMap;

use axum::response::IntoResponse;
use reqwest::StatusCode;
use serde_json::json;
use tokio::process::Command;

use crate::support::interop::{interop_dir, require_installed, run, stdout_json};
use crate::support::wallet::Wallet;
use crate::support::webhooks::{
    Receiver, all_delivered, attempt_codes, now, offer_to, wait_for_events, webhook_app,
};
use crate::support::{API_KEY, DEMO_PROFILE, TestApp, offer_id, spawn_app_with};

const SCRAPER_TOKEN: &str = "scraper-token-0123456789-abcdefghijklmn";

/// The samples of the exposition as the parser read them, by name and labels.
async fn scrape(app: &TestApp, token: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let response = app
        .client
        .get(app.endpoint("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.expect("text");
    let dir = interop_dir();
    let python = require_installed(&dir.join(".venv/bin/python"), "prometheus_client (PyPI)");
    let mut command = Command::new(python);
    command.arg(dir.join("metrics.py"));
    let samples = stdout_json(
        &run(command, Some(&text), "the Prometheus text parser").await,
        "the Prometheus text parser",
    );
    samples
        .as_array()
        .expect("samples")
        .iter()
        .map(|sample| {
            let labels = sample["labels"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(name, value)| (name.clone(), value.as_str().expect("text").to_owned()))
                .collect();
            (
                (sample["name"].as_str().expect("name").to_owned(), labels),
                sample["value"].as_f64().expect("value"),
            )
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn value(
    samples: &BTreeMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
    pairs: &[(&str, &str)],
) -> f64 {
    samples
        .get(&(name.to_owned(), labels(pairs)))
        .copied()
        .unwrap_or_else(|| {
            panic!(
                "no sample {name} {pairs:?} in {:?}",
                samples.keys().collect::<Vec<_>>()
            )
        })
}

#[tokio::test]
async fn prometheus_reads_exact_counts_of_a_known_workload() {
    let app = spawn_app_with(json!({"metrics": {"token": SCRAPER_TOKEN}})).await;
    let unauthorized = app
        .client
        .get(app.endpoint("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);

    // Two offers, one redeemed; a token request with an unknown code; an unknown profile; a
    // path no route serves.
    let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    Wallet::new().complete(&app, &created).await;
    let refused = Wallet::new()
        .token_request(
            &app,
            &[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:pre-authorized_code",
                ),
                ("pre-authorized_code", "unknown"),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let (status, _) = app.api_get("/api/v1/profiles/no-such-profile").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unmatched = app
        .client
        .get(app.endpoint("/no/such/path"))
        .send()
        .await
        .expect("get");
    assert_eq!(unmatched.status(), StatusCode::NOT_FOUND);

    // The scraper's token and the API key read the same counters.
    let samples = scrape(&app, SCRAPER_TOKEN).await;
    let requests = "vellum_http_requests_total";
    assert_eq!(
        value(
            &samples,
            requests,
            &[
                ("route", "/api/v1/offers"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            requests,
            &[("route", "/token"), ("method", "POST"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            requests,
            &[("route", "/token"), ("method", "POST"), ("status", "400")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            requests,
            &[
                ("route", "/credential"),
                ("method", "POST"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            requests,
            &[
                ("route", "/api/v1/profiles/{profileId}"),
                ("method", "GET"),
                ("status", "404")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            requests,
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "vellum_error_responses_total",
            &[("code", "invalid_grant"), ("status", "400")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "vellum_error_responses_total",
            &[("code", "not_found"), ("status", "404")]
        ),
        2.0
    );
    let latency = "vellum_http_request_duration_seconds";
    assert_eq!(
        value(
            &samples,
            &format!("{latency}_count"),
            &[("route", "/credential")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("{latency}_bucket"),
            &[("route", "/credential"), ("le", "+Inf")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("{latency}_count"),
            &[("route", "/token")]
        ),
        2.0
    );
    assert!(value(&samples, &format!("{latency}_sum"), &[("route", "/token")]) > 0.0);
    assert_eq!(value(&samples, "vellum_open_event_streams", &[]), 0.0);
    // The steps of issuance: two offers, a token issued and one refused, one credential.
    assert_eq!(
        value(
            &samples,
            "vellum_offers_created_total",
            &[("auth_method", "PRE_AUTHORIZED")]
        ),
        2.0
    );
    let grant = "urn:ietf:params:oauth:grant-type:pre-authorized_code";
    for (outcome, expected) in [("issued", 1.0), ("invalid_grant", 1.0)] {
        assert_eq!(
            value(
                &samples,
                "vellum_token_requests_total",
                &[("grant", grant), ("outcome", outcome)]
            ),
            expected,
            "{outcome}"
        );
    }
    assert_eq!(
        value(
            &samples,
            "vellum_credential_requests_total",
            &[("format", "dc+sd-jwt"), ("outcome", "issued")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "vellum_credentials_issued_total",
            &[("format", "dc+sd-jwt")]
        ),
        1.0
    );

    // An open event stream is counted while it is open; the first scrape is counted now.
    let stream = app
        .api(reqwest::Method::GET, "/api/v1/events")
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    let samples = scrape(&app, API_KEY).await;
    assert_eq!(value(&samples, "vellum_open_event_streams", &[]), 1.0);
    assert_eq!(
        value(
            &samples,
            requests,
            &[("route", "/metrics"), ("method", "GET"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            requests,
            &[("route", "/metrics"), ("method", "GET"), ("status", "401")]
        ),
        1.0
    );
    drop(stream);
}

#[tokio::test]
async fn webhook_attempts_and_the_pending_backlog_are_counted_exactly() {
    let ok = Receiver::start(Vec::new()).await;
    let failing =
        Receiver::answering(|| now((StatusCode::INTERNAL_SERVER_ERROR, "not now").into_response()))
            .await;
    // One retry, an hour away: the failed delivery stays pending.
    let app = webhook_app(json!({"notifications": {"retry_schedule": ["1h"]}})).await;
    let delivered = app.create_offer(offer_to(json!({"url": ok.url}))).await;
    let with_secret = format!("{}?secret=receivers-own-secret", failing.url);
    let stuck = app
        .create_offer(offer_to(json!({"url": with_secret})))
        .await;
    wait_for_events(&app, &offer_id(&delivered), "a delivery", all_delivered).await;
    wait_for_events(&app, &offer_id(&stuck), "a failed attempt", |items| {
        !items.is_empty() && items.iter().all(|item| attempt_codes(item) == [Some(500)])
    })
    .await;

    let samples = scrape(&app, API_KEY).await;
    let attempts = "vellum_webhook_attempts_total";
    assert_eq!(value(&samples, attempts, &[("outcome", "delivered")]), 1.0);
    assert_eq!(value(&samples, attempts, &[("outcome", "retrying")]), 1.0);
    let shown = failing.url.as_str();
    assert_eq!(
        value(
            &samples,
            "vellum_webhook_deliveries_pending",
            &[("url", shown)]
        ),
        1.0
    );
    let age = value(
        &samples,
        "vellum_webhook_oldest_pending_age_seconds",
        &[("url", shown)],
    );
    assert!((0.0..60.0).contains(&age), "{age}");
    assert!(
        !samples.keys().any(
            |(name, labels)| name.starts_with("vellum_webhook_deliveries_pending")
                && labels.get("url") == Some(&ok.url)
        ),
        "a URL with nothing pending has no backlog"
    );
    assert!(
        !format!("{samples:?}").contains("receivers-own-secret"),
        "a webhook URL's query is never a label"
    );
}

//! Webhook delivery to real HTTP receivers: the envelope, headers, retries, faults.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_running_app_with};
use crate::wallet::Wallet;

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Bytes,
}

/// A real HTTP server on 127.0.0.1 that records every request and answers from a script
/// (then 200 once the script is used up).
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Response>>>,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, raw: Bytes) -> Response {
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    receiver
        .received
        .lock()
        .expect("lock")
        .push(Received { headers, body, raw });
    let scripted = receiver.script.lock().expect("lock").pop_front();
    scripted.unwrap_or_else(|| (StatusCode::OK, "OK").into_response())
}

impl Receiver {
    pub async fn start(script: Vec<Response>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let receiver = Receiver {
            url: format!("http://{address}/webhook/issuance"),
            received: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
        };
        let app = Router::new()
            .route("/webhook/issuance", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits (bounded) until at least `count` requests arrived; returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        for _ in 0..400 {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("expected {count} requests, got {:?}", self.received().len());
    }
}

/// An app that may deliver to 127.0.0.1 and retries quickly.
pub async fn webhook_app(extra: Value) -> TestApp {
    let mut overrides = json!({"notifications": {
        "allow_private_targets": ["127.0.0.1/32"],
        "retry_schedule": ["100ms", "100ms", "100ms"],
        "retry_jitter": 0.0,
        "poll_interval": "20ms",
    }});
    if let (Value::Object(base), Value::Object(extra)) = (&mut overrides, extra) {
        for (name, value) in extra {
            match (base.get_mut(&name), value) {
                (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
                (_, value) => {
                    base.insert(name, value);
                }
            }
        }
    }
    spawn_running_app_with(overrides).await
}

fn types(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.body["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_full_flow_reaches_the_webhook_with_the_seed_envelope_and_bearer_token() {
    let receiver = Receiver::start(Vec::new()).await;
    let app = webhook_app(json!({})).await;
    let created = app
        .create_offer(json!({
            "profileId": "demo-identity",
            "txCode": {},
            "runtimeOverrides": {"notifications": {"webhook": {
                "url": receiver.url, "bearerToken": "your-secret-token"}}}
        }))
        .await;
    Wallet::new().complete(&app, &created).await;
    let received = receiver.wait_for(5).await;
    let mut got = types(&received);
    got.sort();
    let mut expected = vec![
        "credential_offer_created",
        "resolved_credential_offer",
        "requested_token",
        "sdjwt_issue",
        "issuance_status_changed",
    ];
    expected.sort_unstable();
    assert_eq!(got, expected);
    let offer_id = created["offerId"].as_str().expect("id");
    for request in &received {
        assert_eq!(request.headers["authorization"], "Bearer your-secret-token");
        assert_eq!(request.headers["content-type"], "application/json");
        let members: Vec<&String> = request.body.as_object().expect("object").keys().collect();
        assert_eq!(members, ["data", "id", "timestamp", "type"]);
        assert_eq!(request.body["id"], offer_id);
        assert!(request.body["timestamp"].as_i64().is_some());
        assert!(request.headers.contains_key("webhook-id"));
        assert!(request.headers.contains_key("webhook-timestamp"));
        assert!(!request.headers.contains_key("webhook-signature"));
    }
    let issued = received
        .iter()
        .find(|r| r.body["type"] == "sdjwt_issue")
        .expect("sdjwt_issue");
    assert!(
        issued.body["data"]["sdjwt"]
            .as_str()
            .is_some_and(|c| c.contains('~'))
    );
    let resolved = received
        .iter()
        .find(|r| r.body["type"] == "resolved_credential_offer")
        .expect("resolved");
    let raw = String::from_utf8_lossy(&resolved.raw);
    assert!(raw.contains("[redacted]"), "{raw}");
    // The session's events show each delivery as DELIVERED with its attempt.
    let (_, events) = app
        .api_get(&format!("/api/v1/sessions/{offer_id}/events"))
        .await;
    for event in events["items"].as_array().expect("items") {
        assert_eq!(event["deliveries"][0]["status"], "DELIVERED", "{event}");
        assert_eq!(event["deliveries"][0]["attempts"][0]["statusCode"], 200);
    }
}

#[tokio::test]
async fn five_hundreds_then_success_takes_exactly_four_attempts_with_one_webhook_id() {
    let failures = (0..3)
        .map(|_| (StatusCode::INTERNAL_SERVER_ERROR, "no").into_response())
        .collect();
    let receiver = Receiver::start(failures).await;
    let app = webhook_app(json!({})).await;
    let created = app
        .create_offer(json!({
            "profileId": "demo-identity",
            "runtimeOverrides": {"notifications": {"webhook": {
                "url": receiver.url, "events": ["credential_offer_created"]}}}
        }))
        .await;
    let received = receiver.wait_for(4).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let received_later = receiver.received();
    assert_eq!(received_later.len(), 4, "no attempt after the success");
    let ids: Vec<_> = received
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]), "{ids:?}");
    let offer_id = created["offerId"].as_str().expect("id");
    let (_, events) = app
        .api_get(&format!("/api/v1/sessions/{offer_id}/events"))
        .await;
    let delivery = &events["items"][0]["deliveries"][0];
    assert_eq!(delivery["status"], "DELIVERED");
    let codes: Vec<_> = delivery["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|attempt| attempt["statusCode"].clone())
        .collect();
    assert_eq!(codes, [json!(500), json!(500), json!(500), json!(200)]);
}

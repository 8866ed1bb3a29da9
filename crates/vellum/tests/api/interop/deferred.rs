//! Deferred issuance (OID4VCI 1.0 §9) and wallet notifications (§11) with a wallet written by
//! others: the oid4vc-ts wallet (interop/wallet.mjs) gets 202 and a transaction_id, follows it at
//! the deferred credential endpoint through the library, and reports what it did with the
//! credentials at the notification endpoint. The operator's backend is played by this test as an
//! integrator's would be: a real HTTP receiver gets the webhooks, and on `credential_deferred`
//! the backend completes (or fails) the transaction through the management API. Every event the
//! wallet caused must reach the receiver.

use std::ffi::OsStr;
use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::batch::{batch_entries, wallet_with};
use crate::support::interop::{assert_demo_claims, oid4vc_ts_wallet_with};
use crate::support::webhooks::{Received, Receiver, STEP, WAIT, offer_to, types, webhook_app};
use crate::support::{CONFIGURATION, TestApp, offer_id};

/// An app that asks wallets to come back after a second, delivering to 127.0.0.1 quickly.
async fn deferring_app() -> TestApp {
    webhook_app(json!({"protocol": {"deferred_interval_seconds": 1}})).await
}

/// An offer of the demo profile, deferred, its webhooks to `receiver`.
async fn deferred_offer(app: &TestApp, receiver: &Receiver) -> Value {
    let mut offer = offer_to(json!({"url": receiver.url}));
    offer["runtimeOverrides"]["deferred"] = json!(true);
    app.create_offer(offer).await
}

/// The events of `event_type` the receiver got, once it got at least `count` of them (bounded).
async fn arrivals(receiver: &Receiver, event_type: &str, count: usize) -> Vec<Received> {
    arrivals_where(receiver, event_type, count, |_| true).await
}

/// [`arrivals`] of the events of `event_type` whose `data` passes `select`.
async fn arrivals_where(
    receiver: &Receiver,
    event_type: &str,
    count: usize,
    select: impl Fn(&Value) -> bool,
) -> Vec<Received> {
    let deadline = Instant::now() + WAIT;
    loop {
        let received = receiver.received();
        let matching: Vec<Received> = received
            .iter()
            .filter(|request| request.body["type"] == event_type && select(&request.body["data"]))
            .cloned()
            .collect();
        if matching.len() >= count {
            return matching;
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} {event_type} at the receiver, got {:?}",
            types(&received)
        );
        tokio::time::sleep(STEP).await;
    }
}

/// The operator's backend: once the webhook says the session's issuance is deferred (for
/// `credentials` credentials), it answers the transaction with `resolution`.
async fn backend(
    app: &TestApp,
    receiver: &Receiver,
    session: &str,
    credentials: usize,
    resolution: Value,
) {
    let deferred = arrivals(receiver, "credential_deferred", 1).await;
    let data = &deferred[0].body["data"];
    assert_eq!(data["credentials"], credentials, "{data}");
    assert_eq!(data["credentialConfigurationId"], CONFIGURATION, "{data}");
    let (status, view) = app
        .api_json(
            Method::POST,
            &format!("/api/v1/sessions/{session}/deferred"),
            resolution,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
}

#[tokio::test]
async fn oid4vc_ts_follows_a_deferred_issuance_the_backend_completes_and_reports_acceptance() {
    let receiver = Receiver::start(Vec::new()).await;
    let app = deferring_app().await;
    let created = deferred_offer(&app, &receiver).await;
    let session = offer_id(&created);
    let completion = json!({"status": "READY", "credentialData": {"given_name": "Grace"}});
    let env: [(&str, &OsStr); 3] = [
        ("VELLUM_WALLET_DPOP", OsStr::new("1")),
        ("VELLUM_WALLET_NOTIFY", OsStr::new("credential_accepted")),
        (
            "VELLUM_WALLET_NOTIFY_DESCRIPTION",
            OsStr::new("Stored in the wallet."),
        ),
    ];
    let (wallet, ()) = tokio::join!(
        wallet_with(&created, 2, &env),
        backend(&app, &receiver, &session, 2, completion),
    );

    // The wallet asked at the deferred endpoint and got both credentials, each verified and bound
    // to its own key, with the backend's data merged into the profile's.
    let transaction = wallet["deferred"]["transactionId"]
        .as_str()
        .unwrap_or_else(|| panic!("the issuance was not deferred: {wallet}"));
    assert!(wallet["deferred"]["polls"].as_u64() >= Some(1), "{wallet}");
    for entry in batch_entries(&wallet, 2) {
        let mut expected = entry["claims"].clone();
        expected["given_name"] = json!("Erika");
        assert_demo_claims(&expected, &entry["holderJwk"], &app, "@sd-jwt/sd-jwt-vc");
        assert_eq!(entry["claims"]["given_name"], "Grace", "{entry}");
    }

    // The wallet's report reached the receiver once, naming the response's credentials.
    let notification = wallet["notificationId"]
        .as_str()
        .expect("notification_id in the deferred credential response");
    assert_eq!(wallet["notified"], "credential_accepted");
    let accepted = arrivals(&receiver, "credential_accepted", 1).await;
    let data = &accepted[0].body["data"];
    assert_eq!(data["notificationId"], notification, "{data}");
    assert_eq!(data["credentialConfigurationId"], CONFIGURATION, "{data}");
    assert_eq!(data["eventDescription"], "Stored in the wallet.", "{data}");
    let (_, listed) = app
        .api_get(&format!("/api/v1/sessions/{session}/credentials"))
        .await;
    for item in listed["items"].as_array().expect("items") {
        assert_eq!(item["notificationId"], notification, "{item}");
    }

    // One seed event per credential, carrying the credential the wallet holds.
    let issued = arrivals(&receiver, "sdjwt_issue", 2).await;
    let mut delivered: Vec<&str> = issued
        .iter()
        .map(|event| event.body["data"]["sdjwt"].as_str().expect("data.sdjwt"))
        .collect();
    let mut held: Vec<&str> = wallet["credentials"]
        .as_array()
        .expect("credentials")
        .iter()
        .map(|entry| entry["credential"].as_str().expect("credential"))
        .collect();
    delivered.sort_unstable();
    held.sort_unstable();
    assert_eq!(delivered, held);
    assert_eq!(app.session(&session).await["status"], "SUCCESSFUL");
    for request in receiver.received() {
        assert!(
            !String::from_utf8_lossy(&request.raw).contains(transaction),
            "the transaction id is the wallet's secret: {}",
            request.body
        );
    }
    assert_eq!(
        receiver
            .received()
            .iter()
            .filter(|request| request.body["type"] == "credential_accepted")
            .count(),
        1
    );
}

#[tokio::test]
async fn oid4vc_ts_hears_the_denial_when_the_backend_fails_a_deferred_issuance() {
    let receiver = Receiver::start(Vec::new()).await;
    let app = deferring_app().await;
    let created = deferred_offer(&app, &receiver).await;
    let session = offer_id(&created);
    let failure = json!({"status": "FAILED", "reason": "the applicant withdrew"});
    let (output, ()) = tokio::join!(
        oid4vc_ts_wallet_with(
            created["credentialOffer"]
                .as_str()
                .expect("credentialOffer"),
            created["txCodeValue"].as_str(),
            &[],
        ),
        backend(&app, &receiver, &session, 1, failure),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the wallet got a credential");
    assert!(
        stderr.contains("HTTP 400 credential_request_denied"),
        "the wallet did not hear the denial: {stderr}"
    );
    assert!(
        !stderr.contains("withdrew"),
        "the operator's reason stays the operator's: {stderr}"
    );

    let failed = arrivals_where(&receiver, "issuance_status_changed", 1, |data| {
        data["status"] == "UNSUCCESSFUL"
    })
    .await;
    let data = &failed[0].body["data"];
    assert_eq!(data["reason"], "deferred_issuance_failed", "{data}");
    assert!(
        !receiver
            .received()
            .iter()
            .any(|request| request.body["type"] == "sdjwt_issue"),
        "a credential was issued"
    );
}

#[tokio::test]
async fn oid4vc_ts_reports_a_deleted_credential_at_the_notification_endpoint() {
    let receiver = Receiver::start(Vec::new()).await;
    let app = webhook_app(json!({})).await;
    let created = app
        .create_offer(offer_to(json!({"url": receiver.url})))
        .await;
    let env: [(&str, &OsStr); 1] = [("VELLUM_WALLET_NOTIFY", OsStr::new("credential_deleted"))];
    let wallet = wallet_with(&created, 1, &env).await;
    assert_eq!(wallet["deferred"], Value::Null, "{wallet}");
    assert_eq!(wallet["notified"], "credential_deleted");
    let deleted = arrivals(&receiver, "credential_deleted", 1).await;
    let data = &deleted[0].body["data"];
    assert_eq!(data["notificationId"], wallet["notificationId"], "{data}");
    assert!(
        data.get("eventDescription").is_none_or(Value::is_null),
        "{data}"
    );
}

//! Wallet notifications (OID4VCI 1.0 §11): a credential response carries a `notification_id`;
//! what the wallet reports for it (`credential_accepted`, `credential_failure`,
//! `credential_deleted`) becomes an event of the session, once per event, delivered like every
//! other; reports for ids of other sessions and malformed ones are refused.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::wallet::Wallet;
use crate::support::{
    CONFIGURATION, Reply, TestApp, credential_reply, demo_session_with_token, events_of, spawn_app,
};

/// A session that issued two credentials in one response: (session, token, notification id).
async fn issued(app: &TestApp) -> (String, String, String) {
    let (session, token) = demo_session_with_token(app).await;
    let wallets = [Wallet::new(), Wallet::new()];
    let nonce = wallets[0].nonce(app).await;
    let proofs: Vec<String> = wallets
        .iter()
        .map(|wallet| wallet.proof(app, &nonce))
        .collect();
    let body = json!({"credential_configuration_id": CONFIGURATION, "proofs": {"jwt": proofs}});
    let reply = credential_reply(app, &token, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let id = reply.body["notification_id"]
        .as_str()
        .expect("notification_id")
        .to_owned();
    (session, token, id)
}

async fn notify(app: &TestApp, token: &str, body: Value) -> Reply {
    Reply::of(
        app.client
            .post(app.endpoint("/notification"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("notification"),
    )
    .await
}

#[tokio::test]
async fn each_report_of_the_wallet_is_one_event_and_a_repeat_changes_nothing() {
    let app = spawn_app().await;
    let (session, token, id) = issued(&app).await;
    let (_, listed) = app
        .api_get(&format!("/api/v1/sessions/{session}/credentials"))
        .await;
    for credential in listed["items"].as_array().expect("items") {
        assert_eq!(credential["notificationId"], id.as_str(), "{credential}");
    }

    let accepted = json!({"notification_id": id, "event": "credential_accepted",
                          "event_description": "Stored in the wallet."});
    for _ in 0..2 {
        let reply = notify(&app, &token, accepted.clone()).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
        reply.assert_no_store();
    }
    let events = events_of(&app, &session, "credential_accepted").await;
    assert_eq!(events.len(), 1, "a repeated report is one event");
    assert_eq!(
        events[0]["data"],
        json!({"notificationId": id, "credentialConfigurationId": CONFIGURATION,
               "eventDescription": "Stored in the wallet."})
    );
    let deleted = notify(
        &app,
        &token,
        json!({"notification_id": id, "event": "credential_deleted"}),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let events = events_of(&app, &session, "credential_deleted").await;
    assert_eq!(events.len(), 1);
    assert!(events[0]["data"].get("eventDescription").is_none());
}

#[tokio::test]
async fn reports_for_other_ids_or_malformed_ones_are_refused_and_recorded_nowhere() {
    let app = spawn_app().await;
    let (session, token, id) = issued(&app).await;
    let (_, other_token, other_id) = issued(&app).await;
    for (body, error) in [
        (
            json!({"notification_id": other_id, "event": "credential_accepted"}),
            "invalid_notification_id",
        ),
        (
            json!({"notification_id": "made-up", "event": "credential_accepted"}),
            "invalid_notification_id",
        ),
        (
            json!({"event": "credential_accepted"}),
            "invalid_notification_request",
        ),
        (
            json!({"notification_id": 5, "event": "credential_accepted"}),
            "invalid_notification_request",
        ),
        (
            json!({"notification_id": id}),
            "invalid_notification_request",
        ),
        (
            json!({"notification_id": id, "event": "credential_lost"}),
            "invalid_notification_request",
        ),
        (
            json!({"notification_id": id, "event": "credential_failure",
                   "event_description": "quote \" inside"}),
            "invalid_notification_request",
        ),
        (
            json!({"notification_id": id, "event": "credential_failure",
                   "event_description": "line\nbreak"}),
            "invalid_notification_request",
        ),
        (
            json!({"notification_id": id, "event": "credential_failure",
                   "event_description": "x".repeat(1001)}),
            "invalid_notification_request",
        ),
        (
            json!(["not", "an", "object"]),
            "invalid_notification_request",
        ),
    ] {
        let reply = notify(&app, &token, body.clone()).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, error);
    }
    let not_json = Reply::of(
        app.client
            .post(app.endpoint("/notification"))
            .bearer_auth(&token)
            .body("notification_id=x")
            .send()
            .await
            .expect("notification"),
    )
    .await;
    not_json.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_notification_request");
    let unauthorized = notify(
        &app,
        "not-a-token",
        json!({"notification_id": id, "event": "credential_accepted"}),
    )
    .await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    for event in [
        "credential_accepted",
        "credential_failure",
        "credential_deleted",
    ] {
        assert!(events_of(&app, &session, event).await.is_empty(), "{event}");
    }
    // The other session's own token may report its own id.
    let reply = notify(
        &app,
        &other_token,
        json!({"notification_id": other_id, "event": "credential_failure",
               "event_description": "Could not store it."}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
}

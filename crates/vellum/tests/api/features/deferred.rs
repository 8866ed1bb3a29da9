//! Deferred issuance (OID4VCI 1.0 §9), driven by the operator's backend: a profile with
//! `deferred: true` answers the credential request with 202 and a transaction id; the backend
//! completes the transaction with the data (or fails it) through the management API; the
//! wallet fetches the credentials once at the deferred credential endpoint.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::wallet::{Wallet, check_sd_jwt};
use crate::support::{
    CONFIGURATION, DEMO_KEY, Reply, TestApp, create_profile, events_of, profile_body,
    session_status, session_with_token, spawn_app,
};

/// A session of a deferred profile (or an offer override) and its access token.
async fn deferred_session(app: &TestApp, offer: Value) -> (String, String) {
    session_with_token(app, offer).await
}

/// The credential request with one proof per wallet, on one nonce.
async fn request(app: &TestApp, token: &str, wallets: &[Wallet]) -> Reply {
    let nonce = wallets[0].nonce(app).await;
    let proofs: Vec<String> = wallets
        .iter()
        .map(|wallet| wallet.proof(app, &nonce))
        .collect();
    let body = json!({"credential_configuration_id": CONFIGURATION, "proofs": {"jwt": proofs}});
    Reply::of(wallets[0].credential_request(app, token, &body).await).await
}

/// `POST /deferred-credential` with `body`.
async fn fetch(app: &TestApp, token: &str, body: Value) -> Reply {
    Reply::of(
        app.client
            .post(app.endpoint("/deferred-credential"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("deferred credential"),
    )
    .await
}

async fn resolve(app: &TestApp, session: &str, body: Value) -> (StatusCode, Value) {
    app.api_json(
        Method::POST,
        &format!("/api/v1/sessions/{session}/deferred"),
        body,
    )
    .await
}

#[tokio::test]
async fn the_backend_completes_a_deferred_transaction_and_the_wallet_fetches_it_once() {
    let app = spawn_app().await;
    let profile = create_profile(
        &app,
        profile_body(json!({"issuerKeyId": DEMO_KEY, "deferred": true})),
    )
    .await;
    let (session, token) = deferred_session(&app, json!({"profileId": profile["profileId"]})).await;
    let wallets = [Wallet::new(), Wallet::new()];
    let reply = request(&app, &token, &wallets).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    reply.assert_no_store();
    let transaction = reply.body["transaction_id"]
        .as_str()
        .expect("transaction_id")
        .to_owned();
    assert_eq!(reply.body["interval"], 5);
    let deferred = events_of(&app, &session, "credential_deferred").await;
    assert_eq!(deferred.len(), 1);
    assert_eq!(deferred[0]["data"]["credentials"], 2);
    assert!(
        !deferred[0].to_string().contains(&transaction),
        "the transaction id is the wallet's secret"
    );
    assert_eq!(session_status(&app, &session).await, "ACTIVE");
    let (status, view) = app
        .api_get(&format!("/api/v1/sessions/{session}/deferred"))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "PENDING");
    assert_eq!(view["credentials"], 2);

    // Not yet: the same transaction, to ask about again; other ids are refused.
    let pending = fetch(&app, &token, json!({"transaction_id": transaction})).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.text);
    assert_eq!(pending.body["transaction_id"], transaction.as_str());
    let wrong = fetch(&app, &token, json!({"transaction_id": "not-it"})).await;
    wrong.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_transaction_id");
    for body in [json!({}), json!({"transaction_id": 7}), json!([])] {
        let refused = fetch(&app, &token, body).await;
        refused.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_credential_request");
    }
    // The credential endpoint does not issue them meanwhile.
    let again = request(&app, &token, &[Wallet::new()]).await;
    again.assert_oauth_error(StatusCode::BAD_REQUEST, "credential_request_denied");

    // The access token outlives its usual lifetime for the deferred window.
    app.clock.advance_seconds(3600);
    let later = fetch(&app, &token, json!({"transaction_id": transaction})).await;
    assert_eq!(later.status, StatusCode::ACCEPTED, "{}", later.text);

    // The backend's data is checked as any credentialData.
    for (body, code) in [
        (json!({"status": "READY"}), "invalid_request"),
        (
            json!({"status": "READY", "credentialData": {"x": 1}, "reason": "why"}),
            "invalid_request",
        ),
        (
            json!({"status": "READY", "credentialData": {"iss": "https://elsewhere"}}),
            "invalid_credential_data",
        ),
        (
            json!({"status": "READY", "credentialData": {"a": {"_sd": ["x"]}}}),
            "invalid_credential_data",
        ),
        (json!({"status": "FAILED"}), "invalid_request"),
        (json!({"status": "DONE"}), "invalid_request"),
    ] {
        let (status, refused) = resolve(&app, &session, body.clone()).await;
        assert_eq!(
            (status, refused["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}: {refused}"
        );
    }
    let (status, view) = resolve(
        &app,
        &session,
        json!({"status": "READY", "credentialData": {"given_name": "Grace", "extra": {"level": 2}}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "READY");
    let (status, refused) = resolve(
        &app,
        &session,
        json!({"status": "FAILED", "reason": "too late"}),
    )
    .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (StatusCode::CONFLICT, Some("deferred_not_pending"))
    );

    let issued = fetch(&app, &token, json!({"transaction_id": transaction})).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.text);
    assert!(issued.body["notification_id"].is_string());
    let credentials = issued.body["credentials"].as_array().expect("credentials");
    assert_eq!(credentials.len(), 2);
    for (credential, wallet) in credentials.iter().zip(&wallets) {
        let checked =
            check_sd_jwt(&app, credential["credential"].as_str().expect("credential")).await;
        assert_eq!(checked.claims["given_name"], "Grace", "the backend's data");
        assert_eq!(
            checked.claims["family_name"], "Lovelace",
            "merged over the profile's"
        );
        assert_eq!(checked.claims["extra"]["level"], 2);
        assert_eq!(
            checked.claims["cnf"]["jwk"],
            wallet.key.public_jwk().to_value()
        );
    }
    assert_eq!(events_of(&app, &session, "sdjwt_issue").await.len(), 2);
    assert_eq!(session_status(&app, &session).await, "SUCCESSFUL");
    let twice = fetch(&app, &token, json!({"transaction_id": transaction})).await;
    twice.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_transaction_id");
    let (_, view) = app
        .api_get(&format!("/api/v1/sessions/{session}/deferred"))
        .await;
    assert_eq!(view["state"], "ISSUED");
}

#[tokio::test]
async fn a_failed_transaction_is_denied_and_an_unanswered_one_expires() {
    let app = spawn_app().await;
    let offer = json!({"profileId": crate::support::DEMO_PROFILE,
                       "runtimeOverrides": {"deferred": true}});
    let (session, token) = deferred_session(&app, offer.clone()).await;
    let reply = request(&app, &token, &[Wallet::new()]).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let transaction = reply.body["transaction_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, view) = resolve(
        &app,
        &session,
        json!({"status": "FAILED", "reason": "the applicant withdrew"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "FAILED");
    assert_eq!(view["reason"], "the applicant withdrew");
    assert_eq!(session_status(&app, &session).await, "UNSUCCESSFUL");
    let changed = events_of(&app, &session, "issuance_status_changed").await;
    assert_eq!(
        changed.last().expect("event")["data"]["reason"],
        "deferred_issuance_failed"
    );
    let denied = fetch(&app, &token, json!({"transaction_id": transaction})).await;
    denied.assert_oauth_error(StatusCode::BAD_REQUEST, "credential_request_denied");
    assert!(
        !denied.text.contains("withdrew"),
        "the operator's reason stays the operator's"
    );

    // Nobody answers: after the window the token is dead and the session expires.
    let (session, token) = deferred_session(&app, offer).await;
    let reply = request(&app, &token, &[Wallet::new()]).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let transaction = reply.body["transaction_id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.clock.advance_seconds(86_400 + 1);
    let expired = fetch(&app, &token, json!({"transaction_id": transaction})).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED, "{}", expired.text);
    let (status, refused) = resolve(
        &app,
        &session,
        json!({"status": "READY", "credentialData": {}}),
    )
    .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (StatusCode::CONFLICT, Some("deferred_not_pending"))
    );
    assert_eq!(session_status(&app, &session).await, "EXPIRED");
    let (status, _) = app
        .api_get("/api/v1/sessions/00000000-0000-0000-0000-000000000000/deferred")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

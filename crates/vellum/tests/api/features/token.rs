//! The token endpoint: the pre-authorized code grant, tx_code checks and their limits, races,
//! expiry, request hygiene, and what the event log keeps of it.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::spawn_app;
use crate::support::wallet::{PRE_AUTHORIZED_GRANT, Wallet};
use crate::support::{
    DEMO_PROFILE, Reply, events, events_of, offer_id, offer_with_code, session_status, token_form,
    token_reply,
};

fn with_tx_code() -> Value {
    json!({"profileId": DEMO_PROFILE, "txCode": {}})
}

fn without_tx_code() -> Value {
    json!({"profileId": DEMO_PROFILE})
}

#[tokio::test]
async fn a_request_without_grant_type_is_rejected_with_invalid_request() {
    let app = spawn_app().await;
    let (_, _, code) = offer_with_code(&app, without_tx_code()).await;
    let reply = token_reply(&app, &[("pre-authorized_code", &code)]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        reply.body["error_description"]
            .as_str()
            .unwrap()
            .contains("grant_type")
    );
}

#[tokio::test]
async fn another_grant_type_is_rejected_with_unsupported_grant_type_and_leaves_the_code_usable() {
    let app = spawn_app().await;
    let (_, _, code) = offer_with_code(&app, without_tx_code()).await;
    for grant_type in ["client_credentials", "password", "implicit", ""] {
        let reply = token_reply(
            &app,
            &[("grant_type", grant_type), ("pre-authorized_code", &code)],
        )
        .await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    Wallet::new().token(&app, &code, None).await;
}

#[tokio::test]
async fn a_request_without_a_pre_authorized_code_is_rejected_with_invalid_request() {
    let app = spawn_app().await;
    let reply = token_reply(&app, &[("grant_type", PRE_AUTHORIZED_GRANT)]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        reply.body["error_description"]
            .as_str()
            .unwrap()
            .contains("pre-authorized_code")
    );
}

#[tokio::test]
async fn an_unknown_pre_authorized_code_is_rejected_with_invalid_grant() {
    let app = spawn_app().await;
    let (_, _, code) = offer_with_code(&app, without_tx_code()).await;
    let mut forged = code.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for unknown in [forged.as_str(), "not-a-code", ""] {
        let reply = token_reply(&app, &token_form(unknown, None)).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    Wallet::new().token(&app, &code, None).await;
}

#[tokio::test]
async fn a_code_is_single_use_and_rejected_with_invalid_grant_after_success() {
    let app = spawn_app().await;
    let (created, _, code) = offer_with_code(&app, without_tx_code()).await;
    let first = token_reply(&app, &token_form(&code, None)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let second = token_reply(&app, &token_form(&code, None)).await;
    second.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(second.body.get("access_token").is_none());
    // The first token is still the one that works.
    assert_eq!(session_status(&app, &offer_id(&created)).await, "ACTIVE");
    let session = app.session(&offer_id(&created)).await;
    assert!(session["tokenIssuedAt"].is_i64(), "{session}");
}

#[tokio::test]
async fn a_missing_tx_code_is_rejected_with_invalid_request_and_does_not_consume_the_code() {
    let app = spawn_app().await;
    let (created, _, code) = offer_with_code(&app, with_tx_code()).await;
    let reply = token_reply(&app, &token_form(&code, None)).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    let session = app.session(&offer_id(&created)).await;
    assert_eq!(
        session["txCodeFailures"], 0,
        "a missing tx_code is no guess"
    );
    Wallet::new()
        .token(&app, &code, created["txCodeValue"].as_str())
        .await;
}

#[tokio::test]
async fn a_tx_code_sent_for_an_offer_without_one_is_rejected_with_invalid_request() {
    let app = spawn_app().await;
    let (_, _, code) = offer_with_code(&app, without_tx_code()).await;
    let reply = token_reply(&app, &token_form(&code, Some("123456"))).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    Wallet::new().token(&app, &code, None).await;
}

#[tokio::test]
async fn wrong_tx_code_is_rejected_with_invalid_grant_and_does_not_consume_the_code() {
    let app = spawn_app().await;
    let (created, _, code) = offer_with_code(&app, with_tx_code()).await;
    let right = created["txCodeValue"].as_str().unwrap();
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let reply = token_reply(&app, &token_form(&code, Some(wrong))).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let session = app.session(&offer_id(&created)).await;
    assert_eq!(session["txCodeFailures"], 1);
    assert_eq!(session["status"], "ACTIVE");
    Wallet::new().token(&app, &code, Some(right)).await;
}

#[tokio::test]
async fn five_wrong_tx_codes_kill_the_code_and_end_the_session_unsuccessfully() {
    let app = spawn_app().await;
    let (created, _, code) = offer_with_code(&app, with_tx_code()).await;
    let id = offer_id(&created);
    let right = created["txCodeValue"].as_str().unwrap();
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for attempt in 1..=5 {
        let reply = token_reply(&app, &token_form(&code, Some(wrong))).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        let session = app.session(&id).await;
        assert_eq!(session["txCodeFailures"], attempt);
        let expected = if attempt < 5 {
            "ACTIVE"
        } else {
            "UNSUCCESSFUL"
        };
        assert_eq!(
            session["status"], expected,
            "after {attempt} wrong attempts"
        );
    }
    let reply = token_reply(&app, &token_form(&code, Some(right))).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    let session = app.session(&id).await;
    assert_eq!(session["status"], "UNSUCCESSFUL");
    assert_eq!(session["statusReason"], "tx_code_attempts_exhausted");
    assert_eq!(session["txCodeFailures"], 5);
    assert!(session["finishedAt"].is_i64(), "{session}");
    assert!(session["tokenIssuedAt"].is_null(), "{session}");
    let changes = events_of(&app, &id, "issuance_status_changed").await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["data"]["previousStatus"], "ACTIVE");
    assert_eq!(changes[0]["data"]["status"], "UNSUCCESSFUL");
    assert_eq!(changes[0]["data"]["reason"], "tx_code_attempts_exhausted");
    assert_eq!(events_of(&app, &id, "token_request_failed").await.len(), 6);

    // The dead offer is no longer handed out either.
    let uri = created["credentialOfferUri"].as_str().unwrap();
    let reply = Reply::of(app.client.get(uri).send().await.unwrap()).await;
    reply.assert_oauth_error(StatusCode::NOT_FOUND, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_wrong_tx_codes_count_at_most_five_failures_and_kill_the_code() {
    let app = spawn_app().await;
    let (created, _, code) = offer_with_code(&app, with_tx_code()).await;
    let id = offer_id(&created);
    let right = created["txCodeValue"].as_str().unwrap().to_owned();
    let mut guesses = JoinSet::new();
    for guess in 0..20u32 {
        let client = app.client.clone();
        let url = app.endpoint("/token");
        let code = code.clone();
        // Six digits, never the right value.
        let mut wrong = format!("{:06}", 900_000 + guess);
        if wrong == right {
            wrong = format!("{:06}", 800_000 + guess);
        }
        guesses.spawn(async move {
            let response = client
                .post(url)
                .form(&[
                    ("grant_type", PRE_AUTHORIZED_GRANT),
                    ("pre-authorized_code", code.as_str()),
                    ("tx_code", wrong.as_str()),
                ])
                .send()
                .await
                .expect("token request");
            Reply::of(response).await
        });
    }
    let replies = guesses.join_all().await;
    assert_eq!(replies.len(), 20);
    for reply in &replies {
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }

    let session = app.session(&id).await;
    assert_eq!(session["txCodeFailures"], 5, "{session}");
    assert_eq!(session["status"], "UNSUCCESSFUL");
    assert_eq!(session["statusReason"], "tx_code_attempts_exhausted");
    let reply = token_reply(&app, &token_form(&code, Some(&right))).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(
        events_of(&app, &id, "issuance_status_changed").await.len(),
        1
    );
    assert_eq!(events_of(&app, &id, "token_request_failed").await.len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_correct_redemptions_yield_exactly_one_access_token() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let (created, _, code) = offer_with_code(&app, with_tx_code()).await;
        let right = created["txCodeValue"].as_str().unwrap().to_owned();
        let mut requests = JoinSet::new();
        for _ in 0..2 {
            let client = app.client.clone();
            let url = app.endpoint("/token");
            let (code, right) = (code.clone(), right.clone());
            requests.spawn(async move {
                let form = [
                    ("grant_type", PRE_AUTHORIZED_GRANT),
                    ("pre-authorized_code", code.as_str()),
                    ("tx_code", right.as_str()),
                ];
                Reply::of(client.post(url).form(&form).send().await.expect("token")).await
            });
        }
        let replies = requests.join_all().await;
        let tokens: Vec<&Reply> = replies
            .iter()
            .filter(|reply| reply.status == StatusCode::OK)
            .collect();
        assert_eq!(tokens.len(), 1, "exactly one redemption wins");
        assert!(tokens[0].body["access_token"].is_string());
        let loser = replies
            .iter()
            .find(|reply| reply.status != StatusCode::OK)
            .unwrap();
        loser.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        assert_eq!(
            events_of(&app, &offer_id(&created), "requested_token")
                .await
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn an_expired_offer_is_rejected_with_invalid_grant_and_the_session_becomes_expired() {
    let app = spawn_app().await;
    let (created, _, code) = offer_with_code(
        &app,
        json!({"profileId": DEMO_PROFILE, "expiresInSeconds": 60}),
    )
    .await;
    let id = offer_id(&created);
    app.clock.advance_seconds(60);
    let reply = token_reply(&app, &token_form(&code, None)).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(
        reply.body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    let session = app.session(&id).await;
    assert_eq!(session["status"], "EXPIRED");
    assert!(session["finishedAt"].is_i64(), "{session}");
    let types: Vec<Value> = events(&app, &id)
        .await
        .iter()
        .map(|event| event["type"].clone())
        .collect();
    assert_eq!(
        types,
        [
            "credential_offer_created",
            "resolved_credential_offer",
            "token_request_failed",
            "issuance_status_changed"
        ]
    );
    // Still refused later, without a second status change.
    let again = token_reply(&app, &token_form(&code, None)).await;
    again.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(
        events_of(&app, &id, "issuance_status_changed").await.len(),
        1
    );
}

#[tokio::test]
async fn an_offer_is_redeemable_until_the_last_second_of_its_lifetime() {
    let app = spawn_app().await;
    let (_, _, code) = offer_with_code(
        &app,
        json!({"profileId": DEMO_PROFILE, "expiresInSeconds": 60}),
    )
    .await;
    app.clock.advance_seconds(59);
    Wallet::new().token(&app, &code, None).await;
}

#[tokio::test]
async fn a_repeated_parameter_is_rejected_with_invalid_request() {
    let app = spawn_app().await;
    let (created, _, code) = offer_with_code(&app, with_tx_code()).await;
    let right = created["txCodeValue"].as_str().unwrap();
    let mut form = token_form(&code, Some(right));
    form.push(("tx_code", right));
    let reply = token_reply(&app, &form).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        reply.body["error_description"]
            .as_str()
            .unwrap()
            .contains("tx_code")
    );

    let mut form = token_form(&code, Some(right));
    form.push(("grant_type", PRE_AUTHORIZED_GRANT));
    token_reply(&app, &form)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    Wallet::new().token(&app, &code, Some(right)).await;
}

#[tokio::test]
async fn a_json_body_is_rejected_with_invalid_request() {
    let app = spawn_app().await;
    let (_, _, code) = offer_with_code(&app, without_tx_code()).await;
    let response = app
        .client
        .post(app.endpoint("/token"))
        .json(&json!({"grant_type": PRE_AUTHORIZED_GRANT, "pre-authorized_code": code}))
        .send()
        .await
        .unwrap();
    let reply = Reply::of(response).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    reply.assert_no_store();
    Wallet::new().token(&app, &code, None).await;
}

#[tokio::test]
async fn a_body_over_64_kib_is_rejected_with_413_and_an_oauth_error() {
    let app = spawn_app().await;
    let (_, _, code) = offer_with_code(&app, without_tx_code()).await;
    let padding = "x".repeat(64 * 1024);
    let response = app
        .client
        .post(app.endpoint("/token"))
        .form(&[
            ("grant_type", PRE_AUTHORIZED_GRANT),
            ("pre-authorized_code", code.as_str()),
            ("padding", padding.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let reply = Reply::of(response).await;
    reply.assert_oauth_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request");
    reply.assert_no_store();
    Wallet::new().token(&app, &code, None).await;
}

#[tokio::test]
async fn success_and_error_responses_are_not_cacheable() {
    let app = spawn_app().await;
    let (_, _, code) = offer_with_code(&app, without_tx_code()).await;
    let error = token_reply(&app, &[("grant_type", "password")]).await;
    assert_eq!(error.status, StatusCode::BAD_REQUEST);
    error.assert_no_store();
    let unknown = token_reply(&app, &token_form("unknown", None)).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    unknown.assert_no_store();
    let success = token_reply(&app, &token_form(&code, None)).await;
    assert_eq!(success.status, StatusCode::OK);
    success.assert_no_store();
    assert!(
        success
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/json"))
    );
}

#[tokio::test]
async fn the_token_response_is_a_bearer_token_without_c_nonce() {
    let app = spawn_app().await;
    let (_, _, code) = offer_with_code(&app, without_tx_code()).await;
    let reply = token_reply(&app, &token_form(&code, None)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let body = reply.body.as_object().unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() >= 32));
    let mut members: Vec<&str> = body.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["access_token", "expires_in", "token_type"]);
}

#[tokio::test]
async fn every_failure_is_recorded_as_token_request_failed_with_what_the_wallet_was_told() {
    let app = spawn_app().await;
    let (created, _, code) = offer_with_code(&app, with_tx_code()).await;
    let id = offer_id(&created);
    let right = created["txCodeValue"].as_str().unwrap();
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let mut told = Vec::new();
    for form in [token_form(&code, None), token_form(&code, Some(wrong))] {
        let reply = token_reply(&app, &form).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        told.push(reply.body);
    }
    Wallet::new().token(&app, &code, Some(right)).await;
    let reused = token_reply(&app, &token_form(&code, Some(right))).await;
    assert_eq!(reused.status, StatusCode::BAD_REQUEST);
    told.push(reused.body);

    let failures = events_of(&app, &id, "token_request_failed").await;
    assert_eq!(failures.len(), told.len(), "{failures:?}");
    for (event, body) in failures.iter().zip(&told) {
        assert_eq!(event["id"], id.as_str());
        assert_eq!(event["data"]["error"], body["error"]);
        assert_eq!(
            event["data"]["error_description"],
            body["error_description"]
        );
        assert!(event["timestamp"].is_i64());
    }
    assert_eq!(told[0]["error"], "invalid_request");
    assert_eq!(told[1]["error"], "invalid_grant");
    assert_eq!(told[2]["error"], "invalid_grant");
    let types: Vec<Value> = events(&app, &id)
        .await
        .iter()
        .map(|event| event["type"].clone())
        .collect();
    assert_eq!(
        types,
        [
            "credential_offer_created",
            "resolved_credential_offer",
            "token_request_failed",
            "token_request_failed",
            "requested_token",
            "token_request_failed"
        ]
    );
}

#[tokio::test]
async fn no_event_carries_the_pre_authorized_code_the_tx_code_or_the_access_token() {
    let app = spawn_app().await;
    let wallet = Wallet::new();
    let tx_code = "Quill-Tx-7Q3W";
    let created = app
        .create_offer(json!({
            "profileId": DEMO_PROFILE,
            "txCode": {"input_mode": "text", "description": "the code from the letter"},
            "txCodeValue": tx_code,
        }))
        .await;
    let id = offer_id(&created);
    let offer = wallet
        .resolve(&app, created["credentialOffer"].as_str().unwrap())
        .await;
    let code = Wallet::code(&offer);
    let wrong = "Wrong-Guess-8K2M";
    token_reply(&app, &token_form(&code, Some(wrong)))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    token_reply(&app, &token_form(&code, None))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    let token = wallet.token(&app, &code, Some(tx_code)).await;
    let nonce = wallet.nonce(&app).await;
    let body = Wallet::request_body("identity_credential", &wallet.proof(&app, &nonce));
    let reply = Reply::of(wallet.credential_request(&app, &token, &body).await).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    token_reply(&app, &token_form(&code, Some(tx_code)))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    let all = events(&app, &id).await;
    assert_eq!(all.len(), 8, "{all:?}");
    let text = serde_json::to_string(&all).unwrap();
    for secret in [
        code.as_str(),
        tx_code,
        wrong,
        token.as_str(),
        nonce.as_str(),
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the events: {text}"
        );
    }
    let requested = events_of(&app, &id, "requested_token").await;
    let request = &requested[0]["data"]["tokenRequest"];
    assert_eq!(request["grant_type"], PRE_AUTHORIZED_GRANT);
    assert_eq!(request["pre-authorized_code"], "[redacted]");
    assert_eq!(request["tx_code"], "[redacted]");
}

/// Wallets send more than the grant needs: oid4vc-ts repeats the tx_code as `user_pin` (an
/// older draft's name). The event records only the parameters the issuer reads, secrets
/// redacted; nothing else a client sends reaches the log, and neither do values it chose.
#[tokio::test]
async fn the_event_records_only_known_parameters_so_a_tx_code_sent_as_user_pin_never_leaks() {
    let app = spawn_app().await;
    let (created, _, code) = offer_with_code(&app, with_tx_code()).await;
    let id = offer_id(&created);
    let tx_code = created["txCodeValue"].as_str().expect("tx code");
    let mut form = token_form(&code, Some(tx_code));
    form.extend([
        ("user_pin", tx_code),
        ("pin", tx_code),
        ("client_id", "wallet-7"),
        (
            "authorization_details",
            "[{\"type\":\"openid_credential\"}]",
        ),
        ("x-unknown", "Unrecorded-Value-42"),
    ]);
    let reply = token_reply(&app, &form).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let requested = events_of(&app, &id, "requested_token").await;
    assert_eq!(
        requested[0]["data"]["tokenRequest"],
        json!({
            "grant_type": PRE_AUTHORIZED_GRANT,
            "pre-authorized_code": "[redacted]",
            "tx_code": "[redacted]",
            "client_id": "wallet-7",
        })
    );
    let text = serde_json::to_string(&events(&app, &id).await).expect("JSON");
    for leaked in [tx_code, code.as_str(), "Unrecorded-Value-42", "user_pin"] {
        assert!(
            !text.contains(leaked),
            "{leaked} reached the events: {text}"
        );
    }

    // A value the client chose is not echoed into a failure event either.
    let (created, _, code) = offer_with_code(&app, without_tx_code()).await;
    let id = offer_id(&created);
    let form = [
        ("grant_type", PRE_AUTHORIZED_GRANT),
        ("pre-authorized_code", code.as_str()),
        ("client_id", "bad\u{7f}id"),
    ];
    token_reply(&app, &form)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    let reply = token_reply(
        &app,
        &[
            ("grant_type", "Chosen-Grant-Type-9"),
            ("pre-authorized_code", code.as_str()),
        ],
    )
    .await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    assert!(
        !reply.text.contains("Chosen-Grant-Type-9"),
        "{}",
        reply.text
    );
    let text = serde_json::to_string(&events(&app, &id).await).expect("JSON");
    assert!(!text.contains("Chosen-Grant-Type-9"), "{text}");
}

#[tokio::test]
async fn the_attempt_limit_and_token_lifetime_follow_the_configuration() {
    let app = crate::support::spawn_app_with(json!({
        "protocol": {"max_tx_code_attempts": 2, "access_token_ttl_seconds": 60}
    }))
    .await;
    let (created, _, code) = offer_with_code(
        &app,
        json!({"profileId": DEMO_PROFILE, "txCodeValue": "2468"}),
    )
    .await;
    for _ in 0..2 {
        token_reply(&app, &token_form(&code, Some("1357")))
            .await
            .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let session = app.session(&offer_id(&created)).await;
    assert_eq!(session["status"], "UNSUCCESSFUL");
    assert_eq!(session["txCodeFailures"], 2);

    let (_, _, code) = offer_with_code(&app, without_tx_code()).await;
    let reply = token_reply(&app, &token_form(&code, None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["expires_in"], 60);
}

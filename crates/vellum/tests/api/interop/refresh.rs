//! Refresh tokens (RFC 6749 §6) in the authorization code flow: a wallet that logged in once gets
//! new access tokens, and with them the session's credential again, each refresh token used once
//! (rotation), bound to the attested wallet instance and its DPoP key, within a lifetime rotation
//! never extends; a refresh token used twice revokes the whole authorization.

use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use vellum_formats::jose::{self, Algorithm, SigningKey};

use super::authorization::{Setup, authorize_url, authorized_offer, push_as, setup_with};
use crate::support::attester::{Instance, WalletProvider};
use crate::support::provider;
use crate::support::wallet::{
    AUTHORIZATION_CODE_GRANT, Authorization, WALLET_CLIENT, WALLET_REDIRECT, Wallet,
    authorization_response,
};
use crate::support::{CONFIGURATION, Reply, TestApp, events_of};

/// A DPoP proof by `key` for `POST path` (no server nonce: these tests turn them off).
fn dpop(app: &TestApp, key: &SigningKey, path: &str, access_token: Option<&str>) -> String {
    let mut header = Map::new();
    header.insert("typ".into(), Value::from("dpop+jwt"));
    header.insert("jwk".into(), key.public_jwk().to_value());
    let mut claims = json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "htm": "POST",
        "htu": app.endpoint(path),
        "iat": crate::support::now_millis(app) / 1000,
    });
    if let Some(token) = access_token {
        claims["ath"] = Value::from(jose::b64(Sha256::digest(token.as_bytes())));
    }
    jose::sign_compact(header, &claims, key)
}

/// A token request with `form`, attested by `instance` and proven by `key` when given.
async fn token(
    app: &TestApp,
    form: &[(&str, &str)],
    instance: Option<&Instance>,
    key: Option<&SigningKey>,
) -> Reply {
    let mut request = app.client.post(app.endpoint("/token")).form(form);
    if let Some(instance) = instance {
        request = instance.attach(app, request);
    }
    if let Some(key) = key {
        request = request.header("DPoP", dpop(app, key, "/token", None));
    }
    Reply::of(request.send().await.expect("token")).await
}

/// A credential request with a DPoP-bound access token.
async fn credential(app: &TestApp, access_token: &str, key: &SigningKey) -> Reply {
    let wallet = Wallet::new();
    let nonce = wallet.nonce(app).await;
    let body = json!({"credential_identifier": CONFIGURATION,
                      "proofs": {"jwt": [wallet.proof(app, &nonce)]}});
    Reply::of(
        app.client
            .post(app.endpoint("/credential"))
            .header("Authorization", format!("DPoP {access_token}"))
            .header("DPoP", dpop(app, key, "/credential", Some(access_token)))
            .json(&body)
            .send()
            .await
            .expect("credential"),
    )
    .await
}

fn refresh_form(refresh_token: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ]
}

/// An attested, DPoP-bound wallet through login and code exchange: the session, the token
/// response, the wallet instance and its DPoP key.
async fn logged_in(
    setup: &Setup,
    wallet_provider: &WalletProvider,
) -> (String, Value, Instance, SigningKey) {
    let app = &setup.app;
    let (session, issuer_state) = authorized_offer(setup).await;
    let instance = wallet_provider.instance(app, WALLET_CLIENT);
    let authorization = Authorization::new();
    let pushed = push_as(app, &authorization.form(&issuer_state), Some(&instance)).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text);
    let url = authorize_url(
        app,
        pushed.body["request_uri"].as_str().expect("request_uri"),
    );
    let callback = authorization_response(&provider::log_in(&url, "alice", WALLET_REDIRECT).await);
    let code = callback["code"].as_str().expect("code");
    let key = SigningKey::generate(Algorithm::ES256);
    let form = [
        ("grant_type", AUTHORIZATION_CODE_GRANT),
        ("code", code),
        ("redirect_uri", WALLET_REDIRECT),
        ("code_verifier", &authorization.verifier),
    ];
    let reply = token(app, &form, Some(&instance), Some(&key)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    (session, reply.body, instance, key)
}

async fn setup(wallet_provider: &WalletProvider, lifetime: u32) -> Setup {
    let config = json!({
        "client_attestation": wallet_provider.settings(json!({})),
        "dpop": {"require_nonce": false},
    });
    let authorization = json!({"refresh_tokens": true, "refresh_token_ttl_seconds": lifetime});
    setup_with(config, authorization, None).await
}

#[tokio::test]
async fn a_refresh_token_gives_the_credential_again_once_per_token_and_a_reuse_revokes_everything()
{
    let wallet_provider = WalletProvider::new();
    let setup = setup(&wallet_provider, 3600).await;
    let app = &setup.app;
    let metadata = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .expect("grant types")
            .contains(&json!("refresh_token")),
        "{metadata}"
    );
    let (session, first, instance, key) = logged_in(&setup, &wallet_provider).await;
    assert_eq!(first["token_type"], "DPoP");
    let first_refresh = first["refresh_token"].as_str().expect("a refresh token");
    let first_access = first["access_token"].as_str().expect("access_token");
    let issued = credential(app, first_access, &key).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.text);
    let again = credential(app, first_access, &key).await;
    again.assert_oauth_error(StatusCode::BAD_REQUEST, "credential_request_denied");

    // Bound like the code: the attested instance, its DPoP key. A refusal leaves it usable.
    let other_key = SigningKey::generate(Algorithm::ES256);
    let form = refresh_form(first_refresh);
    for (reply, error) in [
        (
            token(app, &form, Some(&instance), None).await,
            "invalid_dpop_proof",
        ),
        (
            token(app, &form, Some(&instance), Some(&other_key)).await,
            "invalid_dpop_proof",
        ),
        (
            token(app, &form, None, Some(&key)).await,
            "invalid_client_attestation",
        ),
        (
            token(
                app,
                &form,
                Some(&wallet_provider.instance(app, WALLET_CLIENT)),
                Some(&key),
            )
            .await,
            "invalid_client_attestation",
        ),
    ] {
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, error);
    }
    let refreshed = token(app, &form, Some(&instance), Some(&key)).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    refreshed.assert_no_store();
    let second_refresh = refreshed.body["refresh_token"].as_str().expect("rotated");
    assert_ne!(second_refresh, first_refresh);
    let second_access = refreshed.body["access_token"]
        .as_str()
        .expect("access_token");
    assert_eq!(refreshed.body["token_type"], "DPoP");

    // The refreshed token issues the session's credential again; the session stays SUCCESSFUL.
    let reissued = credential(app, second_access, &key).await;
    assert_eq!(reissued.status, StatusCode::OK, "{}", reissued.text);
    assert_eq!(events_of(app, &session, "sdjwt_issue").await.len(), 2);
    assert_eq!(
        events_of(app, &session, "issuance_status_changed")
            .await
            .len(),
        1,
        "finished once"
    );

    // The first refresh token again: stolen, so everything of this authorization is revoked.
    let reused = token(app, &form, Some(&instance), Some(&key)).await;
    reused.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(reused.text.contains("already been used"), "{}", reused.text);
    let revoked = credential(app, second_access, &key).await;
    revoked.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    let dead = token(
        app,
        &refresh_form(second_refresh),
        Some(&instance),
        Some(&key),
    )
    .await;
    dead.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    let requested = events_of(app, &session, "requested_token").await;
    assert_eq!(requested.len(), 2);
    assert_eq!(
        requested[1]["data"]["tokenRequest"]["grant_type"],
        "refresh_token"
    );
    let text = serde_json::to_string(&crate::support::events(app, &session).await).expect("events");
    for secret in [first_refresh, second_refresh, first_access, second_access] {
        assert!(!text.contains(secret), "an event holds a token: {text}");
    }
}

#[tokio::test]
async fn refresh_tokens_end_with_their_authorizations_lifetime_and_are_off_by_default() {
    let wallet_provider = WalletProvider::new();
    let setup = setup(&wallet_provider, 600).await;
    let app = &setup.app;
    let (_, first, instance, key) = logged_in(&setup, &wallet_provider).await;
    let first_refresh = first["refresh_token"].as_str().expect("a refresh token");
    let access = first["access_token"].as_str().expect("access_token");
    let issued = credential(app, access, &key).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.text);
    // Long after the offer's own expiry: the session ended with success, refreshing goes on.
    app.clock.advance_seconds(400);
    let refreshed = token(
        app,
        &refresh_form(first_refresh),
        Some(&instance),
        Some(&key),
    )
    .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    let second_refresh = refreshed.body["refresh_token"].as_str().expect("rotated");
    // Rotation does not extend the lifetime: 600 s from the code's exchange.
    app.clock.advance_seconds(201);
    let expired = token(
        app,
        &refresh_form(second_refresh),
        Some(&instance),
        Some(&key),
    )
    .await;
    expired.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(expired.text.contains("expired"), "{}", expired.text);

    // Off unless configured: no refresh token, and the grant is not offered.
    let config = json!({"client_attestation": wallet_provider.settings(json!({})),
                        "dpop": {"require_nonce": false}});
    let plain = setup_with(config, json!({}), None).await;
    let metadata = plain
        .app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert!(
        !metadata["grant_types_supported"]
            .as_array()
            .expect("grant types")
            .contains(&json!("refresh_token"))
    );
    let (_, token_response, _, _) = logged_in(&plain, &wallet_provider).await;
    assert!(
        token_response.get("refresh_token").is_none(),
        "{token_response}"
    );
}

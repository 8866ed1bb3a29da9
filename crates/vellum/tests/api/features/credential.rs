//! The credential endpoint: access tokens, request shape, every JWT proof check, nonces, and
//! what failures leave behind.

use reqwest::StatusCode;
use serde_json::{Value, json};
use vellum_formats::jose::{self, Algorithm, SigningKey};

use crate::support::wallet::{Wallet, check_sd_jwt};
use crate::support::{
    CONFIGURATION, DEMO_PROFILE, Reply, credential_reply, demo_session_with_token, events_of,
    fresh_proof, proof_payload, session_status, session_with_token, signed,
};
use crate::support::{TestApp, spawn_app, spawn_app_with};

const PROOF_TYP: &str = "openid4vci-proof+jwt";

/// A request with the given proof for the demo configuration.
fn body(proof: &str) -> Value {
    Wallet::request_body(CONFIGURATION, proof)
}

/// Sends `body`, expects the error, and checks the session is still ACTIVE.
async fn expect_error(app: &TestApp, session: &str, token: &str, body: &Value, error: &str) {
    let reply = credential_reply(app, token, body).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, error);
    reply.assert_no_store();
    assert_eq!(session_status(app, session).await, "ACTIVE");
}

/// Sends a valid request with a fresh nonce and returns the credential.
async fn expect_credential(app: &TestApp, wallet: &Wallet, token: &str) -> String {
    let proof = fresh_proof(app, wallet).await;
    let reply = Reply::of(wallet.credential_request(app, token, &body(&proof)).await).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["credentials"][0]["credential"]
        .as_str()
        .expect("credential")
        .to_owned()
}

#[tokio::test]
async fn a_request_without_an_access_token_is_refused_with_401_invalid_token_and_a_challenge() {
    let app = spawn_app().await;
    let wallet = Wallet::new();
    let proof = fresh_proof(&app, &wallet).await;
    let response = app
        .client
        .post(app.endpoint("/credential"))
        .json(&body(&proof))
        .send()
        .await
        .unwrap();
    let reply = Reply::of(response).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    let challenge = reply.header("www-authenticate").expect("WWW-Authenticate");
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    reply.assert_no_store();
}

#[tokio::test]
async fn an_unknown_access_token_is_refused_with_401_invalid_token() {
    let app = spawn_app().await;
    let (_, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let proof = fresh_proof(&app, &wallet).await;
    let mut other = token.clone();
    other.push('x');
    let reply = credential_reply(&app, &other, &body(&proof)).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    assert!(reply.header("www-authenticate").is_some());
    // A DPoP scheme is no way around it either.
    let response = app
        .client
        .post(app.endpoint("/credential"))
        .header("authorization", format!("DPoP {token}"))
        .json(&body(&proof))
        .send()
        .await
        .unwrap();
    Reply::of(response)
        .await
        .assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    // The real token still works with the same (unused) proof.
    let reply = Reply::of(wallet.credential_request(&app, &token, &body(&proof)).await).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn an_access_token_past_its_lifetime_is_refused_with_401_invalid_token() {
    let app = spawn_app().await;
    let (_, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    app.clock.advance_seconds(299);
    // Still accepted: the request gets as far as the proof.
    let reply = credential_reply(
        &app,
        &token,
        &json!({"credential_configuration_id": CONFIGURATION}),
    )
    .await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_proof");
    app.clock.advance_seconds(1);
    let proof = fresh_proof(&app, &wallet).await;
    let reply = credential_reply(&app, &token, &body(&proof)).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|value| value.contains("invalid_token"))
    );
}

#[tokio::test]
async fn an_access_token_in_the_query_string_is_refused_with_invalid_request() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let proof = fresh_proof(&app, &wallet).await;
    let response = app
        .client
        .post(app.endpoint("/credential"))
        .query(&[("access_token", token.as_str())])
        .json(&body(&proof))
        .send()
        .await
        .unwrap();
    let reply = Reply::of(response).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(session_status(&app, &session).await, "ACTIVE");
}

#[tokio::test]
async fn a_request_without_proofs_is_rejected_with_invalid_proof() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    for request in [
        json!({"credential_configuration_id": CONFIGURATION}),
        json!({"credential_configuration_id": CONFIGURATION, "proofs": {}}),
        json!({"credential_configuration_id": CONFIGURATION, "proofs": {"jwt": []}}),
        json!({"credential_configuration_id": CONFIGURATION, "proofs": {"jwt": [42]}}),
        json!({"credential_configuration_id": CONFIGURATION, "proofs": {"ldp_vp": [{}]}}),
    ] {
        expect_error(&app, &session, &token, &request, "invalid_proof").await;
    }
    expect_credential(&app, &Wallet::new(), &token).await;
}

#[tokio::test]
async fn a_proof_with_the_wrong_typ_is_rejected_with_invalid_proof() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    for typ in ["JWT", "openid4vci-proof+JWT", "dc+sd-jwt"] {
        let nonce = wallet.nonce(&app).await;
        let mut claims = wallet.claims(&app, &nonce);
        claims.typ = typ;
        let proof = wallet.proof_with(&claims);
        expect_error(&app, &session, &token, &body(&proof), "invalid_proof").await;
    }
    let nonce = wallet.nonce(&app).await;
    let untyped = signed(
        json!({"jwk": wallet.key.public_jwk().to_value()}),
        &proof_payload(&app, &nonce),
        &wallet.key,
    );
    expect_error(&app, &session, &token, &body(&untyped), "invalid_proof").await;
    expect_credential(&app, &wallet, &token).await;
}

/// RFC 7515 §4.1.11: a JWS whose `crit` names extensions the recipient does not understand
/// must be refused; this issuer understands none.
#[tokio::test]
async fn a_proof_with_critical_header_extensions_is_rejected_with_invalid_proof() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    for crit in [json!(["exp"]), json!(["b64"]), json!([])] {
        let nonce = wallet.nonce(&app).await;
        let proof = signed(
            json!({"typ": PROOF_TYP, "jwk": wallet.key.public_jwk().to_value(),
                   "crit": crit, "exp": 1, "b64": true}),
            &proof_payload(&app, &nonce),
            &wallet.key,
        );
        expect_error(&app, &session, &token, &body(&proof), "invalid_proof").await;
    }
    expect_credential(&app, &wallet, &token).await;
}

#[tokio::test]
async fn a_proof_with_alg_none_or_an_unknown_alg_is_rejected_with_invalid_proof() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let nonce = wallet.nonce(&app).await;
    let payload = jose::b64(proof_payload(&app, &nonce).to_string());
    for alg in ["none", "HS256", "RS256", "ES512"] {
        let header =
            json!({"alg": alg, "typ": PROOF_TYP, "jwk": wallet.key.public_jwk().to_value()});
        let unsigned = format!("{}.{payload}.", jose::b64(header.to_string()));
        expect_error(&app, &session, &token, &body(&unsigned), "invalid_proof").await;
        // The same with a signature over the input, made with the wallet's key.
        let input = format!("{}.{payload}", jose::b64(header.to_string()));
        let with_signature = format!("{input}.{}", jose::b64(wallet.key.sign(input.as_bytes())));
        expect_error(
            &app,
            &session,
            &token,
            &body(&with_signature),
            "invalid_proof",
        )
        .await;
    }
    // The nonce was never consumed by the refused proofs.
    let reply = credential_reply(&app, &token, &body(&wallet.proof(&app, &nonce))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn a_proof_with_an_algorithm_the_configuration_does_not_allow_is_rejected_with_invalid_proof()
{
    let app = spawn_app_with(json!({
        "credential_configurations": {
            "identity_credential": {"proof_signing_alg_values_supported": ["ES256"]}
        }
    }))
    .await;
    let (session, token) = demo_session_with_token(&app).await;
    for algorithm in [Algorithm::ES384, Algorithm::EdDSA] {
        let wallet = Wallet::with(algorithm);
        let proof = fresh_proof(&app, &wallet).await;
        expect_error(&app, &session, &token, &body(&proof), "invalid_proof").await;
    }
    // An alg header that does not match the key is refused too.
    let wallet = Wallet::new();
    let nonce = wallet.nonce(&app).await;
    let header =
        json!({"alg": "ES384", "typ": PROOF_TYP, "jwk": wallet.key.public_jwk().to_value()});
    let input = format!(
        "{}.{}",
        jose::b64(header.to_string()),
        jose::b64(proof_payload(&app, &nonce).to_string())
    );
    let mismatched = format!("{input}.{}", jose::b64(wallet.key.sign(input.as_bytes())));
    expect_error(&app, &session, &token, &body(&mismatched), "invalid_proof").await;
    expect_credential(&app, &wallet, &token).await;
}

#[tokio::test]
async fn a_proof_naming_its_key_by_kid_or_x5c_is_rejected_with_invalid_proof() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let did = format!(
        "did:jwk:{}",
        jose::b64(wallet.key.public_jwk().to_value().to_string())
    );
    let jwk = wallet.key.public_jwk().to_value();
    for header in [
        json!({"typ": PROOF_TYP, "kid": format!("{did}#0")}),
        json!({"typ": PROOF_TYP, "x5c": ["MIIB"]}),
        json!({"typ": PROOF_TYP, "kid": format!("{did}#0"), "jwk": jwk}),
        json!({"typ": PROOF_TYP}),
    ] {
        let nonce = wallet.nonce(&app).await;
        let proof = signed(header, &proof_payload(&app, &nonce), &wallet.key);
        expect_error(&app, &session, &token, &body(&proof), "invalid_proof").await;
    }
    expect_credential(&app, &wallet, &token).await;
}

#[tokio::test]
async fn a_proof_carrying_a_private_key_is_rejected_with_invalid_proof() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let nonce = wallet.nonce(&app).await;
    let header = json!({"typ": PROOF_TYP, "jwk": wallet.key.private_jwk().to_value()});
    let proof = signed(header, &proof_payload(&app, &nonce), &wallet.key);
    expect_error(&app, &session, &token, &body(&proof), "invalid_proof").await;
    expect_credential(&app, &wallet, &token).await;
}

#[tokio::test]
async fn a_proof_signed_by_another_key_than_its_jwk_is_rejected_with_invalid_proof() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let other = SigningKey::generate(Algorithm::ES256);
    let nonce = wallet.nonce(&app).await;
    let header = json!({"typ": PROOF_TYP, "jwk": wallet.key.public_jwk().to_value()});
    let proof = signed(header, &proof_payload(&app, &nonce), &other);
    expect_error(&app, &session, &token, &body(&proof), "invalid_proof").await;
    // A valid proof whose payload was changed afterwards fails the same way.
    let genuine = wallet.proof(&app, &nonce);
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut payload = proof_payload(&app, &nonce);
    payload["iat"] = Value::from(app.clock_seconds() - 1);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        jose::b64(payload.to_string()),
        parts[2]
    );
    expect_error(&app, &session, &token, &body(&tampered), "invalid_proof").await;
    let reply = credential_reply(&app, &token, &body(&genuine)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn a_proof_for_another_audience_is_rejected_with_invalid_proof() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    for aud in [
        json!("https://issuer.example"),
        json!(format!("{}/", app.url)),
        json!(null),
        json!(42),
    ] {
        let nonce = wallet.nonce(&app).await;
        let mut claims = wallet.claims(&app, &nonce);
        claims.aud = aud;
        expect_error(
            &app,
            &session,
            &token,
            &body(&wallet.proof_with(&claims)),
            "invalid_proof",
        )
        .await;
    }
    expect_credential(&app, &wallet, &token).await;
}

#[tokio::test]
async fn a_proof_issued_too_long_ago_or_too_far_ahead_is_rejected_with_invalid_proof() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    for offset in [-301, 61, -100_000] {
        let nonce = wallet.nonce(&app).await;
        let mut claims = wallet.claims(&app, &nonce);
        claims.iat = app.clock_seconds() + offset;
        expect_error(
            &app,
            &session,
            &token,
            &body(&wallet.proof_with(&claims)),
            "invalid_proof",
        )
        .await;
    }
    // The edges of the window are inside it.
    let nonce = wallet.nonce(&app).await;
    let mut claims = wallet.claims(&app, &nonce);
    claims.iat = app.clock_seconds() - 300;
    let reply = credential_reply(&app, &token, &body(&wallet.proof_with(&claims))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let (_, token) = demo_session_with_token(&app).await;
    let nonce = wallet.nonce(&app).await;
    let mut claims = wallet.claims(&app, &nonce);
    claims.iat = app.clock_seconds() + 60;
    let reply = credential_reply(&app, &token, &body(&wallet.proof_with(&claims))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn a_proof_without_nonce_is_rejected_with_invalid_proof() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let mut claims = wallet.claims(&app, "unused");
    claims.nonce = None;
    expect_error(
        &app,
        &session,
        &token,
        &body(&wallet.proof_with(&claims)),
        "invalid_proof",
    )
    .await;
    expect_credential(&app, &wallet, &token).await;
}

#[tokio::test]
async fn a_forged_nonce_is_rejected_with_invalid_nonce() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let genuine = wallet.nonce(&app).await;
    let mut bytes = jose::b64_decode(&genuine).unwrap();
    // Push the expiry a day later: the MAC no longer matches.
    bytes[5] ^= 0x01;
    let later = jose::b64(&bytes);
    let mut flipped = jose::b64_decode(&genuine).unwrap();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x80;
    for forged in [
        later,
        jose::b64(&flipped),
        jose::b64([7u8; 41]),
        "not a nonce".to_owned(),
        String::new(),
    ] {
        let proof = wallet.proof(&app, &forged);
        expect_error(&app, &session, &token, &body(&proof), "invalid_nonce").await;
    }
    let reply = credential_reply(&app, &token, &body(&wallet.proof(&app, &genuine))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn an_expired_nonce_is_rejected_with_invalid_nonce() {
    let app = spawn_app().await;
    let wallet = Wallet::new();
    let nonce = wallet.nonce(&app).await;
    app.clock.advance_seconds(300);
    let (session, token) = demo_session_with_token(&app).await;
    let reply = credential_reply(&app, &token, &body(&wallet.proof(&app, &nonce))).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_nonce");
    assert_eq!(session_status(&app, &session).await, "ACTIVE");
    expect_credential(&app, &wallet, &token).await;
}

#[tokio::test]
async fn a_nonce_is_valid_until_its_last_second() {
    let app = spawn_app().await;
    let wallet = Wallet::new();
    let nonce = wallet.nonce(&app).await;
    app.clock.advance_seconds(299);
    let (_, token) = demo_session_with_token(&app).await;
    let reply = credential_reply(&app, &token, &body(&wallet.proof(&app, &nonce))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn a_nonce_already_used_in_another_session_is_rejected_with_invalid_nonce() {
    let app = spawn_app().await;
    let wallet = Wallet::new();
    let nonce = wallet.nonce(&app).await;
    let (_, first) = demo_session_with_token(&app).await;
    let reply = credential_reply(&app, &first, &body(&wallet.proof(&app, &nonce))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let (session, second) = demo_session_with_token(&app).await;
    let replay = wallet.proof(&app, &nonce);
    expect_error(&app, &session, &second, &body(&replay), "invalid_nonce").await;
    // Another wallet re-using the nonce fares no better.
    let thief = Wallet::new();
    expect_error(
        &app,
        &session,
        &second,
        &body(&thief.proof(&app, &nonce)),
        "invalid_nonce",
    )
    .await;
    expect_credential(&app, &wallet, &second).await;
}

#[tokio::test]
async fn an_unknown_credential_configuration_id_is_rejected_with_unknown_credential_configuration()
{
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    for id in [json!("passport"), json!(""), json!(7)] {
        let proof = fresh_proof(&app, &wallet).await;
        let request = json!({"credential_configuration_id": id, "proofs": {"jwt": [proof]}});
        expect_error(
            &app,
            &session,
            &token,
            &request,
            "unknown_credential_configuration",
        )
        .await;
    }
    expect_credential(&app, &wallet, &token).await;
}

#[tokio::test]
async fn only_the_sessions_credential_identifier_is_accepted() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let proof = fresh_proof(&app, &wallet).await;
    let request = json!({"credential_identifier": "another-dataset", "proofs": {"jwt": [proof]}});
    expect_error(
        &app,
        &session,
        &token,
        &request,
        "unknown_credential_identifier",
    )
    .await;
    // The identifier a token response names (OID4VCI 1.0 §6.2) is the session's configuration.
    let proof = fresh_proof(&app, &wallet).await;
    let request = json!({"credential_identifier": CONFIGURATION, "proofs": {"jwt": [proof]}});
    let reply = Reply::of(wallet.credential_request(&app, &token, &request).await).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn both_or_neither_of_configuration_id_and_identifier_is_an_invalid_credential_request() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let proof = fresh_proof(&app, &wallet).await;
    for request in [
        json!({
            "credential_configuration_id": CONFIGURATION,
            "credential_identifier": CONFIGURATION,
            "proofs": {"jwt": [proof]}
        }),
        json!({"proofs": {"jwt": [proof]}}),
        json!([]),
        json!("identity_credential"),
    ] {
        expect_error(
            &app,
            &session,
            &token,
            &request,
            "invalid_credential_request",
        )
        .await;
    }
    let reply = credential_reply(&app, &token, &body(&proof)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_an_invalid_credential_request() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let proof = fresh_proof(&app, &wallet).await;
    let valid = body(&proof).to_string();
    let attempts = [
        (
            "application/json",
            "{\"credential_configuration_id\": ".to_owned(),
        ),
        ("text/plain", valid.clone()),
        (
            "application/x-www-form-urlencoded",
            "credential_configuration_id=identity_credential".to_owned(),
        ),
    ];
    for (content_type, text) in attempts {
        let response = app
            .client
            .post(app.endpoint("/credential"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(text)
            .send()
            .await
            .unwrap();
        let reply = Reply::of(response).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_credential_request");
        reply.assert_no_store();
    }
    let response = app
        .client
        .post(app.endpoint("/credential"))
        .bearer_auth(&token)
        .body(valid.clone())
        .send()
        .await
        .unwrap();
    Reply::of(response)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_credential_request");
    assert_eq!(session_status(&app, &session).await, "ACTIVE");
    let failures = events_of(&app, &session, "credential_request_failed").await;
    assert_eq!(failures.len(), 4, "{failures:?}");
    for failure in &failures {
        assert_eq!(failure["data"]["error"], "invalid_credential_request");
    }
    let reply = credential_reply(&app, &token, &body(&proof)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn the_access_token_is_checked_before_the_body() {
    let app = spawn_app().await;
    for token in [None, Some("unknown-token")] {
        let mut request = app
            .client
            .post(app.endpoint("/credential"))
            .header("content-type", "application/json")
            .body("{not json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let reply = Reply::of(request.send().await.unwrap()).await;
        reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
        assert!(reply.header("www-authenticate").is_some());
    }
}

#[tokio::test]
async fn unknown_request_fields_are_ignored() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let mut request = body(&fresh_proof(&app, &wallet).await);
    request["x_random_field"] = json!({"nested": [1, 2, 3]});
    request["format"] = json!("dc+sd-jwt");
    let reply = credential_reply(&app, &token, &request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(session_status(&app, &session).await, "SUCCESSFUL");
}

#[tokio::test]
async fn es384_and_eddsa_proofs_are_accepted_and_bound_into_cnf() {
    let app = spawn_app().await;
    for algorithm in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
        let wallet = Wallet::with(algorithm);
        let (_, token) = demo_session_with_token(&app).await;
        let credential = expect_credential(&app, &wallet, &token).await;
        let checked = check_sd_jwt(&app, &credential).await;
        assert_eq!(
            checked.claims["cnf"]["jwk"],
            wallet.key.public_jwk().to_value(),
            "{algorithm}"
        );
        assert_eq!(
            checked.header["alg"], "ES256",
            "the issuer signs with its own key"
        );
    }
}

#[tokio::test]
async fn an_offer_pinned_to_a_holder_key_refuses_other_keys_and_accepts_that_key() {
    let app = spawn_app().await;
    let holder = Wallet::with(Algorithm::EdDSA);
    let mut pinned = holder.key.public_jwk().to_value();
    pinned["kid"] = json!("holder-key-1");
    let (session, token) = session_with_token(
        &app,
        json!({
            "profileId": DEMO_PROFILE,
            "runtimeOverrides": {"expectedCredentialProofKeyJwk": pinned}
        }),
    )
    .await;
    for stranger in [Wallet::new(), Wallet::with(Algorithm::EdDSA)] {
        let proof = fresh_proof(&app, &stranger).await;
        expect_error(&app, &session, &token, &body(&proof), "invalid_proof").await;
    }
    let credential = expect_credential(&app, &holder, &token).await;
    let checked = check_sd_jwt(&app, &credential).await;
    assert_eq!(
        checked.claims["cnf"]["jwk"],
        holder.key.public_jwk().to_value()
    );
}

#[tokio::test]
async fn every_retryable_failure_leaves_the_session_active_and_is_recorded() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let other_issuer = {
        let nonce = wallet.nonce(&app).await;
        let mut claims = wallet.claims(&app, &nonce);
        claims.aud = json!("https://elsewhere.example");
        wallet.proof_with(&claims)
    };
    let proof = fresh_proof(&app, &wallet).await;
    let cases = [
        (
            json!({"credential_configuration_id": CONFIGURATION}),
            "invalid_proof",
        ),
        (body(&other_issuer), "invalid_proof"),
        (body(&wallet.proof(&app, "forged")), "invalid_nonce"),
        (
            json!({"credential_configuration_id": "other", "proofs": {"jwt": [proof]}}),
            "unknown_credential_configuration",
        ),
        (
            json!({"credential_identifier": "x", "proofs": {"jwt": [proof]}}),
            "unknown_credential_identifier",
        ),
        (
            json!({"proofs": {"jwt": [proof]}}),
            "invalid_credential_request",
        ),
        (
            {
                let mut request = body(&proof);
                request["credential_response_encryption"] = json!({"enc": "A256GCM"});
                request
            },
            "invalid_encryption_parameters",
        ),
    ];
    let mut told = Vec::new();
    for (request, error) in &cases {
        let reply = credential_reply(&app, &token, request).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, error);
        assert_eq!(
            session_status(&app, &session).await,
            "ACTIVE",
            "after {error}"
        );
        told.push(reply.body);
    }
    let failures = events_of(&app, &session, "credential_request_failed").await;
    assert_eq!(failures.len(), cases.len(), "{failures:?}");
    for (event, body) in failures.iter().zip(&told) {
        assert_eq!(event["id"], session.as_str());
        assert_eq!(event["data"]["error"], body["error"]);
        assert_eq!(
            event["data"]["error_description"],
            body["error_description"]
        );
    }
    assert!(
        events_of(&app, &session, "issuance_status_changed")
            .await
            .is_empty()
    );

    let reply = credential_reply(&app, &token, &body(&proof)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(session_status(&app, &session).await, "SUCCESSFUL");
}

#[tokio::test]
async fn credential_responses_and_errors_are_not_cacheable() {
    let app = spawn_app().await;
    let (_, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let error = credential_reply(&app, &token, &json!({})).await;
    assert_eq!(error.status, StatusCode::BAD_REQUEST);
    error.assert_no_store();
    let unauthorized = credential_reply(&app, "nope", &json!({})).await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    unauthorized.assert_no_store();
    let proof = fresh_proof(&app, &wallet).await;
    let success = credential_reply(&app, &token, &body(&proof)).await;
    assert_eq!(success.status, StatusCode::OK, "{}", success.text);
    success.assert_no_store();
    let members: Vec<&String> = success.body.as_object().unwrap().keys().collect();
    assert_eq!(members, ["credentials", "notification_id"]);
    assert_eq!(success.body["credentials"].as_array().unwrap().len(), 1);
}

/// Sends the requests at once; returns the replies in the order given.
async fn concurrently(app: &TestApp, requests: Vec<(String, Value)>) -> Vec<Reply> {
    let mut handles = Vec::new();
    for (token, body) in requests {
        let request = app
            .client
            .post(app.endpoint("/credential"))
            .bearer_auth(token)
            .json(&body);
        handles.push(tokio::spawn(async move {
            Reply::of(request.send().await.expect("credential request")).await
        }));
    }
    let mut replies = Vec::new();
    for handle in handles {
        replies.push(handle.await.expect("task"));
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_on_one_session_issue_exactly_one_credential() {
    let app = spawn_app().await;
    for _ in 0..3 {
        let (session, token) = demo_session_with_token(&app).await;
        let mut requests = Vec::new();
        for _ in 0..4 {
            let proof = fresh_proof(&app, &Wallet::new()).await;
            requests.push((token.clone(), body(&proof)));
        }
        let replies = concurrently(&app, requests).await;
        let issued = replies
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count();
        assert_eq!(issued, 1, "one credential per offer");
        for reply in replies.iter().filter(|r| r.status != StatusCode::OK) {
            reply.assert_oauth_error(StatusCode::BAD_REQUEST, "credential_request_denied");
        }
        assert_eq!(session_status(&app, &session).await, "SUCCESSFUL");
        assert_eq!(events_of(&app, &session, "sdjwt_issue").await.len(), 1);
        assert_eq!(
            events_of(&app, &session, "credential_request_failed")
                .await
                .len(),
            3
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_nonce_used_concurrently_in_two_sessions_serves_only_one_of_them() {
    let app = spawn_app().await;
    for _ in 0..3 {
        let wallet = Wallet::new();
        let nonce = wallet.nonce(&app).await;
        let (first, first_token) = demo_session_with_token(&app).await;
        let (second, second_token) = demo_session_with_token(&app).await;
        let proof = wallet.proof(&app, &nonce);
        let replies = concurrently(
            &app,
            vec![(first_token, body(&proof)), (second_token, body(&proof))],
        )
        .await;
        let issued = replies
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count();
        assert_eq!(issued, 1);
        let refused = replies.iter().find(|r| r.status != StatusCode::OK).unwrap();
        refused.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_nonce");
        let mut statuses = vec![
            session_status(&app, &first).await,
            session_status(&app, &second).await,
        ];
        statuses.sort();
        assert_eq!(statuses, ["ACTIVE", "SUCCESSFUL"]);
    }
}

//! DPoP (RFC 9449): tokens bound to the wallet's key at the token endpoint, proofs checked there
//! and at the credential endpoint (method, URL, time, token hash, key, single use), server nonces
//! with `use_dpop_nonce`, and the settings that require DPoP or drop the nonce.

use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use vellum_formats::jose::{self, Algorithm, SigningKey};

use crate::support::wallet::{PRE_AUTHORIZED_GRANT, Wallet, check_sd_jwt};
use crate::support::{
    CONFIGURATION, DEMO_PROFILE, Reply, TestApp, events_of, offer_id, offer_with_code, spawn_app,
    spawn_app_with,
};

/// A wallet's DPoP key and the proofs it makes.
struct Dpop {
    key: SigningKey,
}

/// One proof's contents, changeable by a test.
struct ProofSpec {
    header: Map<String, Value>,
    claims: Value,
}

impl Dpop {
    fn new() -> Self {
        Dpop {
            key: SigningKey::generate(Algorithm::ES256),
        }
    }

    /// A correct proof for `POST url`, with `nonce` and the hash of `access_token` when given.
    fn spec(
        &self,
        app: &TestApp,
        url: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> ProofSpec {
        let mut header = Map::new();
        header.insert("typ".into(), Value::from("dpop+jwt"));
        header.insert("jwk".into(), self.key.public_jwk().to_value());
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "htm": "POST",
            "htu": url,
            "iat": app.clock_seconds(),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::from(nonce);
        }
        if let Some(token) = access_token {
            claims["ath"] = Value::from(jose::b64(Sha256::digest(token.as_bytes())));
        }
        ProofSpec { header, claims }
    }

    fn sign(&self, spec: &ProofSpec) -> String {
        jose::sign_compact(spec.header.clone(), &spec.claims, &self.key)
    }

    fn proof(&self, app: &TestApp, path: &str, nonce: Option<&str>, token: Option<&str>) -> String {
        self.sign(&self.spec(app, &app.endpoint(path), nonce, token))
    }
}

async fn token_with(app: &TestApp, code: &str, proofs: &[&str]) -> Reply {
    let mut request = app.client.post(app.endpoint("/token")).form(&[
        ("grant_type", PRE_AUTHORIZED_GRANT),
        ("pre-authorized_code", code),
    ]);
    for proof in proofs {
        request = request.header("DPoP", *proof);
    }
    Reply::of(request.send().await.expect("token request")).await
}

async fn credential_with(
    app: &TestApp,
    authorization: &str,
    proof: Option<&str>,
    body: &Value,
) -> Reply {
    let mut request = app
        .client
        .post(app.endpoint("/credential"))
        .header("Authorization", authorization)
        .json(body);
    if let Some(proof) = proof {
        request = request.header("DPoP", proof);
    }
    Reply::of(request.send().await.expect("credential request")).await
}

fn server_nonce(reply: &Reply) -> String {
    reply
        .header("DPoP-Nonce")
        .unwrap_or_else(|| panic!("a DPoP-Nonce header: {} {}", reply.status, reply.text))
        .to_owned()
}

/// The token endpoint's first answer to a proof without a nonce: `use_dpop_nonce` and a nonce.
async fn first_nonce(app: &TestApp, dpop: &Dpop, code: &str) -> String {
    let reply = token_with(app, code, &[&dpop.proof(app, "/token", None, None)]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
    server_nonce(&reply)
}

/// A session with a DPoP-bound access token: (session id, token, the latest server nonce).
async fn bound_session(app: &TestApp, dpop: &Dpop) -> (String, String, String) {
    let (created, _, code) = offer_with_code(app, json!({"profileId": DEMO_PROFILE})).await;
    let nonce = first_nonce(app, dpop, &code).await;
    let reply = token_with(
        app,
        &code,
        &[&dpop.proof(app, "/token", Some(&nonce), None)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["token_type"], "DPoP");
    reply.assert_no_store();
    (
        offer_id(&created),
        reply.body["access_token"]
            .as_str()
            .expect("token")
            .to_owned(),
        server_nonce(&reply),
    )
}

async fn credential_body(app: &TestApp, wallet: &Wallet) -> Value {
    Wallet::request_body(CONFIGURATION, &wallet.proof(app, &wallet.nonce(app).await))
}

#[tokio::test]
async fn a_wallet_that_proves_its_key_gets_a_bound_token_and_the_credential_after_one_nonce_round()
{
    let app = spawn_app().await;
    let (dpop, wallet) = (Dpop::new(), Wallet::new());
    let (session, token, nonce) = bound_session(&app, &dpop).await;
    // The nonce round is a step of the exchange, not a failure the operator is told about.
    assert!(
        events_of(&app, &session, "token_request_failed")
            .await
            .is_empty()
    );
    let requested = events_of(&app, &session, "requested_token").await;
    assert_eq!(requested.len(), 1);
    assert!(
        !requested[0].to_string().contains("eyJ"),
        "no proof in the event: {}",
        requested[0]
    );

    let proof = dpop.proof(&app, "/credential", Some(&nonce), Some(&token));
    let body = credential_body(&app, &wallet).await;
    let reply = credential_with(&app, &format!("DPoP {token}"), Some(&proof), &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(reply.header("DPoP-Nonce").is_some());
    let credential = reply.body["credentials"][0]["credential"]
        .as_str()
        .expect("credential");
    let checked = check_sd_jwt(&app, credential).await;
    assert_eq!(
        checked.claims["cnf"]["jwk"],
        wallet.key.public_jwk().to_value(),
        "bound to the proof's key, not the DPoP key"
    );
}

#[tokio::test]
async fn the_nonce_endpoint_hands_out_a_dpop_nonce_too_and_metadata_lists_the_algorithms() {
    let app = spawn_app().await;
    let reply = Reply::of(
        app.client
            .post(app.endpoint("/nonce"))
            .send()
            .await
            .expect("nonce"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let nonce = server_nonce(&reply);
    assert_ne!(nonce, reply.body["c_nonce"].as_str().expect("c_nonce"));

    // That nonce is accepted at the token endpoint straight away.
    let dpop = Dpop::new();
    let (_, _, code) = offer_with_code(&app, json!({"profileId": DEMO_PROFILE})).await;
    let reply = token_with(
        &app,
        &code,
        &[&dpop.proof(&app, "/token", Some(&nonce), None)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let metadata = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(
        metadata["dpop_signing_alg_values_supported"],
        json!(["ES256", "ES384", "EdDSA"])
    );
}

#[tokio::test]
async fn the_token_endpoint_refuses_each_kind_of_bad_proof_and_leaves_the_code_usable() {
    let app = spawn_app().await;
    let dpop = Dpop::new();
    let (_, _, code) = offer_with_code(&app, json!({"profileId": DEMO_PROFILE})).await;
    let nonce = first_nonce(&app, &dpop, &code).await;
    let token_url = app.endpoint("/token");
    let good = || dpop.spec(&app, &token_url, Some(&nonce), None);
    let private_key = {
        let mut spec = good();
        spec.header
            .insert("jwk".into(), dpop.key.private_jwk().to_value());
        spec
    };
    let cases: Vec<(&str, ProofSpec)> = vec![
        ("typ", {
            let mut spec = good();
            spec.header.insert("typ".into(), Value::from("JWT"));
            spec
        }),
        ("jwk", {
            let mut spec = good();
            spec.header.remove("jwk");
            spec
        }),
        ("private", private_key),
        ("htm", {
            let mut spec = good();
            spec.claims["htm"] = Value::from("GET");
            spec
        }),
        ("htu", {
            let mut spec = good();
            spec.claims["htu"] = Value::from(app.endpoint("/credential"));
            spec
        }),
        ("iat", {
            let mut spec = good();
            spec.claims["iat"] = Value::from(app.clock_seconds() - 121);
            spec
        }),
        ("future", {
            let mut spec = good();
            spec.claims["iat"] = Value::from(app.clock_seconds() + 61);
            spec
        }),
        ("jti", {
            let mut spec = good();
            spec.claims.as_object_mut().expect("claims").remove("jti");
            spec
        }),
    ];
    for (what, spec) in cases {
        let reply = token_with(&app, &code, &[&dpop.sign(&spec)]).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
        assert!(
            !reply.text.contains("eyJ"),
            "{what}: the proof is not echoed: {}",
            reply.text
        );
    }
    // Signed by another key than the one in its header.
    let spec = good();
    let forged = jose::sign_compact(
        spec.header.clone(),
        &spec.claims,
        &SigningKey::generate(Algorithm::ES256),
    );
    token_with(&app, &code, &[&forged])
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
    // alg none, and a MAC algorithm: not asymmetric.
    for alg in ["none", "HS256"] {
        let header = jose::b64(
            json!({"typ": "dpop+jwt", "alg": alg, "jwk": dpop.key.public_jwk().to_value()})
                .to_string(),
        );
        let payload = jose::b64(good().claims.to_string());
        let token = format!("{header}.{payload}.");
        token_with(&app, &code, &[&token])
            .await
            .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
    }
    // Two DPoP headers.
    let (one, two) = (dpop.sign(&good()), dpop.sign(&good()));
    token_with(&app, &code, &[&one, &two])
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
    // A nonce this issuer never gave: try again with one.
    let reply = token_with(
        &app,
        &code,
        &[&dpop.proof(&app, "/token", Some("bm90LWEtbm9uY2U"), None)],
    )
    .await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
    assert!(reply.header("DPoP-Nonce").is_some());

    // After all that, a good proof still redeems the code; the same proof again is a replay.
    let proof = dpop.sign(&good());
    let reply = token_with(&app, &code, &[&proof]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let (_, _, other_code) = offer_with_code(&app, json!({"profileId": DEMO_PROFILE})).await;
    let reply = token_with(&app, &other_code, &[&proof]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
    assert!(
        reply.body["error_description"]
            .as_str()
            .expect("description")
            .contains("already been used")
    );
}

#[tokio::test]
async fn a_bound_token_is_only_accepted_with_a_fresh_proof_by_its_key_for_this_request() {
    let app = spawn_app_with(json!({"dpop": {"nonce_ttl_seconds": 60}})).await;
    let (dpop, wallet) = (Dpop::new(), Wallet::new());
    let (session, token, nonce) = bound_session(&app, &dpop).await;
    let body = credential_body(&app, &wallet).await;
    let credential_url = app.endpoint("/credential");
    let dpop_auth = format!("DPoP {token}");

    // As a Bearer token: refused, with a Bearer challenge.
    let reply = credential_with(&app, &format!("Bearer {token}"), None, &body).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    // Without a proof, or with proofs that fail one check each.
    let reply = credential_with(&app, &dpop_auth, None, &body).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_dpop_proof");
    assert!(
        reply
            .header("WWW-Authenticate")
            .is_some_and(|challenge| challenge.starts_with("DPoP error=\"invalid_dpop_proof\"")),
        "{:?}",
        reply.header("WWW-Authenticate")
    );
    let good = || dpop.spec(&app, &credential_url, Some(&nonce), Some(&token));
    let mut no_ath = good();
    no_ath.claims.as_object_mut().expect("claims").remove("ath");
    let mut other_ath = good();
    other_ath.claims["ath"] = Value::from(jose::b64(Sha256::digest(b"another token")));
    let mut wrong_htu = good();
    wrong_htu.claims["htu"] = Value::from(app.endpoint("/token"));
    for (what, proof) in [
        ("no ath", dpop.sign(&no_ath)),
        ("another token's ath", dpop.sign(&other_ath)),
        ("the token endpoint's htu", dpop.sign(&wrong_htu)),
        (
            "another key",
            Dpop::new().sign(&Dpop::new().spec(&app, &credential_url, Some(&nonce), Some(&token))),
        ),
    ] {
        let reply = credential_with(&app, &dpop_auth, Some(&proof), &body).await;
        assert_eq!(
            (reply.status, reply.body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_dpop_proof")),
            "{what}: {}",
            reply.text
        );
    }
    let failures = events_of(&app, &session, "credential_request_failed").await;
    assert_eq!(failures.len(), 6, "every refusal is recorded");
    assert!(
        failures
            .iter()
            .skip(1)
            .all(|event| event["data"]["error"] == "invalid_dpop_proof")
    );

    // A stale nonce (nonce_ttl_seconds is 60 here): use_dpop_nonce with a fresh one, not
    // recorded as a failure; the fresh one works.
    app.clock.advance_seconds(61);
    let stale = dpop.proof(&app, "/credential", Some(&nonce), Some(&token));
    let reply = credential_with(&app, &dpop_auth, Some(&stale), &body).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "use_dpop_nonce");
    assert!(
        reply
            .header("WWW-Authenticate")
            .is_some_and(|challenge| challenge.starts_with("DPoP error=\"use_dpop_nonce\""))
    );
    let fresh = server_nonce(&reply);
    assert_eq!(
        events_of(&app, &session, "credential_request_failed")
            .await
            .len(),
        6
    );
    let proof = dpop.proof(&app, "/credential", Some(&fresh), Some(&token));
    let reply = credential_with(&app, &dpop_auth, Some(&proof), &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn a_proof_is_used_once_at_the_credential_endpoint() {
    let app = spawn_app().await;
    let (dpop, wallet) = (Dpop::new(), Wallet::new());
    let (_, token, nonce) = bound_session(&app, &dpop).await;
    let proof = dpop.proof(&app, "/credential", Some(&nonce), Some(&token));
    let dpop_auth = format!("DPoP {token}");
    // The first use fails on the body (no key proof), the proof is spent all the same.
    let reply = credential_with(
        &app,
        &dpop_auth,
        Some(&proof),
        &json!({"credential_configuration_id": CONFIGURATION}),
    )
    .await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_proof");
    let body = credential_body(&app, &wallet).await;
    let reply = credential_with(&app, &dpop_auth, Some(&proof), &body).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_dpop_proof");
    let proof = dpop.proof(&app, "/credential", Some(&nonce), Some(&token));
    let reply = credential_with(&app, &dpop_auth, Some(&proof), &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn a_bearer_token_is_refused_with_the_dpop_scheme() {
    let app = spawn_app().await;
    let wallet = Wallet::new();
    let (_, _, code) = offer_with_code(&app, json!({"profileId": DEMO_PROFILE})).await;
    let reply = token_with(&app, &code, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["token_type"], "Bearer");
    let token = reply.body["access_token"].as_str().expect("token");
    let body = credential_body(&app, &wallet).await;
    let reply = credential_with(&app, &format!("DPoP {token}"), None, &body).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    let reply = credential_with(&app, &format!("Bearer {token}"), None, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn with_dpop_required_a_token_request_without_a_proof_is_refused() {
    let app = spawn_app_with(json!({"dpop": {"required": true}})).await;
    let (created, _, code) = offer_with_code(&app, json!({"profileId": DEMO_PROFILE})).await;
    let reply = token_with(&app, &code, &[]).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
    let session = &offer_id(&created);
    let failed = events_of(&app, session, "token_request_failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["error"], "invalid_dpop_proof");
    let dpop = Dpop::new();
    let nonce = first_nonce(&app, &dpop, &code).await;
    let reply = token_with(
        &app,
        &code,
        &[&dpop.proof(&app, "/token", Some(&nonce), None)],
    )
    .await;
    assert_eq!(reply.body["token_type"], "DPoP", "{}", reply.text);
}

#[tokio::test]
async fn without_required_nonces_a_proof_needs_none_and_no_nonce_header_is_sent() {
    let app = spawn_app_with(json!({"dpop": {"require_nonce": false}})).await;
    let (dpop, wallet) = (Dpop::new(), Wallet::new());
    let (_, _, code) = offer_with_code(&app, json!({"profileId": DEMO_PROFILE})).await;
    let reply = token_with(&app, &code, &[&dpop.proof(&app, "/token", None, None)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.header("DPoP-Nonce"), None);
    let token = reply.body["access_token"].as_str().expect("token");
    let proof = dpop.proof(&app, "/credential", None, Some(token));
    let body = credential_body(&app, &wallet).await;
    let reply = credential_with(&app, &format!("DPoP {token}"), Some(&proof), &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn a_bound_token_reports_to_the_notification_endpoint_with_a_proof_for_it() {
    let app = spawn_app().await;
    let dpop = Dpop::new();
    let (session, token, nonce) = bound_session(&app, &dpop).await;
    let wallet = Wallet::new();
    let reply = credential_with(
        &app,
        &format!("DPoP {token}"),
        Some(&dpop.proof(&app, "/credential", Some(&nonce), Some(&token))),
        &credential_body(&app, &wallet).await,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let nonce = server_nonce(&reply);
    let body = json!({"notification_id": reply.body["notification_id"],
                      "event": "credential_accepted"});
    let notify = |authorization: String, proof: Option<String>| {
        let mut request = app
            .client
            .post(app.endpoint("/notification"))
            .header("Authorization", authorization)
            .json(&body);
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        async move { Reply::of(request.send().await.expect("notification")).await }
    };
    let bearer = notify(format!("Bearer {token}"), None).await;
    bearer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    let elsewhere = notify(
        format!("DPoP {token}"),
        Some(dpop.proof(&app, "/credential", Some(&nonce), Some(&token))),
    )
    .await;
    elsewhere.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_dpop_proof");
    let proven = notify(
        format!("DPoP {token}"),
        Some(dpop.proof(&app, "/notification", Some(&nonce), Some(&token))),
    )
    .await;
    assert_eq!(proven.status, StatusCode::NO_CONTENT, "{}", proven.text);
    assert_eq!(
        events_of(&app, &session, "credential_accepted").await.len(),
        1
    );
}

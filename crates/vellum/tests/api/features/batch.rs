//! Batch issuance (OID4VCI 1.0 §8): one credential request with n key proofs gets n
//! credentials, each bound to its own key, with its own salts and, with status lists, its own
//! entry; one issuance event per credential. And the singular `proof` of drafts 13-15.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::wallet::{Wallet, check_sd_jwt};
use crate::support::{
    CONFIGURATION, DEMO_KEY, Reply, TestApp, create_profile, credential_reply,
    demo_session_with_token, events_of, fresh_proof, profile_body, session_status,
    session_with_token, spawn_app, spawn_app_with,
};

/// A request for `CONFIGURATION` with `proofs` as its proofs member.
fn batch(proofs: &[String]) -> Value {
    json!({"credential_configuration_id": CONFIGURATION, "proofs": {"jwt": proofs}})
}

/// Proofs of `wallets`' keys, all on one fresh nonce.
async fn proofs_on_one_nonce(app: &TestApp, wallets: &[Wallet]) -> Vec<String> {
    let nonce = wallets[0].nonce(app).await;
    wallets
        .iter()
        .map(|wallet| wallet.proof(app, &nonce))
        .collect()
}

/// Another wallet holding the same key.
fn same_key(wallet: &Wallet) -> Wallet {
    Wallet {
        key: wallet.key.clone(),
    }
}

async fn expect_error(app: &TestApp, session: &str, token: &str, body: &Value, error: &str) {
    let reply = credential_reply(app, token, body).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, error);
    assert_eq!(session_status(app, session).await, "ACTIVE");
}

#[tokio::test]
async fn n_proofs_give_n_credentials_each_bound_to_its_own_key() {
    let app = spawn_app().await;
    let metadata = app.get_json("/.well-known/openid-credential-issuer").await;
    assert_eq!(
        metadata["batch_credential_issuance"],
        json!({"batch_size": 10})
    );
    let (session, token) = demo_session_with_token(&app).await;
    let wallets: Vec<Wallet> = (0..3).map(|_| Wallet::new()).collect();
    let proofs = proofs_on_one_nonce(&app, &wallets).await;
    let reply = credential_reply(&app, &token, &batch(&proofs)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let credentials = reply.body["credentials"].as_array().expect("credentials");
    assert_eq!(credentials.len(), 3);
    let mut salts = BTreeSet::new();
    for (credential, wallet) in credentials.iter().zip(&wallets) {
        let checked =
            check_sd_jwt(&app, credential["credential"].as_str().expect("credential")).await;
        assert_eq!(
            checked.claims["cnf"]["jwk"],
            wallet.key.public_jwk().to_value(),
            "bound to the key of its own proof, in order"
        );
        for disclosure in &checked.disclosures {
            assert!(salts.insert(disclosure[0].to_string()), "a salt twice");
        }
    }
    let issued = events_of(&app, &session, "sdjwt_issue").await;
    assert_eq!(issued.len(), 3, "one event per credential");
    let mut sent: Vec<&str> = issued
        .iter()
        .map(|event| event["data"]["sdjwt"].as_str().expect("sdjwt"))
        .collect();
    let mut returned: Vec<&str> = credentials
        .iter()
        .map(|credential| credential["credential"].as_str().expect("credential"))
        .collect();
    sent.sort_unstable();
    returned.sort_unstable();
    assert_eq!(sent, returned);
    assert_eq!(
        events_of(&app, &session, "issuance_status_changed")
            .await
            .len(),
        1,
        "the session finishes once"
    );
    let (_, listed) = app
        .api_get(&format!("/api/v1/sessions/{session}/credentials"))
        .await;
    assert_eq!(listed["items"].as_array().expect("items").len(), 3);
}

#[tokio::test]
async fn a_batch_with_a_key_twice_another_nonce_or_too_many_proofs_is_refused() {
    let app = spawn_app_with(json!({"protocol": {"batch_size": 3}})).await;
    let metadata = app.get_json("/.well-known/openid-credential-issuer").await;
    assert_eq!(metadata["batch_credential_issuance"]["batch_size"], 3);
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let twice = proofs_on_one_nonce(&app, &[Wallet::new(), same_key(&wallet), wallet]).await;
    expect_error(&app, &session, &token, &batch(&twice), "invalid_proof").await;
    let reply = credential_reply(&app, &token, &batch(&twice)).await;
    assert!(
        reply.text.contains("proofs.jwt[2] proves the same key"),
        "{}",
        reply.text
    );

    let mixed = vec![
        fresh_proof(&app, &Wallet::new()).await,
        fresh_proof(&app, &Wallet::new()).await,
    ];
    expect_error(&app, &session, &token, &batch(&mixed), "invalid_proof").await;

    let wallets: Vec<Wallet> = (0..4).map(|_| Wallet::new()).collect();
    let four = proofs_on_one_nonce(&app, &wallets).await;
    expect_error(
        &app,
        &session,
        &token,
        &batch(&four),
        "invalid_credential_request",
    )
    .await;
    for empty in [
        json!({"jwt": []}),
        json!({"jwt": "a string"}),
        json!({"jwt": [1]}),
    ] {
        let body = json!({"credential_configuration_id": CONFIGURATION, "proofs": empty});
        expect_error(&app, &session, &token, &body, "invalid_proof").await;
    }
    // One bad proof fails the whole request, naming it; nothing is issued.
    let mut one_bad = proofs_on_one_nonce(&app, &wallets[..2]).await;
    one_bad[1].push('x');
    let reply = credential_reply(&app, &token, &batch(&one_bad)).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_proof");
    assert!(reply.text.contains("proofs.jwt[1]"), "{}", reply.text);
    // The same request within the limit succeeds.
    let three = proofs_on_one_nonce(&app, &wallets[..3]).await;
    let reply = credential_reply(&app, &token, &batch(&three)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["credentials"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn without_batch_issuance_one_proof_gives_one_credential() {
    let app = spawn_app_with(json!({"protocol": {"batch_size": 1}})).await;
    let metadata = app.get_json("/.well-known/openid-credential-issuer").await;
    assert!(
        metadata.get("batch_credential_issuance").is_none(),
        "{metadata}"
    );
    let (session, token) = demo_session_with_token(&app).await;
    let two = proofs_on_one_nonce(&app, &[Wallet::new(), Wallet::new()]).await;
    expect_error(
        &app,
        &session,
        &token,
        &batch(&two),
        "invalid_credential_request",
    )
    .await;
}

#[tokio::test]
async fn an_offer_bound_to_a_key_takes_one_proof_of_that_key() {
    let app = spawn_app().await;
    let wallet = Wallet::new();
    let (session, token) = session_with_token(
        &app,
        json!({"profileId": crate::support::DEMO_PROFILE, "runtimeOverrides": {
            "expectedCredentialProofKeyJwk": wallet.key.public_jwk().to_value()}}),
    )
    .await;
    let proofs = proofs_on_one_nonce(&app, &[same_key(&wallet), Wallet::new()]).await;
    expect_error(&app, &session, &token, &batch(&proofs), "invalid_proof").await;
    let one = proofs_on_one_nonce(&app, &[wallet]).await;
    let reply = credential_reply(&app, &token, &batch(&one)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn each_credential_of_a_batch_gets_its_own_status_list_entry() {
    let app = spawn_app().await;
    let profile = create_profile(
        &app,
        profile_body(json!({"issuerKeyId": DEMO_KEY, "credentialStatus": "STATUS_LIST"})),
    )
    .await;
    let (session, token) =
        session_with_token(&app, json!({"profileId": profile["profileId"]})).await;
    let wallets: Vec<Wallet> = (0..10).map(|_| Wallet::new()).collect();
    let proofs = proofs_on_one_nonce(&app, &wallets).await;
    let reply = credential_reply(&app, &token, &batch(&proofs)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let mut indices = BTreeSet::new();
    for credential in reply.body["credentials"].as_array().expect("credentials") {
        let checked =
            check_sd_jwt(&app, credential["credential"].as_str().expect("credential")).await;
        let index = checked.claims["status"]["status_list"]["idx"]
            .as_u64()
            .expect("idx");
        assert!(indices.insert(index), "index {index} twice");
    }
    let (_, listed) = app
        .api_get(&format!("/api/v1/sessions/{session}/credentials"))
        .await;
    let listed: BTreeSet<u64> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["statusList"]["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(listed, indices);
}

#[tokio::test]
async fn the_singular_proof_of_earlier_drafts_gets_one_credential_unless_switched_off() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let proof = fresh_proof(&app, &wallet).await;
    let draft = json!({"credential_configuration_id": CONFIGURATION,
                       "proof": {"proof_type": "jwt", "jwt": proof}});
    let both = json!({"credential_configuration_id": CONFIGURATION,
                      "proof": {"proof_type": "jwt", "jwt": proof},
                      "proofs": {"jwt": [proof]}});
    expect_error(&app, &session, &token, &both, "invalid_credential_request").await;
    for bad in [
        json!({"proof_type": "ldp_vp", "jwt": proof}),
        json!({"jwt": proof}),
        json!({"proof_type": "jwt", "jwt": 1}),
        json!("a string"),
    ] {
        let body = json!({"credential_configuration_id": CONFIGURATION, "proof": bad});
        expect_error(&app, &session, &token, &body, "invalid_proof").await;
    }
    let reply = Reply::of(wallet.credential_request(&app, &token, &draft).await).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let credential = reply.body["credentials"][0]["credential"]
        .as_str()
        .expect("credential");
    let checked = check_sd_jwt(&app, credential).await;
    assert_eq!(
        checked.claims["cnf"]["jwk"],
        wallet.key.public_jwk().to_value()
    );

    let strict = spawn_app_with(json!({"protocol": {"accept_singular_proof": false}})).await;
    let (session, token) = demo_session_with_token(&strict).await;
    let proof = fresh_proof(&strict, &wallet).await;
    let draft = json!({"credential_configuration_id": CONFIGURATION,
                       "proof": {"proof_type": "jwt", "jwt": proof}});
    expect_error(
        &strict,
        &session,
        &token,
        &draft,
        "invalid_credential_request",
    )
    .await;
}

//! Key attestations (OID4VCI 1.0 Annex D): a trusted wallet provider vouches for holder keys and
//! how they are kept, in a JWT proof's `key_attestation` header or as the `attestation` proof
//! type; each attested key gets a credential, and a configuration with
//! `key_attestations_required` takes nothing less.

use reqwest::StatusCode;
use serde_json::{Value, json};
use vellum_formats::jose::{Algorithm, SigningKey};

use crate::support::attester::WalletProvider;
use crate::support::wallet::{Wallet, check_sd_jwt};
use crate::support::{
    CONFIGURATION, TestApp, credential_reply, demo_session_with_token, proof_payload, signed,
    spawn_app_with,
};

/// An issuer that trusts `provider`, with the demo configuration requiring key storage and
/// user authentication of at least moderate attack potential resistance.
async fn app_trusting(provider: &WalletProvider) -> TestApp {
    spawn_app_with(json!({
        "client_attestation": provider.settings(json!({})),
        "credential_configurations": {CONFIGURATION: {"key_attestations_required": {
            "key_storage": ["iso_18045_moderate", "iso_18045_high"],
            "user_authentication": ["iso_18045_moderate", "iso_18045_high"],
        }}},
    }))
    .await
}

/// A key attestation of `keys` by `provider`, the claims of a good one with `changes` applied
/// (a null removes a claim).
fn attestation(
    provider: &WalletProvider,
    app: &TestApp,
    keys: &[&Wallet],
    nonce: &str,
    changes: Value,
) -> String {
    let now = app.clock_seconds();
    let mut claims = json!({
        "iss": "https://wallet-provider.example",
        "iat": now,
        "exp": now + 3600,
        "attested_keys": keys.iter().map(|wallet| wallet.key.public_jwk().to_value()).collect::<Vec<_>>(),
        "key_storage": ["iso_18045_high"],
        "user_authentication": ["iso_18045_moderate"],
        "nonce": nonce,
    });
    for (name, value) in changes.as_object().into_iter().flatten() {
        match value {
            Value::Null => {
                claims.as_object_mut().expect("claims").remove(name);
            }
            value => claims[name] = value.clone(),
        }
    }
    signed(
        json!({"typ": "key-attestation+jwt"}),
        &claims,
        &provider.key,
    )
}

fn attestation_request(attestation: &str) -> Value {
    json!({"credential_configuration_id": CONFIGURATION, "proofs": {"attestation": [attestation]}})
}

/// A JWT proof by `signer` carrying `attestation` in its header, its key named or not.
fn proof_with(
    app: &TestApp,
    signer: &Wallet,
    attestation: &str,
    nonce: &str,
    name_key: bool,
) -> Value {
    let mut header = json!({"typ": "openid4vci-proof+jwt", "key_attestation": attestation});
    if name_key {
        header["jwk"] = signer.key.public_jwk().to_value();
    }
    let proof = signed(header, &proof_payload(app, nonce), &signer.key);
    Wallet::request_body(CONFIGURATION, &proof)
}

/// The keys the credentials of a successful reply are bound to, in order.
async fn bound_keys(app: &TestApp, reply: &crate::support::Reply) -> Vec<Value> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let mut keys = Vec::new();
    for credential in reply.body["credentials"].as_array().expect("credentials") {
        let checked =
            check_sd_jwt(app, credential["credential"].as_str().expect("credential")).await;
        keys.push(checked.claims["cnf"]["jwk"].clone());
    }
    keys
}

#[tokio::test]
async fn an_attestation_alone_gets_a_credential_for_each_attested_key() {
    let provider = WalletProvider::new();
    let app = app_trusting(&provider).await;
    let metadata = app.get_json("/.well-known/openid-credential-issuer").await;
    let types =
        &metadata["credential_configurations_supported"][CONFIGURATION]["proof_types_supported"];
    for name in ["jwt", "attestation"] {
        assert_eq!(
            types[name]["key_attestations_required"]["key_storage"],
            json!(["iso_18045_moderate", "iso_18045_high"]),
            "{name}"
        );
    }
    let (_, token) = demo_session_with_token(&app).await;
    let keys = [Wallet::new(), Wallet::new(), Wallet::new()];
    let nonce = keys[0].nonce(&app).await;
    let attested = attestation(
        &provider,
        &app,
        &keys.iter().collect::<Vec<_>>(),
        &nonce,
        json!({"exp": null}),
    );
    let reply = credential_reply(&app, &token, &attestation_request(&attested)).await;
    let bound = bound_keys(&app, &reply).await;
    let expected: Vec<Value> = keys
        .iter()
        .map(|wallet| wallet.key.public_jwk().to_value())
        .collect();
    assert_eq!(bound, expected);

    // Its nonce is spent.
    let (_, token) = demo_session_with_token(&app).await;
    let again = credential_reply(&app, &token, &attestation_request(&attested)).await;
    again.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_nonce");
}

#[tokio::test]
async fn a_jwt_proof_with_an_attestation_is_signed_by_an_attested_key_and_binds_them_all() {
    let provider = WalletProvider::new();
    let app = app_trusting(&provider).await;
    let keys = [Wallet::new(), Wallet::new()];
    let attested_refs: Vec<&Wallet> = keys.iter().collect();

    // Signed by the second attested key, which the header does not name.
    let (_, token) = demo_session_with_token(&app).await;
    let nonce = keys[0].nonce(&app).await;
    let attested = attestation(&provider, &app, &attested_refs, &nonce, json!({}));
    let reply = credential_reply(
        &app,
        &token,
        &proof_with(&app, &keys[1], &attested, &nonce, false),
    )
    .await;
    let bound = bound_keys(&app, &reply).await;
    assert_eq!(bound.len(), 2);

    // Named in the header: the same.
    let (_, token) = demo_session_with_token(&app).await;
    let nonce = keys[0].nonce(&app).await;
    let attested = attestation(&provider, &app, &attested_refs, &nonce, json!({}));
    let reply = credential_reply(
        &app,
        &token,
        &proof_with(&app, &keys[0], &attested, &nonce, true),
    )
    .await;
    assert_eq!(bound_keys(&app, &reply).await.len(), 2);
}

#[tokio::test]
async fn attestations_that_fail_a_check_or_requests_without_one_are_refused() {
    let provider = WalletProvider::new();
    let app = app_trusting(&provider).await;
    let (_, token) = demo_session_with_token(&app).await;
    let holder = Wallet::new();
    let stranger = Wallet::new();
    let nonce = holder.nonce(&app).await;
    let now = app.clock_seconds();
    let untrusted = WalletProvider::new();

    // Required: a plain proof is refused.
    let plain = Wallet::request_body(CONFIGURATION, &holder.proof(&app, &nonce));
    let reply = credential_reply(&app, &token, &plain).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_proof");
    assert!(
        reply.text.contains("requires a key attestation"),
        "{}",
        reply.text
    );

    let mut refused = vec![
        (
            "untrusted provider",
            attestation_request(&attestation(
                &untrusted,
                &app,
                &[&holder],
                &nonce,
                json!({}),
            )),
        ),
        (
            "weak storage",
            attestation_request(&attestation(
                &provider,
                &app,
                &[&holder],
                &nonce,
                json!({"key_storage": ["iso_18045_basic"]}),
            )),
        ),
        (
            "no user authentication",
            attestation_request(&attestation(
                &provider,
                &app,
                &[&holder],
                &nonce,
                json!({"user_authentication": null}),
            )),
        ),
        (
            "expired",
            attestation_request(&attestation(
                &provider,
                &app,
                &[&holder],
                &nonce,
                json!({"exp": now - 1}),
            )),
        ),
        (
            "from the future",
            attestation_request(&attestation(
                &provider,
                &app,
                &[&holder],
                &nonce,
                json!({"iat": now + 3600}),
            )),
        ),
        (
            "no nonce",
            attestation_request(&attestation(
                &provider,
                &app,
                &[&holder],
                &nonce,
                json!({"nonce": null}),
            )),
        ),
        (
            "no keys",
            attestation_request(&attestation(&provider, &app, &[], &nonce, json!({}))),
        ),
        (
            "a private key",
            attestation_request(&attestation(
                &provider,
                &app,
                &[&holder],
                &nonce,
                json!({"attested_keys": [holder.key.private_jwk().to_value()]}),
            )),
        ),
        (
            "the same key twice",
            attestation_request(&attestation(
                &provider,
                &app,
                &[&holder, &holder],
                &nonce,
                json!({}),
            )),
        ),
        // In a JWT proof: needs exp, the proof's nonce, and a signature by an attested key.
        (
            "no exp in a proof",
            proof_with(
                &app,
                &holder,
                &attestation(&provider, &app, &[&holder], &nonce, json!({"exp": null})),
                &nonce,
                true,
            ),
        ),
        (
            "another nonce",
            proof_with(
                &app,
                &holder,
                &attestation(&provider, &app, &[&holder], "another", json!({})),
                &nonce,
                true,
            ),
        ),
        (
            "signed by another key",
            proof_with(
                &app,
                &stranger,
                &attestation(&provider, &app, &[&holder], &nonce, json!({})),
                &nonce,
                true,
            ),
        ),
        (
            "signed by another, unnamed key",
            proof_with(
                &app,
                &stranger,
                &attestation(&provider, &app, &[&holder], &nonce, json!({})),
                &nonce,
                false,
            ),
        ),
        (
            "two attestations",
            json!({"credential_configuration_id": CONFIGURATION, "proofs": {"attestation": ["a", "b"]}}),
        ),
    ];
    let typless = signed(
        json!({}),
        &json!({"iat": now, "attested_keys": [holder.key.public_jwk().to_value()], "nonce": nonce}),
        &provider.key,
    );
    refused.push(("no typ", attestation_request(&typless)));
    let other_alg = SigningKey::generate(Algorithm::ES384);
    let es384 = signed(
        json!({"typ": "key-attestation+jwt"}),
        &json!({"iat": now, "attested_keys": [holder.key.public_jwk().to_value()], "nonce": nonce}),
        &other_alg,
    );
    refused.push(("an untrusted ES384 key", attestation_request(&es384)));
    for (why, body) in refused {
        let reply = credential_reply(&app, &token, &body).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_proof");
        assert!(!reply.text.is_empty(), "{why}");
    }
    let forged = attestation(
        &provider,
        &app,
        &[&holder],
        "not-a-nonce-of-this-issuer",
        json!({}),
    );
    credential_reply(&app, &token, &attestation_request(&forged))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_nonce");
}

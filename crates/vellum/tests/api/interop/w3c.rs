//! Interoperability of W3C VCs as JWT (`jwt_vc_json`) with software written by others, run as
//! child processes: the oid4vc-ts wallet (interop/wallet.mjs) redeems the offer and verifies the
//! credential with jose, resolving the issuer's did:key or did:jwk itself, and the PyPI jwcrypto
//! library (interop/verify_jwt_vc.py) verifies it a second time, with its own DID resolution.
//! scripts/test installs both, pinned (interop/install).

use std::process::Output;

use serde_json::{Value, json};
use tokio::process::Command;
use vellum_formats::jose::Jwk;

use crate::support::interop::{
    interop_dir, oid4vc_ts_wallet, require_installed, run, stdout_json, wallet_redeems,
};
use crate::support::{TestApp, spawn_app_with};
use crate::support::{create_profile, events_of, offer_id};

const CONFIGURATION: &str = "university_degree";
const TYPES: [&str; 2] = ["VerifiableCredential", "UniversityDegreeCredential"];

/// `interop/.venv/bin/python interop/verify_jwt_vc.py` with the credential on stdin.
async fn python_jwt_vc_verifier(credential: &str) -> Output {
    let dir = interop_dir();
    let python = require_installed(
        &dir.join(".venv/bin/python"),
        "the Python JWT VC verifier (PyPI jwcrypto)",
    );
    let mut command = Command::new(python);
    command.arg(dir.join("verify_jwt_vc.py"));
    run(command, Some(credential), "the Python JWT VC verifier").await
}

async fn w3c_app() -> TestApp {
    spawn_app_with(json!({"credential_configurations": {CONFIGURATION: {
        "format": "jwt_vc_json",
        "scope": "degree",
        "credential_definition": {"type": TYPES},
        "credential_signing_alg_values_supported": ["ES256"],
        "cryptographic_binding_methods_supported": ["did:jwk"],
        "proof_signing_alg_values_supported": ["ES256", "EdDSA"],
        "credential_metadata": {"display": [{"name": "University degree", "locale": "en"}]}
    }}}))
    .await
}

/// A degree profile signed by the demo key, with `issuerDid` the shorthand `did:key` or `did:jwk`.
async fn degree_profile(app: &TestApp, did_method: &str) -> Value {
    let profile = create_profile(
        app,
        json!({
            "name": "Degree",
            "credentialConfigurationId": CONFIGURATION,
            "issuerKeyId": "demo-es256",
            "issuerDid": did_method,
            "credentialData": {
                "@context": ["https://www.w3.org/2018/credentials/v1"],
                "credentialSubject": {"degree": {"type": "BachelorDegree", "name": "BSc Physics"}}
            }
        }),
    )
    .await;
    let did = profile["issuerDid"].as_str().expect("issuerDid");
    assert!(did.starts_with(&format!("{did_method}:")), "{profile}");
    profile
}

/// The claims both verifiers must see.
fn assert_degree_claims(claims: &Value, did: &str, holder_jwk: &Value, verifier: &str) {
    assert_eq!(claims["iss"], did, "{verifier}: {claims}");
    let vc = &claims["vc"];
    assert_eq!(vc["issuer"], did, "{verifier}: {claims}");
    assert_eq!(vc["type"], json!(TYPES), "{verifier}: {claims}");
    assert_eq!(
        vc["credentialSubject"]["degree"],
        json!({"type": "BachelorDegree", "name": "BSc Physics"}),
        "{verifier}: {claims}"
    );
    let sub = claims["sub"].as_str().expect("sub");
    assert_eq!(vc["credentialSubject"]["id"], sub, "{verifier}: {claims}");
    let bound = vellum_formats::did::jwk_from_did(sub).expect("sub is a resolvable DID");
    assert_eq!(
        bound,
        Jwk::from_value(holder_jwk).expect("holder jwk"),
        "{verifier}: the credential is bound to another key than the wallet's"
    );
    assert!(claims["nbf"].is_i64() && claims["exp"].is_i64(), "{claims}");
}

/// Creates a degree offer, lets the third-party wallet redeem it, verifies the credential with
/// both third-party verifiers and checks the session and its `jwt_issue` event.
async fn redeem_with_oid4vc_ts(did_method: &str, offer: Value, offer_parameter: &str) {
    let app = w3c_app().await;
    let profile = degree_profile(&app, did_method).await;
    let did = profile["issuerDid"].as_str().expect("issuerDid");
    let mut offer = offer;
    offer["profileId"] = profile["profileId"].clone();
    let created = app.create_offer(offer).await;
    let wallet = wallet_redeems(&created, offer_parameter).await;
    let holder_jwk = &wallet["holderJwk"];
    let credential = wallet["credential"].as_str().expect("credential");
    assert_degree_claims(&wallet["claims"], did, holder_jwk, "jose");

    let python_claims = stdout_json(
        &python_jwt_vc_verifier(credential).await,
        "the Python JWT VC verifier",
    );
    assert_degree_claims(&python_claims, did, holder_jwk, "PyPI jwcrypto");
    assert_eq!(
        python_claims, wallet["claims"],
        "the two verifiers see different claims"
    );

    let session_id = offer_id(&created);
    let session = app.session(&session_id).await;
    assert_eq!(session["status"], "SUCCESSFUL", "{session}");
    let issued = events_of(&app, &session_id, "jwt_issue").await;
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0]["data"]["jwt"], credential);
}

#[tokio::test]
async fn oid4vc_ts_wallet_redeems_a_did_key_jwt_vc_by_reference_offer_with_tx_code() {
    redeem_with_oid4vc_ts(
        "did:key",
        json!({"valueMode": "BY_REFERENCE", "txCode": {}}),
        "credential_offer_uri",
    )
    .await;
}

#[tokio::test]
async fn oid4vc_ts_wallet_redeems_a_did_jwk_jwt_vc_by_value_offer_without_tx_code() {
    redeem_with_oid4vc_ts(
        "did:jwk",
        json!({"valueMode": "BY_VALUE"}),
        "credential_offer",
    )
    .await;
}

/// The Python verifier really checks the issuer signature: a credential whose signature was
/// altered is refused.
#[tokio::test]
async fn python_jwt_vc_verifier_refuses_a_credential_with_an_altered_signature() {
    let app = w3c_app().await;
    let profile = degree_profile(&app, "did:key").await;
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    let wallet = stdout_json(
        &oid4vc_ts_wallet(created["credentialOffer"].as_str().expect("uri"), None).await,
        "the oid4vc-ts wallet",
    );
    let credential = wallet["credential"].as_str().expect("credential");
    let (signed, signature) = credential.rsplit_once('.').expect("signature");
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let altered = format!("{signed}.{flipped}{}", &signature[1..]);

    let output = python_jwt_vc_verifier(&altered).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a forged credential verified");
    assert!(stderr.contains("InvalidJWSSignature"), "{stderr}");
}

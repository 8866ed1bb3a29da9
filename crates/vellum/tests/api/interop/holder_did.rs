//! Interoperability of holder binding by DID with software written by others, run as child
//! processes: the oid4vc-ts wallet (interop/wallet.mjs with `VELLUM_WALLET_BINDING`) names its
//! key in the proof by a DID URL in `kid` (the library's did signer) instead of `jwk`, and
//! verifies the W3C VC it gets with jose against the issuer's key, checking that `sub` and
//! `vc.credentialSubject.id` are its DID exactly as it wrote it; the PyPI jwcrypto library
//! (interop/verify_jwt_vc.py) verifies the did:jwk-bound credential a second time.
//! scripts/test installs both, pinned (interop/install).

use std::ffi::OsStr;

use serde_json::Value;
use vellum_formats::did;
use vellum_formats::jose::Jwk;

use super::batch::{
    DEGREE, assert_degree_claims, assert_session_issued, batch_entries, degree_offer,
    python_verifier, w3c_app, wallet_with,
};

/// The wallet's DID of `entry`, after checking it names the entry's key.
fn holder_did(entry: &Value, method: &str) -> String {
    let holder_did = entry["holderDid"].as_str().expect("holderDid").to_owned();
    assert!(holder_did.starts_with(&format!("{method}:")), "{entry}");
    assert_eq!(
        did::jwk_from_did(&holder_did).expect("a resolvable DID"),
        Jwk::from_value(&entry["holderJwk"]).expect("holder jwk"),
        "the wallet's DID is not of its key"
    );
    holder_did
}

#[tokio::test]
async fn oid4vc_ts_wallet_binds_a_w3c_vc_to_its_did_jwk_exactly_as_written() {
    let app = w3c_app().await;
    let (created, issuer_did) = degree_offer(&app, "did:key").await;
    let wallet = wallet_with(
        &created,
        1,
        &[("VELLUM_WALLET_BINDING", OsStr::new("did:jwk"))],
    )
    .await;
    let entries = batch_entries(&wallet, 1);
    let entry = &entries[0];
    let holder_did = holder_did(entry, "did:jwk");
    // The wallet writes its JWK's members in another order than the issuer would: a credential
    // bound to the DID as the issuer writes it for the key would not be bound as the proof said.
    let jwk = Jwk::from_value(&entry["holderJwk"]).expect("holder jwk");
    assert_ne!(
        holder_did,
        did::did_jwk(&jwk),
        "the test would prove nothing"
    );

    let claims = &entry["claims"];
    assert_eq!(claims["sub"], holder_did.as_str(), "{claims}");
    assert_eq!(
        claims["vc"]["credentialSubject"]["id"],
        holder_did.as_str(),
        "{claims}"
    );
    assert_degree_claims(claims, &issuer_did, entry, "jose");

    let credential = entry["credential"].as_str().expect("credential");
    let python_claims = python_verifier(
        "verify_jwt_vc.py",
        &[],
        credential,
        "the Python JWT VC verifier (PyPI jwcrypto)",
    )
    .await;
    assert_degree_claims(&python_claims, &issuer_did, entry, "PyPI jwcrypto");
    assert_eq!(
        &python_claims, claims,
        "the two verifiers see different claims"
    );
    assert_session_issued(
        &app,
        &created,
        (DEGREE, "jwt_vc_json"),
        "jwt_issue",
        &[credential],
        |data| data["jwt"].as_str().expect("jwt").to_owned(),
    )
    .await;
}

/// did:key holders in a batch: each credential is bound to the DID of its own proof. (The Python
/// verifier takes only did:jwk subjects, so jose alone checks these.)
#[tokio::test]
async fn oid4vc_ts_wallet_binds_each_w3c_vc_of_a_batch_to_its_own_did_key() {
    let app = w3c_app().await;
    let (created, issuer_did) = degree_offer(&app, "did:jwk").await;
    let wallet = wallet_with(
        &created,
        2,
        &[("VELLUM_WALLET_BINDING", OsStr::new("did:key"))],
    )
    .await;
    let entries = batch_entries(&wallet, 2);
    let mut credentials = Vec::new();
    for entry in &entries {
        let holder_did = holder_did(entry, "did:key");
        // did:key has one form per key: the wallet's encoding and the issuer's agree.
        let jwk = Jwk::from_value(&entry["holderJwk"]).expect("holder jwk");
        assert_eq!(holder_did, did::did_key(&jwk).expect("did:key"));
        let claims = &entry["claims"];
        assert_eq!(claims["sub"], holder_did.as_str(), "{claims}");
        assert_eq!(
            claims["vc"]["credentialSubject"]["id"],
            holder_did.as_str(),
            "{claims}"
        );
        assert_degree_claims(claims, &issuer_did, entry, "jose");
        credentials.push(entry["credential"].as_str().expect("credential"));
    }
    assert_ne!(entries[0]["holderDid"], entries[1]["holderDid"]);
    assert_session_issued(
        &app,
        &created,
        (DEGREE, "jwt_vc_json"),
        "jwt_issue",
        &credentials,
        |data| data["jwt"].as_str().expect("jwt").to_owned(),
    )
    .await;
}

//! Interoperability with software written by others, run as child processes: the oid4vc-ts
//! wallet (interop/wallet.mjs) redeems offers and checks the credential with @sd-jwt/sd-jwt-vc,
//! and the PyPI sd-jwt library (interop/verify_sdjwt.py) verifies it a second time.
//! scripts/test installs both, pinned (interop/install).

use serde_json::json;

use std::ffi::OsStr;

use crate::support::interop::*;
use crate::support::{offer_id, spawn_app, spawn_app_with};

#[tokio::test]
async fn oid4vc_ts_wallet_redeems_a_by_reference_offer_with_tx_code() {
    redeem_with_oid4vc_ts(
        json!({"profileId": "demo-identity", "valueMode": "BY_REFERENCE", "txCode": {}}),
        "credential_offer_uri",
    )
    .await;
}

#[tokio::test]
async fn oid4vc_ts_wallet_redeems_a_by_reference_offer_without_tx_code() {
    redeem_with_oid4vc_ts(
        json!({"profileId": "demo-identity", "valueMode": "BY_REFERENCE"}),
        "credential_offer_uri",
    )
    .await;
}

#[tokio::test]
async fn oid4vc_ts_wallet_redeems_a_by_value_offer_with_tx_code() {
    redeem_with_oid4vc_ts(
        json!({"profileId": "demo-identity", "valueMode": "BY_VALUE", "txCode": {}}),
        "credential_offer",
    )
    .await;
}

#[tokio::test]
async fn oid4vc_ts_wallet_redeems_a_by_value_offer_without_tx_code() {
    redeem_with_oid4vc_ts(
        json!({"profileId": "demo-identity", "valueMode": "BY_VALUE"}),
        "credential_offer",
    )
    .await;
}

/// The harness notices failures: a wrong transaction code makes the wallet exit non-zero with the
/// issuer's OAuth error, and no credential is issued.
#[tokio::test]
async fn oid4vc_ts_wallet_fails_with_the_issuers_error_on_a_wrong_tx_code() {
    let app = spawn_app().await;
    let created = app
        .create_offer(json!({"profileId": "demo-identity", "txCode": {}}))
        .await;
    let right = created["txCodeValue"].as_str().expect("txCodeValue");
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let output = oid4vc_ts_wallet(
        created["credentialOffer"]
            .as_str()
            .expect("credentialOffer"),
        Some(wrong),
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the wallet accepted a wrong tx_code"
    );
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(stderr.contains("invalid_grant"), "{stderr}");

    let session = app
        .session(created["offerId"].as_str().expect("offerId"))
        .await;
    assert_ne!(session["status"], "SUCCESSFUL", "{session}");
}

/// Where the issuer requires DPoP (HAIP), the third-party wallet binds its token to a DPoP key of
/// its own, goes through the server-nonce round the library implements, and presents the bound
/// token with a proof; neither nonce round is reported to the operator as a failure.
#[tokio::test]
async fn oid4vc_ts_wallet_binds_its_token_with_dpop_where_the_issuer_requires_it() {
    let app = spawn_app_with(json!({"dpop": {"required": true}})).await;
    let created = app
        .create_offer(json!({"profileId": "demo-identity", "txCode": {}}))
        .await;
    let output = oid4vc_ts_wallet_with(
        created["credentialOffer"]
            .as_str()
            .expect("credentialOffer"),
        created["txCodeValue"].as_str(),
        &[("VELLUM_WALLET_DPOP", OsStr::new("1"))],
    )
    .await;
    let wallet = stdout_json(&output, "the oid4vc-ts wallet with DPoP");
    assert_eq!(wallet["verified"], true, "{wallet}");
    assert_demo_claims(
        &wallet["claims"],
        &wallet["holderJwk"],
        &app,
        "@sd-jwt/sd-jwt-vc",
    );

    let session_id = offer_id(&created);
    let session = app.session(&session_id).await;
    assert_eq!(session["status"], "SUCCESSFUL", "{session}");
    let types = app.event_types(&session_id).await;
    assert!(
        !types.iter().any(|kind| kind.ends_with("_failed")),
        "{types:?}"
    );
}

/// The Python verifier really checks the issuer signature: a credential whose signature was
/// altered is refused.
#[tokio::test]
async fn python_sd_jwt_verifier_refuses_a_credential_with_an_altered_signature() {
    let app = spawn_app().await;
    let created = app
        .create_offer(json!({"profileId": "demo-identity"}))
        .await;
    let wallet = stdout_json(
        &oid4vc_ts_wallet(created["credentialOffer"].as_str().expect("uri"), None).await,
        "the oid4vc-ts wallet",
    );
    let credential = wallet["credential"].as_str().expect("credential");
    let (jwt, disclosures) = credential.split_once('~').expect("disclosures");
    let (signed, signature) = jwt.rsplit_once('.').expect("signature");
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let altered = format!("{signed}.{flipped}{}~{disclosures}", &signature[1..]);

    let output = python_sd_jwt_verifier(&app, &altered).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a forged credential verified");
    assert!(stderr.contains("InvalidJWSSignature"), "{stderr}");
}

/// The Python verifier checks the X.509 way as well: a credential whose x5c leads to another
/// root than the trust anchor is refused, though its kid resolves.
#[tokio::test]
async fn python_sd_jwt_verifier_refuses_an_x5c_chain_from_another_root() {
    let app = spawn_app().await;
    let chain = crate::support::x5_chain_for(&app, "demo-es256", "SD_JWT_SIGNER").await;
    let profile = crate::support::create_profile(
        &app,
        crate::support::profile_body(json!({"x5Chain": chain})),
    )
    .await;
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    let wallet = wallet_redeems(&created, "credential_offer_uri").await;
    let credential = wallet["credential"].as_str().expect("credential");

    let output = python_sd_jwt_verifier(&app, credential).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "an x5c from a foreign root verified"
    );
    assert!(
        stderr.contains("does not lead to the trust anchor"),
        "{stderr}"
    );
}

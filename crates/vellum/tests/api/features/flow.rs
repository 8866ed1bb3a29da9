//! The whole pre-authorized flow with the Rust test wallet, and what the credential holds.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::spawn_app;
use crate::support::wallet::{Wallet, check_sd_jwt};

#[tokio::test]
async fn demo_profile_issues_an_sd_jwt_vc_bound_to_the_proof_key() {
    let app = spawn_app().await;
    let wallet = Wallet::new();
    let created = app
        .create_offer(
            json!({"profileId": "demo-identity", "authMethod": "PRE_AUTHORIZED", "txCode": {}}),
        )
        .await;
    let credential = wallet.complete(&app, &created).await;

    let checked = check_sd_jwt(&app, &credential).await;
    assert_eq!(checked.header["typ"], "dc+sd-jwt");
    assert_eq!(checked.header["alg"], "ES256");
    assert_eq!(checked.header["kid"], "demo-es256");
    let claims = &checked.claims;
    assert_eq!(claims["iss"], app.url.as_str());
    assert_eq!(claims["vct"], "urn:vellum:demo:identity_credential:1");
    assert_eq!(claims["cnf"]["jwk"], wallet.key.public_jwk().to_value());
    assert_eq!(claims["given_name"], "Erika");
    assert_eq!(claims["address"]["locality"], "Köln");
    assert_eq!(claims["nationalities"], json!(["DE", "FR"]));
    assert!(
        claims["jti"]
            .as_str()
            .is_some_and(|jti| jti.starts_with("urn:uuid:"))
    );
    let iat = claims["iat"].as_i64().expect("iat");
    assert_eq!(claims["nbf"].as_i64(), Some(iat));
    assert_eq!(claims["exp"].as_i64(), Some(iat + 31_536_000));
    // given, family, birthdate, address, street, locality, two nationalities
    assert_eq!(checked.disclosures.len(), 8);

    let session = app.session(created["offerId"].as_str().expect("id")).await;
    assert_eq!(session["status"], "SUCCESSFUL");
    assert_eq!(
        app.event_types(created["offerId"].as_str().expect("id"))
            .await,
        crate::support::SD_JWT_FLOW_EVENTS
    );
}

#[tokio::test]
async fn an_offer_by_value_carries_the_offer_in_the_uri() {
    let app = spawn_app().await;
    let created = app
        .create_offer(json!({"profileId": "demo-identity", "valueMode": "BY_VALUE"}))
        .await;
    assert!(
        created["credentialOffer"]
            .as_str()
            .expect("uri")
            .starts_with("openid-credential-offer://?credential_offer=%7B")
    );
    assert!(created.get("credentialOfferUri").is_none());
    let credential = Wallet::new().complete(&app, &created).await;
    check_sd_jwt(&app, &credential).await;
}

#[tokio::test]
async fn a_second_credential_request_on_a_finished_session_is_refused() {
    let app = spawn_app().await;
    let wallet = Wallet::new();
    let created = app
        .create_offer(json!({"profileId": "demo-identity"}))
        .await;
    let offer = wallet
        .resolve(&app, created["credentialOffer"].as_str().expect("uri"))
        .await;
    let token = wallet.token(&app, &Wallet::code(&offer), None).await;
    for expected in [StatusCode::OK, StatusCode::BAD_REQUEST] {
        let nonce = wallet.nonce(&app).await;
        let body = Wallet::request_body("identity_credential", &wallet.proof(&app, &nonce));
        let response = wallet.credential_request(&app, &token, &body).await;
        assert_eq!(response.status(), expected);
        if expected == StatusCode::BAD_REQUEST {
            let body: serde_json::Value = response.json().await.expect("json");
            assert_eq!(body["error"], "credential_request_denied");
        }
    }
}

#[tokio::test]
async fn a_legacy_vc_sd_jwt_configuration_issues_with_the_old_typ() {
    let app = crate::support::spawn_app_with(json!({"credential_configurations": {"legacy": {
        "format": "vc+sd-jwt",
        "vct": "urn:vellum:legacy:1",
        "credential_signing_alg_values_supported": ["ES256"],
        "cryptographic_binding_methods_supported": ["jwk"],
        "proof_signing_alg_values_supported": ["ES256"]
    }}}))
    .await;
    let (status, profile) = app
        .api_json(
            reqwest::Method::POST,
            "/api/v1/profiles",
            json!({"name": "Legacy", "credentialConfigurationId": "legacy",
                   "issuerKeyId": "demo-es256", "issuerDid": "did:jwk",
                   "credentialData": {"given_name": "Erika"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    let credential = Wallet::new().complete(&app, &created).await;
    let checked = check_sd_jwt(&app, &credential).await;
    assert_eq!(checked.header["typ"], "vc+sd-jwt");
    assert_eq!(checked.claims["vct"], "urn:vellum:legacy:1");
    let metadata = app.get_json("/.well-known/openid-credential-issuer").await;
    assert_eq!(
        metadata["credential_configurations_supported"]["legacy"]["format"],
        "vc+sd-jwt"
    );
}

#[tokio::test]
async fn an_sd_jwt_vc_issued_by_a_did_jwk_names_the_did_url_as_kid() {
    let app = spawn_app().await;
    let (status, profile) = app
        .api_json(
            reqwest::Method::POST,
            "/api/v1/profiles",
            json!({"name": "DID issuer", "credentialConfigurationId": "identity_credential",
                   "issuerKeyId": "demo-es256", "issuerDid": "did:jwk",
                   "credentialData": {"given_name": "Erika"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    let did = profile["issuerDid"].as_str().expect("did").to_owned();
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    let credential = Wallet::new().complete(&app, &created).await;
    // check_sd_jwt resolves a did:jwk kid from the DID itself and verifies with that key.
    let checked = check_sd_jwt(&app, &credential).await;
    assert_eq!(checked.header["kid"], format!("{did}#0"));
    assert_eq!(checked.claims["iss"], did.as_str());
}

//! Wallet-initiated issuance (OID4VCI 1.0 §5.1: a wallet starting from metadata, with a scope or
//! authorization_details and no issuer_state) and offers without issuer_state
//! (`issuerStateMode: OMIT`): the wallet gets a session of its own from the configuration's
//! wallet-initiated profile, logs in, and gets a credential with the holder's claims.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::authorization::{Setup, authorize_url, exchange_as, push_as, setup, setup_with};
use crate::support::provider;
use crate::support::wallet::{
    Authorization, WALLET_REDIRECT, Wallet, authorization_response, check_sd_jwt, code_form,
};
use crate::support::{CONFIGURATION, DEMO_KEY, Reply, create_profile, profile_body};

/// A profile for wallet-initiated issuance of the test configuration.
async fn wallet_initiated_profile(setup: &Setup) -> String {
    let profile = create_profile(
        &setup.app,
        profile_body(json!({
            "name": "Wallet-initiated",
            "issuerKeyId": DEMO_KEY,
            "identityProvider": provider::PROVIDER,
            "idTokenClaimsMapping": {"/given_name": "/given_name", "/family_name": "/family_name"},
            "walletInitiated": true,
        })),
    )
    .await;
    assert_eq!(profile["walletInitiated"], true, "{profile}");
    profile["profileId"].as_str().expect("profileId").to_owned()
}

/// The scope metadata gives the test configuration.
async fn scope(setup: &Setup) -> String {
    let metadata = setup
        .app
        .get_json("/.well-known/openid-credential-issuer")
        .await;
    metadata["credential_configurations_supported"][CONFIGURATION]["scope"]
        .as_str()
        .expect("every configuration has a scope")
        .to_owned()
}

/// A PAR form without issuer_state: the scope or authorization_details name what is wanted.
fn form(authorization: &Authorization, request: (&str, String)) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = authorization
        .form("unused")
        .into_iter()
        .filter(|(name, _)| name != "issuer_state" && name != "authorization_details")
        .collect();
    form.push((request.0.to_owned(), request.1));
    form
}

/// The sessions of a profile.
async fn sessions_of(setup: &Setup, profile: &str) -> Vec<Value> {
    let (status, listing) = setup.app.api_get("/api/v1/sessions").await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    listing["items"]
        .as_array()
        .or(listing.as_array())
        .expect("sessions")
        .iter()
        .filter(|session| session["profileId"] == profile)
        .cloned()
        .collect()
}

/// From a pushed form to a credential: login, code, token, credential; returns its claims.
async fn redeem(setup: &Setup, authorization: &Authorization, form: &[(String, String)]) -> Value {
    let app = &setup.app;
    let pushed = push_as(app, form, None).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text);
    let url = authorize_url(
        app,
        pushed.body["request_uri"].as_str().expect("request_uri"),
    );
    let callback = authorization_response(&provider::log_in(&url, "alice", WALLET_REDIRECT).await);
    let code = callback["code"].as_str().expect("code");
    let token = exchange_as(app, &code_form(code, &authorization.verifier), None).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    let access_token = token.body["access_token"].as_str().expect("access_token");
    let wallet = Wallet::new();
    let nonce = wallet.nonce(app).await;
    let body = Wallet::request_body(CONFIGURATION, &wallet.proof(app, &nonce));
    let reply = Reply::of(wallet.credential_request(app, access_token, &body).await).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let credential = reply.body["credentials"][0]["credential"]
        .as_str()
        .expect("credential");
    Value::Object(check_sd_jwt(app, credential).await.claims)
}

#[tokio::test]
async fn a_wallet_starting_from_metadata_gets_a_session_from_the_wallet_initiated_profile() {
    let setup = setup(json!({})).await;
    let app = &setup.app;
    // None configured yet: a clear OAuth error, and no session.
    let scope = scope(&setup).await;
    let none = push_as(
        app,
        &form(&Authorization::new(), ("scope", scope.clone())),
        None,
    )
    .await;
    none.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    assert!(none.text.contains("wallet-initiated"), "{}", none.text);

    let profile = wallet_initiated_profile(&setup).await;
    for request in [
        ("scope", format!("openid {scope}")),
        (
            "authorization_details",
            json!([{"type": "openid_credential", "credential_configuration_id": CONFIGURATION}])
                .to_string(),
        ),
    ] {
        let authorization = Authorization::new();
        let claims = redeem(&setup, &authorization, &form(&authorization, request)).await;
        assert_eq!(claims["given_name"], "Erika", "{claims:?}");
        assert_eq!(claims["family_name"], "Mustermann");
    }
    let sessions = sessions_of(&setup, &profile).await;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    for session in &sessions {
        assert_eq!(session["authMethod"], "AUTHORIZED", "{session}");
        assert_eq!(session["status"], "SUCCESSFUL", "{session}");
        let id = session["sessionId"].as_str().expect("sessionId");
        let types = app.event_types(id).await;
        assert_eq!(types[0], "wallet_initiated_session_created", "{types:?}");
        for expected in [
            "pushed_authorization_request_succeeded",
            "authorization_request_succeeded",
            "requested_token",
            "sdjwt_issue",
        ] {
            assert!(
                types.iter().any(|kind| kind == expected),
                "{expected}: {types:?}"
            );
        }
    }
}

#[tokio::test]
async fn what_a_wallet_initiated_request_asks_for_is_checked_before_a_session_is_made() {
    let second = json!({
        "format": "dc+sd-jwt",
        "vct": "urn:vellum:test:second:1",
        "credential_signing_alg_values_supported": ["ES256"],
        "cryptographic_binding_methods_supported": ["jwk"],
        "proof_signing_alg_values_supported": ["ES256"],
    });
    let config = json!({
        "client_attestation": {"allow_public_clients": true},
        "credential_configurations": {"second_credential": second},
    });
    let setup = setup_with(config, json!({}), None).await;
    let app = &setup.app;
    let profile = wallet_initiated_profile(&setup).await;
    let scope = scope(&setup).await;
    let detail = |id: &str| json!({"type": "openid_credential", "credential_configuration_id": id});
    for (request, error) in [
        (("scope", "openid profile".to_owned()), "invalid_scope"),
        (
            (
                "authorization_details",
                json!([detail("no-such-configuration")]).to_string(),
            ),
            "invalid_authorization_details",
        ),
        (
            (
                "authorization_details",
                json!([detail(CONFIGURATION), detail("second_credential")]).to_string(),
            ),
            "invalid_request",
        ),
    ] {
        let reply = push_as(app, &form(&Authorization::new(), request.clone()), None).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, error);
    }
    // Nothing without a scope or authorization_details.
    let bare: Vec<_> = form(&Authorization::new(), ("scope", scope))
        .into_iter()
        .filter(|(name, _)| name != "scope")
        .collect();
    let reply = push_as(app, &bare, None).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(sessions_of(&setup, &profile).await.is_empty());

    // One wallet-initiated profile per configuration, and only with a provider.
    let (status, reply) = app
        .api_json(
            Method::POST,
            "/api/v1/profiles",
            profile_body(
                json!({"issuerKeyId": DEMO_KEY, "identityProvider": provider::PROVIDER,
                                "walletInitiated": true}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert_eq!(reply["code"], "wallet_initiated_taken");
    let (status, reply) = app
        .api_json(
            Method::POST,
            "/api/v1/profiles",
            profile_body(json!({"issuerKeyId": DEMO_KEY, "walletInitiated": true})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        reply["detail"]
            .as_str()
            .expect("detail")
            .contains("identityProvider")
    );
}

#[tokio::test]
async fn an_offer_without_issuer_state_leads_to_a_session_of_the_wallets_own() {
    let setup = setup(json!({})).await;
    let app = &setup.app;
    let profile = wallet_initiated_profile(&setup).await;
    let created = app
        .create_offer(json!({"profileId": profile, "authMethod": "AUTHORIZED",
                             "issuerStateMode": "OMIT"}))
        .await;
    assert_eq!(created["issuerStateMode"], "OMIT", "{created}");
    let offer = Wallet::new()
        .resolve(app, created["credentialOffer"].as_str().expect("offer"))
        .await;
    assert_eq!(
        offer["grants"],
        json!({"authorization_code": {}}),
        "no issuer_state: {offer}"
    );
    let authorization = Authorization::new();
    let details =
        json!([{"type": "openid_credential", "credential_configuration_id": CONFIGURATION}]);
    let form = form(
        &authorization,
        ("authorization_details", details.to_string()),
    );
    let claims = redeem(&setup, &authorization, &form).await;
    assert_eq!(claims["given_name"], "Erika", "{claims:?}");
    let offer_id = created["offerId"].as_str().expect("offerId");
    let sessions = sessions_of(&setup, &profile).await;
    let own: Vec<_> = sessions
        .iter()
        .filter(|session| session["sessionId"] != offer_id)
        .collect();
    assert_eq!(own.len(), 1, "{sessions:?}");
    assert_eq!(own[0]["status"], "SUCCESSFUL");
}

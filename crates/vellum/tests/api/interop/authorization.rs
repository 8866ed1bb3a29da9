//! The authorization code flow against a real OpenID provider (interop/provider.mjs,
//! oidc-provider) where the holder logs in (interop/login.mjs): AUTHORIZED offers with
//! issuer_state, PAR, PKCE, the provider's ID token mapped into the credential, the code grant,
//! and each way a wallet, a holder or a provider can get it wrong.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::attester::Instance;
use crate::support::provider::{self, Provider};
use crate::support::wallet::{
    AUTHORIZATION_CODE_GRANT, Authorization, WALLET_CLIENT, WALLET_REDIRECT, Wallet,
    authorization_response, check_sd_jwt, code_form,
};
use crate::support::{
    CONFIGURATION, DEMO_KEY, Reply, TestApp, create_profile, events_of, offer_id, profile_body,
};

/// An issuer whose holders log in at a real provider, and a profile that maps their ID token.
pub(super) struct Setup {
    pub app: TestApp,
    provider: Provider,
    pub profile: String,
}

/// Public clients allowed: the wallet attestation has tests of its own (interop::attestation).
pub(super) async fn setup(authorization: Value) -> Setup {
    setup_tampering(authorization, None).await
}

/// [`setup`] with a provider that spoils its ID tokens as `tamper` says.
async fn setup_tampering(authorization: Value, tamper: Option<&str>) -> Setup {
    let public_clients = json!({"client_attestation": {"allow_public_clients": true}});
    setup_with(public_clients, authorization, tamper).await
}

/// [`setup`] with `config` over the test defaults.
pub(super) async fn setup_with(config: Value, authorization: Value, tamper: Option<&str>) -> Setup {
    let (app, provider) = provider::app_with_provider_over(config, authorization, tamper).await;
    let profile = create_profile(
        &app,
        profile_body(json!({
            "issuerKeyId": DEMO_KEY,
            "identityProvider": provider::PROVIDER,
            "idTokenClaimsMapping": {
                "/given_name": "/given_name",
                "/family_name": "/family_name",
                "/birthdate": "/birthdate",
                "/address/locality": "/address/locality",
            },
        })),
    )
    .await;
    Setup {
        app,
        provider,
        profile: profile["profileId"]
            .as_str()
            .expect("profile id")
            .to_owned(),
    }
}

/// An AUTHORIZED offer: its session id and issuer_state.
pub(super) async fn authorized_offer(setup: &Setup) -> (String, String) {
    let created = setup
        .app
        .create_offer(json!({"profileId": setup.profile, "authMethod": "AUTHORIZED"}))
        .await;
    assert_eq!(created["authMethod"], "AUTHORIZED", "{created}");
    assert_eq!(created["issuerStateMode"], "INCLUDE", "{created}");
    let offer = Wallet::new()
        .resolve(
            &setup.app,
            created["credentialOffer"].as_str().expect("offer"),
        )
        .await;
    let grants = offer["grants"].as_object().expect("grants");
    assert_eq!(grants.len(), 1, "{offer}");
    let issuer_state = offer["grants"][AUTHORIZATION_CODE_GRANT]["issuer_state"]
        .as_str()
        .expect("issuer_state")
        .to_owned();
    (offer_id(&created), issuer_state)
}

async fn push(app: &TestApp, form: &[(String, String)]) -> Reply {
    push_as(app, form, None).await
}

/// A PAR request, authenticated by `instance`'s attestation when given.
pub(super) async fn push_as(
    app: &TestApp,
    form: &[(String, String)],
    instance: Option<&Instance>,
) -> Reply {
    let mut request = app.client.post(app.endpoint("/par")).form(form);
    if let Some(instance) = instance {
        request = instance.attach(app, request);
    }
    Reply::of(request.send().await.expect("PAR")).await
}

pub(super) fn authorize_url(app: &TestApp, request_uri: &str) -> String {
    let mut url = url::Url::parse(&app.endpoint("/authorize")).expect("url");
    url.query_pairs_mut()
        .append_pair("client_id", WALLET_CLIENT)
        .append_pair("request_uri", request_uri);
    url.into()
}

/// PAR, then the holder logs in as `username`: the wallet's callback parameters.
async fn authorize(
    setup: &Setup,
    authorization: &Authorization,
    issuer_state: &str,
    username: &str,
) -> Value {
    let pushed = push(&setup.app, &authorization.form(issuer_state)).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text);
    pushed.assert_no_store();
    let request_uri = pushed.body["request_uri"].as_str().expect("request_uri");
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    let url = authorize_url(&setup.app, request_uri);
    authorization_response(&provider::log_in(&url, username, WALLET_REDIRECT).await)
}

async fn exchange(app: &TestApp, form: &[(&str, &str)]) -> Reply {
    exchange_as(app, form, None).await
}

/// A token request, authenticated by `instance`'s attestation when given.
pub(super) async fn exchange_as(
    app: &TestApp,
    form: &[(&str, &str)],
    instance: Option<&Instance>,
) -> Reply {
    let mut request = app.client.post(app.endpoint("/token")).form(form);
    if let Some(instance) = instance {
        request = instance.attach(app, request);
    }
    Reply::of(request.send().await.expect("token")).await
}

#[tokio::test]
async fn a_holder_logs_in_at_the_provider_and_the_wallet_gets_a_credential_with_their_claims() {
    let setup = setup(json!({})).await;
    let app = &setup.app;
    let metadata = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(metadata["require_pushed_authorization_requests"], true);
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        true
    );
    assert_eq!(
        metadata["pushed_authorization_request_endpoint"],
        app.endpoint("/par")
    );

    let (session, issuer_state) = authorized_offer(&setup).await;
    let authorization = Authorization::new();
    let callback = authorize(&setup, &authorization, &issuer_state, "alice").await;
    assert_eq!(
        callback["state"],
        authorization.state.as_str(),
        "{callback}"
    );
    assert_eq!(callback["iss"], app.url.as_str(), "RFC 9207: {callback}");
    let code = callback["code"].as_str().expect("code");

    let token = exchange(app, &code_form(code, &authorization.verifier)).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    assert_eq!(token.body["token_type"], "Bearer");
    assert_eq!(
        token.body["authorization_details"],
        json!([{"type": "openid_credential", "credential_configuration_id": CONFIGURATION,
                "credential_identifiers": [CONFIGURATION]}])
    );
    let access_token = token.body["access_token"].as_str().expect("access_token");

    let wallet = Wallet::new();
    let nonce = wallet.nonce(app).await;
    let body = json!({"credential_identifier": CONFIGURATION,
                      "proofs": {"jwt": [wallet.proof(app, &nonce)]}});
    let reply = Reply::of(wallet.credential_request(app, access_token, &body).await).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let credential = reply.body["credentials"][0]["credential"]
        .as_str()
        .expect("credential");
    let checked = check_sd_jwt(app, credential).await;
    assert_eq!(
        checked.claims["given_name"], "Erika",
        "{:?}",
        checked.claims
    );
    assert_eq!(checked.claims["family_name"], "Mustermann");
    assert_eq!(checked.claims["birthdate"], "1964-08-12");
    assert_eq!(checked.claims["address"]["locality"], "Köln");

    let types = app.event_types(&session).await;
    for expected in [
        "credential_offer_created",
        "resolved_credential_offer",
        "pushed_authorization_request_succeeded",
        "authorization_request_succeeded",
        "requested_token",
        "sdjwt_issue",
        "issuance_status_changed",
    ] {
        assert!(
            types.iter().any(|kind| kind == expected),
            "{expected} in {types:?}"
        );
    }
    assert!(
        !types.iter().any(|kind| kind.ends_with("_failed")),
        "{types:?}"
    );
    let events = crate::support::events(app, &session).await.to_vec();
    let text = serde_json::to_string(&events).expect("events");
    for secret in [code, &authorization.verifier, &issuer_state, access_token] {
        assert!(!text.contains(secret), "an event holds a secret: {text}");
    }
    // The offer has done its work: its issuer_state cannot start another authorization.
    let again = push(app, &Authorization::new().form(&issuer_state)).await;
    again.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn a_holder_who_refuses_at_the_provider_sends_the_wallet_access_denied_and_the_operator_an_event()
 {
    let setup = setup(json!({})).await;
    let (session, issuer_state) = authorized_offer(&setup).await;
    let authorization = Authorization::new();
    let callback = authorize(&setup, &authorization, &issuer_state, "denied").await;
    assert_eq!(callback["error"], "access_denied", "{callback}");
    assert_eq!(callback["state"], authorization.state.as_str());
    assert_eq!(callback["iss"], setup.app.url.as_str());
    assert!(callback.get("code").is_none());
    let failed = events_of(&setup.app, &session, "authorization_request_failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["error"], "access_denied");
    assert!(
        failed[0]["data"]["providerError"]
            .as_str()
            .expect("the provider's error")
            .contains("access_denied"),
        "{}",
        failed[0]
    );
    // The offer stays usable: the holder may try again.
    let again = Authorization::new();
    let callback = authorize(&setup, &again, &issuer_state, "bob").await;
    assert!(callback["code"].is_string(), "{callback}");
}

#[tokio::test]
async fn the_code_is_bound_to_its_client_redirect_uri_and_pkce_verifier_and_used_once() {
    let setup = setup(json!({})).await;
    let app = &setup.app;
    let (session, issuer_state) = authorized_offer(&setup).await;
    let authorization = Authorization::new();
    let callback = authorize(&setup, &authorization, &issuer_state, "alice").await;
    let code = callback["code"].as_str().expect("code");

    let other_verifier = Authorization::new().verifier;
    let mut wrong_redirect = code_form(code, &authorization.verifier);
    wrong_redirect[2].1 = "https://wallet.example/other";
    let mut wrong_client = code_form(code, &authorization.verifier);
    wrong_client[4].1 = "another-wallet";
    let mut no_verifier = code_form(code, &authorization.verifier);
    no_verifier.remove(3);
    for (what, form, error) in [
        (
            "PKCE mismatch",
            code_form(code, &other_verifier),
            "invalid_grant",
        ),
        ("redirect_uri mismatch", wrong_redirect, "invalid_grant"),
        ("another client", wrong_client, "invalid_grant"),
        ("no verifier", no_verifier, "invalid_request"),
    ] {
        let reply = exchange(app, &form).await;
        assert_eq!(
            (reply.status, reply.body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(error)),
            "{what}: {}",
            reply.text
        );
    }
    let token = exchange(app, &code_form(code, &authorization.verifier)).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    let access_token = token.body["access_token"].as_str().expect("token");

    // Used again: refused, and the token it gave is revoked.
    let reply = exchange(app, &code_form(code, &authorization.verifier)).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let wallet = Wallet::new();
    let body = Wallet::request_body(CONFIGURATION, &wallet.proof(app, &wallet.nonce(app).await));
    let reply = Reply::of(wallet.credential_request(app, access_token, &body).await).await;
    reply.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    let failed = events_of(app, &session, "token_request_failed").await;
    assert_eq!(failed.len(), 5, "every refusal is recorded: {failed:?}");
}

#[tokio::test]
async fn pushed_requests_are_checked_single_use_and_short_lived() {
    let setup = setup(json!({"request_uri_ttl_seconds": 30})).await;
    let app = &setup.app;
    let (_, issuer_state) = authorized_offer(&setup).await;
    let authorization = Authorization::new();
    let base = authorization.form(&issuer_state);
    let with = |name: &str, value: Option<&str>| {
        let mut form: Vec<(String, String)> = base
            .iter()
            .filter(|(key, _)| key != name)
            .cloned()
            .collect();
        if let Some(value) = value {
            form.push((name.to_owned(), value.to_owned()));
        }
        form
    };
    for (what, form) in [
        ("plain PKCE", with("code_challenge_method", Some("plain"))),
        ("no PKCE method", with("code_challenge_method", None)),
        ("no challenge", with("code_challenge", None)),
        (
            "javascript redirect",
            with("redirect_uri", Some("javascript:alert(1)")),
        ),
        (
            "http redirect",
            with("redirect_uri", Some("http://wallet.example/cb")),
        ),
        (
            "fragment",
            with("redirect_uri", Some("https://wallet.example/cb#x")),
        ),
        ("token response", with("response_type", Some("token"))),
        (
            "unknown issuer_state",
            with("issuer_state", Some("not-issued-here")),
        ),
        (
            "another configuration",
            with(
                "authorization_details",
                Some(
                    &json!([{"type": "openid_credential", "credential_configuration_id": "other"}])
                        .to_string(),
                ),
            ),
        ),
    ] {
        let reply = push(app, &form).await;
        assert_eq!(
            (reply.status, reply.body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{what}: {}",
            reply.text
        );
    }

    // A request_uri works once, for its client, and not after it expired.
    let pushed = push(app, &base).await;
    let request_uri = pushed.body["request_uri"].as_str().expect("request_uri");
    let get = |url: String| async move {
        Reply::of(app.client.get(url).send().await.expect("authorize")).await
    };
    let mut other_client = url::Url::parse(&app.endpoint("/authorize")).expect("url");
    other_client
        .query_pairs_mut()
        .append_pair("client_id", "another-wallet")
        .append_pair("request_uri", request_uri);
    get(other_client.into())
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    let first = get(authorize_url(app, request_uri)).await;
    assert_eq!(first.status, StatusCode::FOUND, "{}", first.text);
    assert!(
        first
            .header("location")
            .is_some_and(|location| location.starts_with(&setup.provider.issuer)),
        "to the provider: {:?}",
        first.header("location")
    );
    get(authorize_url(app, request_uri))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    let late = push(app, &base).await;
    app.clock.advance_seconds(31);
    get(authorize_url(
        app,
        late.body["request_uri"].as_str().expect("request_uri"),
    ))
    .await
    .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    // Without PAR, when it is required: refused, and nothing is redirected anywhere.
    let mut direct = url::Url::parse(&app.endpoint("/authorize")).expect("url");
    direct.query_pairs_mut().extend_pairs(base.iter());
    let reply = get(direct.into()).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(reply.header("location"), None);
}

#[tokio::test]
async fn authorized_offers_follow_issuer2s_rules() {
    let setup = setup(json!({})).await;
    let app = &setup.app;
    for (body, code) in [
        (
            json!({"profileId": setup.profile, "authMethod": "AUTHORIZED", "txCode": {}}),
            "invalid_tx_code",
        ),
        (
            json!({"profileId": setup.profile, "issuerStateMode": "INCLUDE"}),
            "invalid_offer",
        ),
        (
            json!({"profileId": setup.profile, "authMethod": "AUTHORIZED", "issuerStateMode": "OMIT",
                   "runtimeOverrides": {"credentialData": {"x": 1}}}),
            "invalid_offer",
        ),
        (
            // OMIT is for the configuration's wallet-initiated profile (interop::wallet_initiated).
            json!({"profileId": setup.profile, "authMethod": "AUTHORIZED", "issuerStateMode": "OMIT"}),
            "invalid_offer",
        ),
        (
            json!({"profileId": "demo-identity", "authMethod": "AUTHORIZED"}),
            "invalid_offer",
        ),
    ] {
        let (status, reply) = app
            .api_json(reqwest::Method::POST, "/api/v1/offers", body.clone())
            .await;
        assert_eq!(
            (status, reply["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}: {reply}"
        );
    }
    // A pre-authorized code request cannot use an issuer_state.
    let (_, issuer_state) = authorized_offer(&setup).await;
    let reply = exchange(
        app,
        &[
            ("grant_type", crate::support::wallet::PRE_AUTHORIZED_GRANT),
            ("pre-authorized_code", &issuer_state),
        ],
    )
    .await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // A profile's provider must be configured, and its mapping may not write what the issuer writes.
    for (overrides, needle) in [
        (json!({"identityProvider": "nowhere"}), "not configured"),
        (
            json!({"identityProvider": provider::PROVIDER, "idTokenClaimsMapping": {"/sub": "/vct"}}),
            "reserved",
        ),
        (
            json!({"identityProvider": provider::PROVIDER, "idTokenClaimsMapping": {"/sub": "/x/_sd"}}),
            "reserved",
        ),
        (
            json!({"idTokenClaimsMapping": {"/sub": "/subject"}}),
            "identityProvider",
        ),
        (
            json!({"identityProvider": provider::PROVIDER, "idTokenClaimsMapping": {"sub": "/subject"}}),
            "JSON Pointer",
        ),
    ] {
        let mut body = profile_body(json!({"issuerKeyId": DEMO_KEY}));
        if let (Value::Object(body), Value::Object(overrides)) = (&mut body, overrides) {
            body.extend(overrides);
        }
        let (status, reply) = app
            .api_json(reqwest::Method::POST, "/api/v1/profiles", body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert!(
            reply["detail"].as_str().expect("detail").contains(needle),
            "{needle}: {reply}"
        );
    }
}

#[tokio::test]
async fn an_id_token_that_fails_a_check_ends_the_login_and_no_code_is_issued() {
    for (tamper, needle) in [
        ("signature", "signature does not verify"),
        ("nonce", "nonce"),
        ("aud", "(aud)"),
        ("expired", "expired"),
    ] {
        let setup = setup_tampering(json!({}), Some(tamper)).await;
        let (session, issuer_state) = authorized_offer(&setup).await;
        let authorization = Authorization::new();
        let callback = authorize(&setup, &authorization, &issuer_state, "alice").await;
        assert_eq!(
            callback["error"], "temporarily_unavailable",
            "{tamper}: {callback}"
        );
        assert!(callback.get("code").is_none(), "{tamper}: {callback}");
        let failed = events_of(&setup.app, &session, "authorization_request_failed").await;
        assert_eq!(failed.len(), 1, "{tamper}");
        let why = failed[0]["data"]["providerError"].as_str().expect("why");
        assert!(why.contains(needle), "{tamper}: {why}");
        let types = setup.app.event_types(&session).await;
        assert!(
            !types
                .iter()
                .any(|kind| kind == "authorization_request_succeeded"),
            "{types:?}"
        );
    }
}

#[tokio::test]
async fn a_provider_that_rotates_its_key_is_followed() {
    let setup = setup(json!({})).await;
    let (_, issuer_state) = authorized_offer(&setup).await;
    let callback = authorize(&setup, &Authorization::new(), &issuer_state, "alice").await;
    assert!(callback["code"].is_string(), "{callback}");
    // The provider restarts with a new signing key; the issuer has the old one cached.
    let Setup {
        app,
        provider,
        profile,
    } = setup;
    let port = provider.port;
    provider.stop().await;
    let provider = Provider::start(port, &app.url).await;
    let setup = Setup {
        app,
        provider,
        profile,
    };
    let (_, issuer_state) = authorized_offer(&setup).await;
    let callback = authorize(&setup, &Authorization::new(), &issuer_state, "bob").await;
    assert!(
        callback["code"].is_string(),
        "after the rotation: {callback}"
    );
}

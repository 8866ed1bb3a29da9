//! Wallet attestation as client authentication in the authorization code flow (HAIP 1.0 §4.3):
//! required by default, checked at PAR and token, each PoP used once, the code exchanged only by
//! the attested wallet instance that asked for it, and every way an attestation can be wrong.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::authorization::{
    Setup, authorize_url, authorized_offer, exchange_as, push_as, setup_with,
};
use crate::support::attester::{self, Instance, WalletProvider};
use crate::support::provider;
use crate::support::wallet::{
    Authorization, WALLET_CLIENT, WALLET_REDIRECT, authorization_response, code_form,
};
use crate::support::{Reply, events_of};

/// An issuer that trusts `wallet_provider`, with `settings` merged into `[client_attestation]`.
async fn setup(wallet_provider: &WalletProvider, settings: Value) -> Setup {
    let config = json!({"client_attestation": wallet_provider.settings(settings)});
    setup_with(config, json!({}), None).await
}

/// PAR with the attestation and PoP given.
async fn push_with(setup: &Setup, issuer_state: &str, attestation: &str, pop: &str) -> Reply {
    let app = &setup.app;
    let request = app
        .client
        .post(app.endpoint("/par"))
        .form(&Authorization::new().form(issuer_state));
    Reply::of(
        attester::headers(request, attestation, pop)
            .send()
            .await
            .expect("PAR"),
    )
    .await
}

#[tokio::test]
async fn an_attested_wallet_gets_its_code_and_only_that_instance_exchanges_it() {
    let wallet_provider = WalletProvider::new();
    let setup = setup(&wallet_provider, json!({})).await;
    let app = &setup.app;
    let metadata = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        json!(["attest_jwt_client_auth"]),
        "HAIP: no public clients by default"
    );
    assert_eq!(metadata["challenge_endpoint"], app.endpoint("/challenge"));
    assert!(metadata["client_attestation_pop_signing_alg_values_supported"].is_array());

    let (session, issuer_state) = authorized_offer(&setup).await;
    let authorization = Authorization::new();
    // A public client is refused, and told what to send.
    let public = push_as(app, &authorization.form(&issuer_state), None).await;
    public.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_client_attestation");

    let instance = wallet_provider.instance(app, WALLET_CLIENT);
    let pushed = push_as(app, &authorization.form(&issuer_state), Some(&instance)).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text);
    let succeeded = events_of(app, &session, "pushed_authorization_request_succeeded").await;
    assert_eq!(
        succeeded[0]["data"]["clientAttested"], true,
        "{}",
        succeeded[0]
    );
    let url = authorize_url(
        app,
        pushed.body["request_uri"].as_str().expect("request_uri"),
    );
    let callback = authorization_response(&provider::log_in(&url, "alice", WALLET_REDIRECT).await);
    let code = callback["code"].as_str().expect("code");
    let form = code_form(code, &authorization.verifier);

    // Without attestation, or by another instance of the same wallet: refused, the code kept.
    let public = exchange_as(app, &form, None).await;
    public.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_client_attestation");
    let other = wallet_provider.instance(app, WALLET_CLIENT);
    let stolen = exchange_as(app, &form, Some(&other)).await;
    stolen.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_client_attestation");
    assert!(
        stolen.text.contains("attested wallet instance"),
        "{}",
        stolen.text
    );

    // The attestation names the client: client_id may be left out.
    let without_client_id: Vec<_> = form
        .iter()
        .copied()
        .filter(|(name, _)| *name != "client_id")
        .collect();
    let token = exchange_as(app, &without_client_id, Some(&instance)).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    let requested = events_of(app, &session, "requested_token").await;
    let text = serde_json::to_string(&requested).expect("events");
    assert!(!text.contains(&instance.attestation), "{text}");
}

#[tokio::test]
async fn attestations_and_pops_are_checked_and_each_pop_is_used_once() {
    let wallet_provider = WalletProvider::new();
    let setup = setup(&wallet_provider, json!({})).await;
    let app = &setup.app;
    let (session, issuer_state) = authorized_offer(&setup).await;
    let instance = wallet_provider.instance(app, WALLET_CLIENT);
    let untrusted = WalletProvider::new();
    let now = crate::support::now_millis(app) / 1000;
    let good = instance.attestation.as_str();
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "untrusted wallet provider",
            untrusted.attest_with(app, WALLET_CLIENT, &instance.key, json!({})),
            instance.pop(app),
            "not signed by a wallet provider this issuer trusts",
        ),
        (
            "expired attestation",
            wallet_provider.attest_with(app, WALLET_CLIENT, &instance.key, json!({"exp": now - 5})),
            instance.pop(app),
            "has expired",
        ),
        (
            "attestation without cnf",
            wallet_provider.attest_with(app, WALLET_CLIENT, &instance.key, json!({"cnf": null})),
            instance.pop(app),
            "cnf.jwk",
        ),
        (
            "attestation for another client",
            wallet_provider.attest_with(app, "other-wallet", &instance.key, json!({})),
            Instance {
                key: instance.key.clone(),
                client_id: "other-wallet".into(),
                attestation: String::new(),
            }
            .pop(app),
            "client_id is not the client the wallet attestation names",
        ),
        (
            "PoP for another audience",
            good.to_owned(),
            instance.pop_with(app, json!({"aud": "https://other-issuer.example"})),
            "aud must be",
        ),
        (
            "PoP by another key than the attested one",
            good.to_owned(),
            wallet_provider.instance(app, WALLET_CLIENT).pop(app),
            "not signed by the key the attestation names",
        ),
        (
            "PoP too old",
            good.to_owned(),
            instance.pop_with(app, json!({"iat": now - 3600, "exp": null})),
            "too old",
        ),
        (
            "PoP without jti",
            good.to_owned(),
            instance.pop_with(app, json!({"jti": null})),
            "jti",
        ),
        (
            "PoP naming another client",
            good.to_owned(),
            instance.pop_with(app, json!({"iss": "someone-else"})),
            "iss",
        ),
    ];
    for (case, attestation, pop, why) in cases {
        let reply = push_with(&setup, &issuer_state, &attestation, &pop).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_client_attestation");
        assert!(reply.text.contains(why), "{case}: {}", reply.text);
    }
    // One header without the other.
    let app_request = app
        .client
        .post(app.endpoint("/par"))
        .form(&Authorization::new().form(&issuer_state))
        .header("OAuth-Client-Attestation", good);
    let half = Reply::of(app_request.send().await.expect("PAR")).await;
    half.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_client_attestation");

    // A PoP is good once.
    let pop = instance.pop(app);
    let first = push_with(&setup, &issuer_state, good, &pop).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let replay = push_with(&setup, &issuer_state, good, &pop).await;
    replay.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_client_attestation");
    assert!(replay.text.contains("already been used"), "{}", replay.text);

    // Each refusal is an event for the operator, without the attestation or PoP in it.
    let failed = events_of(app, &session, "pushed_authorization_request_failed").await;
    assert_eq!(failed.len(), 11, "{failed:?}");
    let text = serde_json::to_string(&failed).expect("events");
    assert!(!text.contains(&pop) && !text.contains(good), "{text}");
}

#[tokio::test]
async fn a_required_challenge_comes_from_the_challenge_endpoint() {
    let wallet_provider = WalletProvider::new();
    let setup = setup(&wallet_provider, json!({"require_challenge": true})).await;
    let app = &setup.app;
    let (session, issuer_state) = authorized_offer(&setup).await;
    let instance = wallet_provider.instance(app, WALLET_CLIENT);

    let without = push_with(
        &setup,
        &issuer_state,
        &instance.attestation,
        &instance.pop(app),
    )
    .await;
    without.assert_oauth_error(StatusCode::BAD_REQUEST, "use_attestation_challenge");
    // The refusal carries a challenge to use, as the challenge endpoint's would be.
    let offered = without
        .header("oauth-client-attestation-challenge")
        .expect("a challenge with use_attestation_challenge")
        .to_owned();
    let pop = instance.pop_with(app, json!({"challenge": offered}));
    let pushed = push_with(&setup, &issuer_state, &instance.attestation, &pop).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text);
    let made_up = instance.pop_with(app, json!({"challenge": "bm90LWEtY2hhbGxlbmdl"}));
    let made_up = push_with(&setup, &issuer_state, &instance.attestation, &made_up).await;
    made_up.assert_oauth_error(StatusCode::BAD_REQUEST, "use_attestation_challenge");

    let challenge = Reply::of(
        app.client
            .post(app.endpoint("/challenge"))
            .send()
            .await
            .expect("challenge"),
    )
    .await;
    assert_eq!(challenge.status, StatusCode::OK, "{}", challenge.text);
    challenge.assert_no_store();
    let value = challenge.body["attestation_challenge"]
        .as_str()
        .expect("attestation_challenge");
    let pop = instance.pop_with(app, json!({"challenge": value}));
    let pushed = push_with(&setup, &issuer_state, &instance.attestation, &pop).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text);
    // Being told to fetch a challenge is a step of the exchange, not a failure.
    let failed = events_of(app, &session, "pushed_authorization_request_failed").await;
    assert!(failed.is_empty(), "{failed:?}");
}

#[tokio::test]
async fn public_clients_are_accepted_only_where_configured() {
    let wallet_provider = WalletProvider::new();
    let setup = setup(&wallet_provider, json!({"allow_public_clients": true})).await;
    let app = &setup.app;
    let metadata = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        json!(["attest_jwt_client_auth", "none"])
    );
    let (_, issuer_state) = authorized_offer(&setup).await;
    let public = push_as(app, &Authorization::new().form(&issuer_state), None).await;
    assert_eq!(public.status, StatusCode::CREATED, "{}", public.text);
    // An attestation sent is still checked.
    let untrusted = WalletProvider::new().instance(app, WALLET_CLIENT);
    let refused = push_as(
        app,
        &Authorization::new().form(&issuer_state),
        Some(&untrusted),
    )
    .await;
    refused.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_client_attestation");
}

/// A wallet provider may be trusted by its CA instead of by its key: the attestation's x5c
/// chains to a configured certificate, valid now.
#[tokio::test]
async fn a_wallet_provider_certified_by_a_trusted_ca_is_trusted() {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (certified, anchor) = WalletProvider::certified(now, 86_400);
    let (stranger, _) = WalletProvider::certified(now, 86_400);
    let dir = tempfile::tempdir().expect("temp dir");
    let anchor_file = dir.path().join("wallet-ca.pem");
    std::fs::write(&anchor_file, anchor).expect("write the CA");
    let config = json!({"client_attestation": {"trusted_certificates": [anchor_file]}});
    let setup = setup_with(config, json!({}), None).await;
    let app = &setup.app;
    let (_, issuer_state) = authorized_offer(&setup).await;

    let instance = certified.instance(app, WALLET_CLIENT);
    let pushed = push_as(
        app,
        &Authorization::new().form(&issuer_state),
        Some(&instance),
    )
    .await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text);

    // Another CA's provider; the trusted CA's certificate with another key's signature.
    let foreign = stranger.instance(app, WALLET_CLIENT);
    let impostor = WalletProvider {
        key: stranger.key,
        x5c: certified.x5c.clone(),
    }
    .instance(app, WALLET_CLIENT);
    for (case, instance, why) in [
        ("another CA", foreign, "chain to no certificate"),
        (
            "a borrowed certificate",
            impostor,
            "not signed by a wallet provider",
        ),
    ] {
        let reply = push_as(
            app,
            &Authorization::new().form(&issuer_state),
            Some(&instance),
        )
        .await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_client_attestation");
        assert!(reply.text.contains(why), "{case}: {}", reply.text);
    }
}

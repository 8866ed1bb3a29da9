//! The authorization code flow driven by a wallet written by others: the oid4vc-ts wallet
//! (interop/wallet.mjs), authenticating with a wallet attestation as HAIP 1.0 asks, takes an
//! issuer-initiated offer through PAR with issuer_state, or starts wallet-initiated from the
//! issuer's metadata, with PKCE S256 and DPoP with server nonces; its holder logs in at a real
//! OpenID provider (interop/provider.mjs) through interop/login.mjs, and the SD-JWT VC or mdoc it
//! gets carries claims from the provider's ID token, checked by the wallet's independent
//! verifiers. The issuers here require wallet attestation (the default).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::Output;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::mdoc::{MDL, MDL_DOCTYPE, NAMESPACE, example, iaca_file, mdl_profile};
use crate::support::attester::WalletProvider;
use crate::support::interop::{
    oid4vc_ts_wallet_from_metadata, oid4vc_ts_wallet_with, python_sd_jwt_verifier, stdout_json,
};
use crate::support::provider::{self, Provider};
use crate::support::{
    CONFIGURATION, TestApp, create_profile, events, offer_id, profile_body, x5_chain_for,
};

/// The client_id interop/wallet.mjs gives itself.
const WALLET_CLIENT: &str = "vellum-interop-wallet";

/// The provider's test user whose claims are not the profiles' defaults (see provider.mjs).
const HOLDER: &str = "bob";

/// The steps of the code flow the operator sees, the issue event apart.
const CODE_FLOW_EVENTS: [&str; 3] = [
    "pushed_authorization_request_succeeded",
    "authorization_request_succeeded",
    "requested_token",
];

/// An issuer whose holders log in at a provider of its own and that trusts the attestations of
/// `wallet_provider`, requiring one of every wallet; `config` is layered over the test defaults.
async fn app_trusting(wallet_provider: &WalletProvider, config: Value) -> (TestApp, Provider) {
    app_trusting_with(wallet_provider, config, json!({})).await
}

/// [`app_trusting`] with `authorization` merged into its `[authorization]` settings.
async fn app_trusting_with(
    wallet_provider: &WalletProvider,
    mut config: Value,
    authorization: Value,
) -> (TestApp, Provider) {
    config["client_attestation"] = wallet_provider.settings(json!({}));
    provider::app_with_provider_over(config, authorization, None).await
}

/// `body` with the fields of `extra` set over its own.
fn merged(mut body: Value, extra: Value) -> Value {
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    body
}

/// The SD-JWT VC profile whose claims come from the holder's ID token; `extra` is merged in.
async fn id_token_profile(app: &TestApp, extra: Value) -> Value {
    let body = json!({
        "identityProvider": provider::PROVIDER,
        "idTokenClaimsMapping": {
            "/given_name": "/given_name",
            "/family_name": "/family_name",
            "/email": "/email",
            "/birthdate": "/birthdate",
        },
    });
    create_profile(app, profile_body(merged(body, extra))).await
}

/// The mDL profile of an app with examples/mdl.toml whose names and birth date come from the
/// holder's ID token, mapped into the mDL namespace; `extra` is merged in. Returns it and the
/// file of the IACA its document signer chains to, the wallet's trust anchor.
async fn id_token_mdl_profile(app: &TestApp, extra: Value) -> (Value, PathBuf) {
    let chain = x5_chain_for(app, "demo-es256", "MDOC_DOCUMENT_SIGNER").await;
    let iaca = iaca_file(app, &chain);
    let mut body = mdl_profile(&chain);
    body["identityProvider"] = json!(provider::PROVIDER);
    body["idTokenClaimsMapping"] = json!({
        "/given_name": format!("/{NAMESPACE}/given_name"),
        "/family_name": format!("/{NAMESPACE}/family_name"),
        "/birthdate": format!("/{NAMESPACE}/birth_date"),
    });
    (create_profile(app, merged(body, extra)).await, iaca)
}

/// What the wallet is given besides `env`: the private key of `wallet_provider`, so that it
/// attests a wallet instance key of its own as a real wallet's provider would, and the holder's
/// login as `username`.
fn wallet_env(
    wallet_provider: &WalletProvider,
    username: &str,
    env: &[(&'static str, &OsStr)],
) -> Vec<(&'static str, OsString)> {
    let provider_jwk =
        serde_json::to_string(&wallet_provider.key.private_jwk()).expect("the provider's JWK");
    let mut all: Vec<(&'static str, OsString)> = vec![
        ("VELLUM_WALLET_PROVIDER_JWK", provider_jwk.into()),
        ("VELLUM_WALLET_USER", username.into()),
        (
            "VELLUM_WALLET_PASSWORD",
            format!("{username}-password").into(),
        ),
    ];
    all.extend(
        env.iter()
            .map(|(name, value)| (*name, value.to_os_string())),
    );
    all
}

/// `env` as the wallet runners take it.
fn borrowed<'a>(env: &'a [(&'static str, OsString)]) -> Vec<(&'static str, &'a OsStr)> {
    env.iter()
        .map(|(name, value)| (*name, value.as_os_str()))
        .collect()
}

/// Creates an AUTHORIZED offer of `profile` and lets the oid4vc-ts wallet, attested by
/// `wallet_provider`, redeem it, its holder logging in as `username`; `env` adds settings.
/// Returns the session id and the wallet's output.
async fn wallet_logs_in(
    app: &TestApp,
    profile: &Value,
    wallet_provider: &WalletProvider,
    username: &str,
    env: &[(&'static str, &OsStr)],
) -> (String, Output) {
    let created = app
        .create_offer(json!({"profileId": profile["profileId"], "authMethod": "AUTHORIZED"}))
        .await;
    assert_eq!(created["authMethod"], "AUTHORIZED", "{created}");
    let env = wallet_env(wallet_provider, username, env);
    let output = oid4vc_ts_wallet_with(
        created["credentialOffer"]
            .as_str()
            .expect("credentialOffer"),
        None,
        &borrowed(&env),
    )
    .await;
    (offer_id(&created), output)
}

/// What the wallet printed, after checking it verified a credential got by the code grant.
fn redeemed(output: &Output) -> Value {
    let wallet = stdout_json(
        output,
        "the oid4vc-ts wallet in the authorization code flow",
    );
    assert_eq!(wallet["verified"], true, "{wallet}");
    assert_eq!(wallet["grant"], "authorization_code", "{wallet}");
    wallet
}

/// The session finished, each step of the code flow and `issue_event` were recorded, the pushed
/// request came from the attested wallet and bound the code to its DPoP key, the code was
/// exchanged by the code grant, and nothing failed on the way, not even the DPoP nonce rounds.
/// Returns the session's event types.
async fn assert_code_flow_events(app: &TestApp, session: &str, issue_event: &str) -> Vec<String> {
    assert_eq!(app.session(session).await["status"], "SUCCESSFUL");
    let events = events(app, session).await;
    let types: Vec<String> = events
        .iter()
        .map(|event| event["type"].as_str().expect("type").to_owned())
        .collect();
    for expected in CODE_FLOW_EVENTS.into_iter().chain([issue_event]) {
        assert!(
            types.iter().any(|kind| kind == expected),
            "{expected} in {types:?}"
        );
    }
    assert!(
        !types.iter().any(|kind| kind.ends_with("_failed")),
        "{types:?}"
    );
    let of_type = |kind: &str| {
        events
            .iter()
            .find(|event| event["type"] == kind)
            .map(|event| &event["data"])
            .expect("recorded")
    };
    let pushed = of_type("pushed_authorization_request_succeeded");
    assert_eq!(pushed["clientId"], WALLET_CLIENT, "{pushed}");
    assert_eq!(pushed["clientAttested"], true, "{pushed}");
    assert_eq!(pushed["dpopBound"], true, "{pushed}");
    let token = &of_type("requested_token")["tokenRequest"];
    assert_eq!(token["grant_type"], "authorization_code", "{token}");
    types
}

/// The SD-JWT VC's claims as bob's ID token has them (the profile says Ada Lovelace), and the
/// same claims as the Python verifier discloses them.
async fn assert_bobs_sd_jwt_vc(app: &TestApp, wallet: &Value) {
    let claims = &wallet["claims"];
    assert_eq!(claims["iss"], app.url.as_str(), "{claims}");
    assert_eq!(claims["cnf"]["jwk"], wallet["holderJwk"], "{claims}");
    assert_eq!(claims["given_name"], "Max", "{claims}");
    assert_eq!(claims["family_name"], "Meier", "{claims}");
    assert_eq!(claims["email"], "max@example.com", "{claims}");
    assert_eq!(claims["birthdate"], "1990-01-01", "{claims}");
    let python_claims = stdout_json(
        &python_sd_jwt_verifier(app, wallet["credential"].as_str().expect("credential")).await,
        "the Python SD-JWT verifier",
    );
    assert_eq!(
        python_claims, *claims,
        "the two verifiers disclose different claims"
    );
}

/// The mDL the wallet verified carries bob's ID token claims where the profile maps them, and the
/// profile's own elements elsewhere.
fn assert_bobs_mdl(wallet: &Value) {
    assert_eq!(wallet["docType"], MDL_DOCTYPE, "{wallet}");
    let elements = &wallet["claims"][NAMESPACE];
    // The profile says Erika Mustermann, born 1984: these came from bob's ID token.
    assert_eq!(elements["given_name"], "Max", "{elements}");
    assert_eq!(elements["family_name"], "Meier", "{elements}");
    assert_eq!(
        elements["birth_date"], "1990-01-01",
        "a full-date: {elements}"
    );
    // What the mapping does not touch stays as the profile has it.
    assert_eq!(elements["document_number"], "T22000129", "{elements}");
    assert_eq!(
        elements.as_object().expect("elements").len(),
        12,
        "{elements}"
    );
}

/// Without an offer, lets the oid4vc-ts wallet, attested by `wallet_provider`, start from the
/// metadata for `configuration`, its holder logging in as bob; `env` adds settings. Returns what
/// the wallet printed, checked as [`redeemed`] checks it.
async fn wallet_starts_from_metadata(
    app: &TestApp,
    wallet_provider: &WalletProvider,
    configuration: &str,
    env: &[(&'static str, &OsStr)],
) -> Value {
    let env = wallet_env(wallet_provider, HOLDER, env);
    redeemed(&oid4vc_ts_wallet_from_metadata(&app.url, configuration, &borrowed(&env)).await)
}

/// `profile` has one session, the one the wallet's pushed request made, which went through the
/// code flow to `issue_event`.
async fn assert_one_wallet_initiated_session(app: &TestApp, profile: &Value, issue_event: &str) {
    let sessions = sessions_of(app, profile).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let types = assert_code_flow_events(app, &sessions[0], issue_event).await;
    assert_eq!(types[0], "wallet_initiated_session_created", "{types:?}");
}

/// The ids of the sessions of `profile`.
async fn sessions_of(app: &TestApp, profile: &Value) -> Vec<String> {
    let id = profile["profileId"].as_str().expect("profileId");
    let (status, listing) = app
        .api_get(&format!("/api/v1/sessions?profileId={id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    listing["items"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|session| session["sessionId"].as_str().expect("sessionId").to_owned())
        .collect()
}

/// The wallet failed before anything was issued, with `error` in what it printed.
fn assert_wallet_failed_with(output: &Output, error: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the wallet did not fail: {stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(stderr.contains(error), "{error} in {stderr}");
}

#[tokio::test]
async fn oid4vc_ts_wallet_gets_an_sd_jwt_vc_with_the_holders_id_token_claims_by_the_code_flow() {
    let wallet_provider = WalletProvider::new();
    let (app, _provider) = app_trusting(&wallet_provider, json!({})).await;
    let profile = id_token_profile(&app, json!({})).await;
    let (session, output) = wallet_logs_in(&app, &profile, &wallet_provider, HOLDER, &[]).await;
    let wallet = redeemed(&output);

    assert_bobs_sd_jwt_vc(&app, &wallet).await;
    assert_code_flow_events(&app, &session, "sdjwt_issue").await;
}

#[tokio::test]
async fn oid4vc_ts_wallet_gets_an_mdl_with_the_holders_id_token_claims_by_the_code_flow() {
    let wallet_provider = WalletProvider::new();
    let (app, _provider) = app_trusting(&wallet_provider, example("mdl.toml")).await;
    let (profile, iaca) = id_token_mdl_profile(&app, json!({})).await;
    let (session, output) = wallet_logs_in(
        &app,
        &profile,
        &wallet_provider,
        HOLDER,
        &[("VELLUM_IACA_PEM", iaca.as_os_str())],
    )
    .await;
    assert_bobs_mdl(&redeemed(&output));

    assert_code_flow_events(&app, &session, "generated_mdoc").await;
}

/// The wallet uses the refresh token of its code exchange, with the same DPoP key and wallet
/// instance, for a new DPoP-bound token, and gets the session's credential again with it: both
/// credentials carry bob's claims, and no event records a refresh token.
#[tokio::test]
async fn oid4vc_ts_wallet_refreshes_its_token_and_gets_the_credential_again() {
    let wallet_provider = WalletProvider::new();
    let (app, _provider) =
        app_trusting_with(&wallet_provider, json!({}), json!({"refresh_tokens": true})).await;
    let profile = id_token_profile(&app, json!({})).await;
    let refresh = OsStr::new("1");
    let (session, output) = wallet_logs_in(
        &app,
        &profile,
        &wallet_provider,
        HOLDER,
        &[("VELLUM_WALLET_REFRESH", refresh)],
    )
    .await;
    let wallet = redeemed(&output);
    let refreshed = &wallet["refreshed"];
    assert_eq!(refreshed["verified"], true, "{wallet}");
    assert_eq!(wallet["refreshTokenRotated"], true, "{wallet}");

    assert_bobs_sd_jwt_vc(&app, &wallet).await;
    assert_bobs_sd_jwt_vc(&app, refreshed).await;

    assert_code_flow_events(&app, &session, "sdjwt_issue").await;
    let events = events(&app, &session).await;
    let of_type = |kind: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|event| event["type"] == kind)
            .map(|event| &event["data"])
            .collect()
    };
    assert_eq!(of_type("sdjwt_issue").len(), 2, "{events:?}");
    let tokens = of_type("requested_token");
    assert_eq!(tokens.len(), 2, "{events:?}");
    assert_eq!(
        tokens[1]["tokenRequest"]["grant_type"], "refresh_token",
        "{}",
        tokens[1]
    );
    let recorded = serde_json::to_string(&events).expect("the events as JSON");
    for token in wallet["refreshTokens"].as_array().expect("refreshTokens") {
        let token = token.as_str().expect("a refresh token");
        assert!(!recorded.contains(token), "{token} in {recorded}");
    }
}

/// No offer: the wallet reads the metadata, pushes a request for the configuration's scope without
/// issuer_state, and gets a session of its own from the configuration's wallet-initiated profile.
#[tokio::test]
async fn oid4vc_ts_wallet_starting_from_metadata_gets_an_sd_jwt_vc_by_the_wallet_initiated_code_flow()
 {
    let wallet_provider = WalletProvider::new();
    let (app, _provider) = app_trusting(&wallet_provider, json!({})).await;
    let profile = id_token_profile(&app, json!({"walletInitiated": true})).await;
    assert_eq!(profile["walletInitiated"], true, "{profile}");
    let wallet = wallet_starts_from_metadata(&app, &wallet_provider, CONFIGURATION, &[]).await;

    assert_bobs_sd_jwt_vc(&app, &wallet).await;
    assert_one_wallet_initiated_session(&app, &profile, "sdjwt_issue").await;
}

/// As for the SD-JWT VC, with the mdl configuration's scope: the wallet verifies the mDL it gets
/// against the IACA, and the elements the profile maps carry bob's ID token claims.
#[tokio::test]
async fn oid4vc_ts_wallet_starting_from_metadata_gets_an_mdl_by_the_wallet_initiated_code_flow() {
    let wallet_provider = WalletProvider::new();
    let (app, _provider) = app_trusting(&wallet_provider, example("mdl.toml")).await;
    let (profile, iaca) = id_token_mdl_profile(&app, json!({"walletInitiated": true})).await;
    assert_eq!(profile["walletInitiated"], true, "{profile}");
    let wallet = wallet_starts_from_metadata(
        &app,
        &wallet_provider,
        MDL,
        &[("VELLUM_IACA_PEM", iaca.as_os_str())],
    )
    .await;

    assert_bobs_mdl(&wallet);
    assert_one_wallet_initiated_session(&app, &profile, "generated_mdoc").await;
}

/// A wallet whose provider the issuer does not trust is refused at the pushed request, before
/// the holder is asked to log in, and nothing is issued.
#[tokio::test]
async fn oid4vc_ts_wallet_attested_by_an_untrusted_provider_fails_with_invalid_client_attestation()
{
    let (app, _provider) = app_trusting(&WalletProvider::new(), json!({})).await;
    let profile = id_token_profile(&app, json!({})).await;
    let untrusted = WalletProvider::new();
    let (session, output) = wallet_logs_in(&app, &profile, &untrusted, HOLDER, &[]).await;

    assert_wallet_failed_with(&output, "invalid_client_attestation");
    assert_ne!(app.session(&session).await["status"], "SUCCESSFUL");
    let types = app.event_types(&session).await;
    assert!(
        types
            .iter()
            .any(|kind| kind == "pushed_authorization_request_failed"),
        "{types:?}"
    );
    assert!(
        !types
            .iter()
            .any(|kind| kind == "pushed_authorization_request_succeeded"
                || kind == "requested_token"
                || kind == "sdjwt_issue"),
        "{types:?}"
    );
}

/// The harness notices a broken login: a holder who refuses at the provider makes the wallet exit
/// non-zero with access_denied, and nothing is issued.
#[tokio::test]
async fn oid4vc_ts_wallet_fails_with_access_denied_when_the_holder_refuses() {
    let wallet_provider = WalletProvider::new();
    let (app, _provider) = app_trusting(&wallet_provider, json!({})).await;
    let profile = id_token_profile(&app, json!({})).await;
    let (session, output) = wallet_logs_in(&app, &profile, &wallet_provider, "denied", &[]).await;

    assert_wallet_failed_with(&output, "access_denied");
    assert_ne!(app.session(&session).await["status"], "SUCCESSFUL");
    let types = app.event_types(&session).await;
    assert!(
        types
            .iter()
            .any(|kind| kind == "authorization_request_failed"),
        "{types:?}"
    );
    assert!(
        !types
            .iter()
            .any(|kind| kind == "requested_token" || kind == "sdjwt_issue"),
        "{types:?}"
    );
}

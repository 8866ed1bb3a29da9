//! The authorization code flow driven by a wallet written by others: the oid4vc-ts wallet
//! (interop/wallet.mjs) takes an issuer-initiated offer through PAR with issuer_state, PKCE S256
//! and DPoP with server nonces, its holder logs in at a real OpenID provider (interop/provider.mjs)
//! through interop/login.mjs, and the SD-JWT VC or mdoc it gets carries claims from the
//! provider's ID token, checked by the wallet's independent verifiers.

use std::ffi::OsStr;
use std::process::Output;

use serde_json::{Value, json};

use super::mdoc::{MDL_DOCTYPE, NAMESPACE, example, iaca_file, mdl_profile};
use crate::support::interop::{oid4vc_ts_wallet_with, python_sd_jwt_verifier, stdout_json};
use crate::support::provider;
use crate::support::{TestApp, create_profile, events, offer_id, profile_body, x5_chain_for};

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

/// `config` for an issuer that lets public clients in: the wallet has a client_id of its own and
/// no wallet attestation (interop::attestation tests those).
fn with_public_clients(mut config: Value) -> Value {
    config["client_attestation"] = json!({"allow_public_clients": true});
    config
}

/// Creates an AUTHORIZED offer of `profile` and lets the oid4vc-ts wallet redeem it, its holder
/// logging in as `username`; `env` adds settings. Returns the session id and the wallet's output.
async fn wallet_logs_in(
    app: &TestApp,
    profile: &Value,
    username: &str,
    env: &[(&str, &OsStr)],
) -> (String, Output) {
    let created = app
        .create_offer(json!({"profileId": profile["id"], "authMethod": "AUTHORIZED"}))
        .await;
    assert_eq!(created["authMethod"], "AUTHORIZED", "{created}");
    let password = format!("{username}-password");
    let mut env = env.to_vec();
    env.extend([
        ("VELLUM_WALLET_USER", OsStr::new(username)),
        ("VELLUM_WALLET_PASSWORD", OsStr::new(&password)),
    ]);
    let output = oid4vc_ts_wallet_with(
        created["credentialOffer"]
            .as_str()
            .expect("credentialOffer"),
        None,
        &env,
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

/// The session finished, each step of the code flow and `issue_event` were recorded, the code
/// was bound to the wallet's DPoP key from the pushed request on and exchanged by the code grant,
/// and nothing failed on the way, not even the DPoP nonce rounds.
async fn assert_code_flow_events(app: &TestApp, session: &str, issue_event: &str) {
    assert_eq!(app.session(session).await["status"], "SUCCESSFUL");
    let events = events(app, session).await;
    let types: Vec<&str> = events
        .iter()
        .map(|event| event["type"].as_str().expect("type"))
        .collect();
    for expected in CODE_FLOW_EVENTS.into_iter().chain([issue_event]) {
        assert!(types.contains(&expected), "{expected} in {types:?}");
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
    assert_eq!(pushed["dpopBound"], true, "{pushed}");
    let token = &of_type("requested_token")["tokenRequest"];
    assert_eq!(token["grant_type"], "authorization_code", "{token}");
}

#[tokio::test]
async fn oid4vc_ts_wallet_gets_an_sd_jwt_vc_with_the_holders_id_token_claims_by_the_code_flow() {
    let (app, _provider) =
        provider::app_with_provider_over(with_public_clients(json!({})), json!({}), None).await;
    let profile = create_profile(
        &app,
        profile_body(json!({
            "identityProvider": provider::PROVIDER,
            "idTokenClaimsMapping": {
                "/given_name": "/given_name",
                "/family_name": "/family_name",
                "/email": "/email",
                "/birthdate": "/birthdate",
            },
        })),
    )
    .await;
    let (session, output) = wallet_logs_in(&app, &profile, HOLDER, &[]).await;
    let wallet = redeemed(&output);

    let claims = &wallet["claims"];
    assert_eq!(claims["iss"], app.url.as_str(), "{claims}");
    assert_eq!(claims["cnf"]["jwk"], wallet["holderJwk"], "{claims}");
    // The profile says Ada Lovelace: these came from bob's ID token.
    assert_eq!(claims["given_name"], "Max", "{claims}");
    assert_eq!(claims["family_name"], "Meier", "{claims}");
    assert_eq!(claims["email"], "max@example.com", "{claims}");
    assert_eq!(claims["birthdate"], "1990-01-01", "{claims}");
    let python_claims = stdout_json(
        &python_sd_jwt_verifier(&app, wallet["credential"].as_str().expect("credential")).await,
        "the Python SD-JWT verifier",
    );
    assert_eq!(
        python_claims, *claims,
        "the two verifiers disclose different claims"
    );

    assert_code_flow_events(&app, &session, "sdjwt_issue").await;
}

#[tokio::test]
async fn oid4vc_ts_wallet_gets_an_mdl_with_the_holders_id_token_claims_by_the_code_flow() {
    let config = with_public_clients(example("mdl.toml"));
    let (app, _provider) = provider::app_with_provider_over(config, json!({}), None).await;
    let chain = x5_chain_for(&app, "demo-es256", "MDOC_DOCUMENT_SIGNER").await;
    let iaca = iaca_file(&app, &chain);
    let mut body = mdl_profile(&chain);
    body["identityProvider"] = json!(provider::PROVIDER);
    body["idTokenClaimsMapping"] = json!({
        "/given_name": format!("/{NAMESPACE}/given_name"),
        "/family_name": format!("/{NAMESPACE}/family_name"),
        "/birthdate": format!("/{NAMESPACE}/birth_date"),
    });
    let profile = create_profile(&app, body).await;
    let (session, output) = wallet_logs_in(
        &app,
        &profile,
        HOLDER,
        &[("VELLUM_IACA_PEM", iaca.as_os_str())],
    )
    .await;
    let wallet = redeemed(&output);

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

    assert_code_flow_events(&app, &session, "generated_mdoc").await;
}

/// The harness notices a broken login: a holder who refuses at the provider makes the wallet exit
/// non-zero with access_denied, and nothing is issued.
#[tokio::test]
async fn oid4vc_ts_wallet_fails_with_access_denied_when_the_holder_refuses() {
    let (app, _provider) =
        provider::app_with_provider_over(with_public_clients(json!({})), json!({}), None).await;
    let profile = create_profile(
        &app,
        profile_body(json!({
            "identityProvider": provider::PROVIDER,
            "idTokenClaimsMapping": {"/given_name": "/given_name"},
        })),
    )
    .await;
    let (session, output) = wallet_logs_in(&app, &profile, "denied", &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the wallet got past a refusal");
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(stderr.contains("access_denied"), "{stderr}");
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

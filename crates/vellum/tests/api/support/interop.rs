//! Running software written by others as child processes (interop/, installed by
//! interop/install): locating it, bounded runs, and the oid4vc-ts wallet.
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::support::{TestApp, spawn_app};

/// A safety net so that a hung child fails the test instead of hanging the run.
pub(crate) const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop")
}

/// Fails (never skips) when the third-party software is not installed.
pub fn require_installed(path: &Path, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} is not installed ({} is missing): run scripts/test, or interop/install, first",
        path.display()
    );
    path.to_path_buf()
}

/// Runs a child to completion, with `stdin` written to it; panics if it cannot start or hangs.
pub async fn run(command: Command, stdin: Option<&str>, what: &str) -> Output {
    run_within(command, stdin, what, CHILD_TIMEOUT).await
}

/// [`run`] with another safety net, for a child whose work takes minutes.
pub async fn run_within(
    mut command: Command,
    stdin: Option<&str>,
    what: &str,
    timeout: Duration,
) -> Output {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {what} ({error}): run scripts/test first"));
    let finished = async {
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(input.as_bytes()).await.expect("write stdin");
            drop(pipe);
        }
        child.wait_with_output().await.expect("wait for child")
    };
    tokio::time::timeout(timeout, finished)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {timeout:?}"))
}

/// What the wallet prints: `{credential, holderJwk, verified, claims}`.
pub fn stdout_json(output: &Output, what: &str) -> Value {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "{what} printed no JSON ({error}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// `node interop/wallet.mjs <offer-uri> [tx-code]`.
pub async fn oid4vc_ts_wallet(offer_uri: &str, tx_code: Option<&str>) -> Output {
    oid4vc_ts_wallet_with(offer_uri, tx_code, &[]).await
}

/// [`oid4vc_ts_wallet`] with its settings in the environment: `VELLUM_WALLET_DPOP=1` (use DPoP),
/// `VELLUM_IACA_PEM` (the IACA an mdoc is verified against), `VELLUM_WALLET_USER` and
/// `VELLUM_WALLET_PASSWORD` (the holder's login in the code flow), `VELLUM_WALLET_PROVIDER_JWK`
/// (the private key of the wallet provider that attests the wallet), `VELLUM_WALLET_REFRESH=1`
/// (after the code flow, refresh the token and get the credential again), `VELLUM_WALLET_BATCH`
/// (credentials per request), `VELLUM_WALLET_BINDING` (`did:jwk` or `did:key` in the proof's kid),
/// `VELLUM_WALLET_NOTIFY` and `VELLUM_WALLET_NOTIFY_DESCRIPTION` (report to the notification
/// endpoint). A deferred issuance is always followed to its end.
pub async fn oid4vc_ts_wallet_with(
    offer_uri: &str,
    tx_code: Option<&str>,
    env: &[(&str, &OsStr)],
) -> Output {
    let mut args = vec![offer_uri];
    args.extend(tx_code);
    run_oid4vc_ts_wallet(&args, env).await
}

/// `node interop/wallet.mjs --issuer <issuer> --configuration <configuration>`: wallet-initiated
/// issuance from the issuer's metadata, settings in `env` as for [`oid4vc_ts_wallet_with`].
pub async fn oid4vc_ts_wallet_from_metadata(
    issuer: &str,
    configuration: &str,
    env: &[(&str, &OsStr)],
) -> Output {
    run_oid4vc_ts_wallet(&["--issuer", issuer, "--configuration", configuration], env).await
}

async fn run_oid4vc_ts_wallet(args: &[&str], env: &[(&str, &OsStr)]) -> Output {
    let dir = interop_dir();
    require_installed(
        &dir.join("node_modules/@openid4vc/openid4vci"),
        "the oid4vc-ts wallet (npm)",
    );
    let mut command = Command::new("node");
    command.arg(dir.join("wallet.mjs")).args(args);
    command.envs(env.iter().copied());
    run(
        command,
        None,
        "the oid4vc-ts wallet (node interop/wallet.mjs)",
    )
    .await
}

/// `interop/.venv/bin/python interop/verify_sdjwt.py <issuer>` with the credential on stdin and
/// the root of the demo profile's development chain as the trust anchor of its `x5c`.
pub(crate) async fn python_sd_jwt_verifier(app: &TestApp, credential: &str) -> Output {
    let dir = interop_dir();
    let python = require_installed(
        &dir.join(".venv/bin/python"),
        "the Python SD-JWT verifier (PyPI sd-jwt)",
    );
    let (_, profile) = app
        .api_get(&format!(
            "/api/v1/profiles/{}",
            crate::support::DEMO_PROFILE
        ))
        .await;
    let root = profile["x5Chain"]
        .as_array()
        .and_then(|chain| chain.last())
        .and_then(Value::as_str)
        .expect("the demo profile's x5Chain ends with its root");
    let anchor = app.dir.path().join("sd-jwt-trust-anchor.pem");
    std::fs::write(&anchor, root).expect("write the trust anchor");
    let mut command = Command::new(python);
    command
        .arg(dir.join("verify_sdjwt.py"))
        .arg(&app.url)
        .env("VELLUM_TRUST_ANCHOR_PEM", &anchor);
    run(command, Some(credential), "the Python SD-JWT verifier").await
}

/// The claims both verifiers must see, disclosures restored.
pub(crate) fn assert_demo_claims(
    claims: &Value,
    holder_jwk: &Value,
    app: &TestApp,
    verifier: &str,
) {
    assert_eq!(claims["iss"], app.url.as_str(), "{verifier}: {claims}");
    assert_eq!(
        claims["vct"], "urn:vellum:demo:identity_credential:1",
        "{verifier}: {claims}"
    );
    assert_eq!(
        claims["cnf"]["jwk"], *holder_jwk,
        "{verifier}: the credential is bound to another key than the wallet's"
    );
    assert_eq!(claims["given_name"], "Erika", "{verifier}: {claims}");
    assert_eq!(
        claims["address"]["locality"], "Köln",
        "{verifier}: {claims}"
    );
    assert_eq!(
        claims["nationalities"],
        json!(["DE", "FR"]),
        "{verifier}: {claims}"
    );
    assert!(
        claims.get("_sd").is_none() && claims.get("_sd_alg").is_none(),
        "{verifier} left SD-JWT internals in the claims: {claims}"
    );
}

/// The oid4vc-ts wallet redeems a created offer (checking it came by `offer_parameter`:
/// `credential_offer_uri` or `credential_offer`); returns what the wallet printed, after checking
/// its own verification passed and that it printed only a public holder key.
pub async fn wallet_redeems(created: &Value, offer_parameter: &str) -> Value {
    let offer_uri = created["credentialOffer"]
        .as_str()
        .expect("credentialOffer");
    assert!(
        offer_uri.starts_with(&format!("openid-credential-offer://?{offer_parameter}=")),
        "{offer_uri}"
    );
    let wallet = stdout_json(
        &oid4vc_ts_wallet(offer_uri, created["txCodeValue"].as_str()).await,
        "the oid4vc-ts wallet",
    );
    assert_eq!(wallet["verified"], true, "{wallet}");
    assert_eq!(wallet["holderJwk"]["kty"], "EC", "{wallet}");
    assert!(
        wallet["holderJwk"].get("d").is_none(),
        "the wallet printed its private key"
    );
    wallet
}

/// Creates an offer, lets the third-party wallet redeem it, verifies the credential with both
/// third-party verifiers and checks the session finished.
pub(crate) async fn redeem_with_oid4vc_ts(offer: Value, offer_parameter: &str) {
    let app = spawn_app().await;
    let created = app.create_offer(offer).await;
    let wallet = wallet_redeems(&created, offer_parameter).await;
    let holder_jwk = &wallet["holderJwk"];
    let credential = wallet["credential"].as_str().expect("credential");
    assert_demo_claims(&wallet["claims"], holder_jwk, &app, "@sd-jwt/sd-jwt-vc");

    let python_claims = stdout_json(
        &python_sd_jwt_verifier(&app, credential).await,
        "the Python SD-JWT verifier",
    );
    assert_demo_claims(&python_claims, holder_jwk, &app, "PyPI sd-jwt");
    assert_eq!(
        python_claims, wallet["claims"],
        "the two verifiers disclose different claims"
    );

    let session = app
        .session(created["offerId"].as_str().expect("offerId"))
        .await;
    assert_eq!(session["status"], "SUCCESSFUL", "{session}");
}

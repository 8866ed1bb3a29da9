//! Interoperability of batch issuance (OID4VCI 1.0 §8) with software written by others, run as
//! child processes: the oid4vc-ts wallet (interop/wallet.mjs with `VELLUM_WALLET_BATCH`) makes n
//! holder keys, has the library build one credential request with n proofs of one c_nonce, and
//! verifies each credential it gets with its verifier for the format (@sd-jwt/sd-jwt-vc, jose,
//! @auth0/mdl), bound to the key of the proof at the same position; the Python verifiers (PyPI
//! sd-jwt, jwcrypto, pymdoccbor) check every credential a second time. The issuer's own view
//! must agree: n credentials listed for the session, n issuance events.
//! scripts/test installs both, pinned (interop/install).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;

use serde_json::{Value, json};
use tokio::process::Command;
use vellum_formats::jose::{Jwk, b64_decode};

use super::mdoc::{MDL, MDL_DOCTYPE, NAMESPACE, example, iaca_file, mdl_profile};
use crate::support::interop::{
    assert_demo_claims, interop_dir, oid4vc_ts_wallet_with, python_sd_jwt_verifier,
    require_installed, run, stdout_json,
};
use crate::support::{
    CONFIGURATION, DEMO_PROFILE, TestApp, create_profile, events_of, offer_id, spawn_app,
    spawn_app_with, x5_chain_for,
};

/// Credentials per request: more than one, well under the default batch size (10).
const BATCH: usize = 3;

pub(super) const DEGREE: &str = "university_degree";
const DEGREE_TYPES: [&str; 2] = ["VerifiableCredential", "UniversityDegreeCredential"];

/// The oid4vc-ts wallet redeems `created` with `env` (and `VELLUM_WALLET_BATCH` = `batch`);
/// what it printed, after checking it succeeded.
pub(super) async fn wallet_with(created: &Value, batch: usize, env: &[(&str, &OsStr)]) -> Value {
    let batch = batch.to_string();
    let mut env = env.to_vec();
    env.push(("VELLUM_WALLET_BATCH", OsStr::new(&batch)));
    stdout_json(
        &oid4vc_ts_wallet_with(
            created["credentialOffer"]
                .as_str()
                .expect("credentialOffer"),
            created["txCodeValue"].as_str(),
            &env,
        )
        .await,
        "the oid4vc-ts wallet",
    )
}

/// The wallet's `credentials`, after checking there are `n`, each verified by the wallet and
/// bound to a key of its own: `holderKey` is the RFC 7638 thumbprint of `holderJwk` (as computed
/// here, not only by jose), the keys are distinct and public, `holderKeys` lists them in order,
/// and the top-level credential is the first.
pub(super) fn batch_entries(wallet: &Value, n: usize) -> Vec<Value> {
    let entries = wallet["credentials"]
        .as_array()
        .unwrap_or_else(|| panic!("the wallet printed no credentials: {wallet}"))
        .clone();
    assert_eq!(entries.len(), n, "{wallet}");
    let mut keys = Vec::new();
    for entry in &entries {
        assert_eq!(entry["verified"], true, "{entry}");
        let holder_jwk = &entry["holderJwk"];
        assert!(
            holder_jwk.get("d").is_none(),
            "the wallet printed its private key"
        );
        let thumbprint = Jwk::from_value(holder_jwk)
            .expect("holder jwk")
            .thumbprint();
        assert_eq!(entry["holderKey"], thumbprint.as_str(), "{entry}");
        keys.push(thumbprint);
    }
    assert_eq!(wallet["holderKeys"], json!(keys), "{wallet}");
    assert_eq!(
        keys.iter().collect::<BTreeSet<_>>().len(),
        n,
        "each credential is bound to a key of its own: {keys:?}"
    );
    let credentials: BTreeSet<&str> = entries
        .iter()
        .map(|entry| entry["credential"].as_str().expect("credential"))
        .collect();
    assert_eq!(credentials.len(), n, "a credential twice");
    assert_eq!(wallet["credential"], entries[0]["credential"], "{wallet}");
    assert_eq!(wallet["holderJwk"], entries[0]["holderJwk"], "{wallet}");
    entries
}

/// What the issuer says of the session: SUCCESSFUL, `credentials` listed (of `configuration` and
/// its `format`), and one `event_type` event per credential, carrying it (`event_credential`
/// gives an event's form of a credential).
pub(super) async fn assert_session_issued(
    app: &TestApp,
    created: &Value,
    (configuration, format): (&str, &str),
    event_type: &str,
    credentials: &[&str],
    event_credential: impl Fn(&Value) -> String,
) {
    let session = offer_id(created);
    let view = app.session(&session).await;
    assert_eq!(view["status"], "SUCCESSFUL", "{view}");

    let (status, listed) = app
        .api_get(&format!("/api/v1/sessions/{session}/credentials"))
        .await;
    assert!(status.is_success(), "{listed}");
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), credentials.len(), "{listed}");
    for item in items {
        assert_eq!(item["format"], format, "{listed}");
        assert_eq!(item["credentialConfigurationId"], configuration, "{listed}");
    }
    let ids: BTreeSet<&str> = items
        .iter()
        .map(|item| item["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), credentials.len(), "{listed}");

    let issued = events_of(app, &session, event_type).await;
    assert_eq!(issued.len(), credentials.len(), "one event per credential");
    let mut announced: Vec<String> = issued
        .iter()
        .map(|event| event_credential(&event["data"]))
        .collect();
    let mut returned: Vec<String> = credentials.iter().map(|&c| c.to_owned()).collect();
    announced.sort_unstable();
    returned.sort_unstable();
    assert_eq!(
        announced, returned,
        "the events announce the credentials the wallet got"
    );
}

/// `interop/.venv/bin/python interop/<script> <args>` with the credential on stdin; what it
/// printed, after checking it succeeded.
pub(super) async fn python_verifier(
    script: &str,
    args: &[&OsStr],
    credential: &str,
    what: &str,
) -> Value {
    let dir = interop_dir();
    let python = require_installed(&dir.join(".venv/bin/python"), what);
    let mut command = Command::new(python);
    command.arg(dir.join(script)).args(args);
    stdout_json(&run(command, Some(credential), what).await, what)
}

#[tokio::test]
async fn oid4vc_ts_wallet_gets_a_batch_of_sd_jwt_vcs_each_bound_to_its_own_key() {
    let app = spawn_app().await;
    let metadata = app.get_json("/.well-known/openid-credential-issuer").await;
    assert_eq!(
        metadata["batch_credential_issuance"],
        json!({"batch_size": 10})
    );
    let created = app
        .create_offer(json!({"profileId": DEMO_PROFILE, "txCode": {}}))
        .await;
    let wallet = wallet_with(&created, BATCH, &[]).await;
    let entries = batch_entries(&wallet, BATCH);
    let mut credentials = Vec::new();
    for entry in &entries {
        let credential = entry["credential"].as_str().expect("credential");
        assert_demo_claims(
            &entry["claims"],
            &entry["holderJwk"],
            &app,
            "@sd-jwt/sd-jwt-vc",
        );
        let python_claims = stdout_json(
            &python_sd_jwt_verifier(&app, credential).await,
            "the Python SD-JWT verifier",
        );
        assert_demo_claims(&python_claims, &entry["holderJwk"], &app, "PyPI sd-jwt");
        assert_eq!(
            python_claims, entry["claims"],
            "the two verifiers disclose different claims"
        );
        credentials.push(credential);
    }
    assert_session_issued(
        &app,
        &created,
        (CONFIGURATION, "dc+sd-jwt"),
        "sdjwt_issue",
        &credentials,
        |data| data["sdjwt"].as_str().expect("sdjwt").to_owned(),
    )
    .await;
}

/// A test app with a `jwt_vc_json` configuration that binds to `did:jwk` and `did:key` holders.
pub(super) async fn w3c_app() -> TestApp {
    spawn_app_with(json!({"credential_configurations": {DEGREE: {
        "format": "jwt_vc_json",
        "scope": "degree",
        "credential_definition": {"type": DEGREE_TYPES},
        "credential_signing_alg_values_supported": ["ES256"],
        "cryptographic_binding_methods_supported": ["did:jwk", "did:key"],
        "proof_signing_alg_values_supported": ["ES256", "EdDSA"],
        "credential_metadata": {"display": [{"name": "University degree", "locale": "en"}]}
    }}}))
    .await
}

/// An offer (with tx_code) of a degree profile signed by the demo key as the issuer DID of
/// `did_method`: the creation response and that DID.
pub(super) async fn degree_offer(app: &TestApp, did_method: &str) -> (Value, String) {
    let profile = create_profile(
        app,
        json!({
            "name": "Degree",
            "credentialConfigurationId": DEGREE,
            "issuerKeyId": "demo-es256",
            "issuerDid": did_method,
            "credentialData": {
                "@context": ["https://www.w3.org/2018/credentials/v1"],
                "credentialSubject": {"degree": {"type": "BachelorDegree", "name": "BSc Physics"}}
            }
        }),
    )
    .await;
    let did = profile["issuerDid"].as_str().expect("issuerDid").to_owned();
    assert!(did.starts_with(&format!("{did_method}:")), "{profile}");
    let created = app
        .create_offer(json!({"profileId": profile["profileId"], "txCode": {}}))
        .await;
    (created, did)
}

/// The claims of a degree credential a verifier saw, bound to the key of the wallet's `entry`:
/// by the DID its proof named (`holderDid`), exactly, or else by the key's did:jwk.
pub(super) fn assert_degree_claims(
    claims: &Value,
    issuer_did: &str,
    entry: &Value,
    verifier: &str,
) {
    assert_eq!(claims["iss"], issuer_did, "{verifier}: {claims}");
    let vc = &claims["vc"];
    assert_eq!(vc["issuer"], issuer_did, "{verifier}: {claims}");
    assert_eq!(vc["type"], json!(DEGREE_TYPES), "{verifier}: {claims}");
    assert_eq!(
        vc["credentialSubject"]["degree"],
        json!({"type": "BachelorDegree", "name": "BSc Physics"}),
        "{verifier}: {claims}"
    );
    let sub = claims["sub"].as_str().expect("sub");
    assert_eq!(vc["credentialSubject"]["id"], sub, "{verifier}: {claims}");
    match entry["holderDid"].as_str() {
        Some(holder_did) => assert_eq!(
            sub, holder_did,
            "{verifier}: the credential is not bound to the DID the proof named"
        ),
        None => assert!(sub.starts_with("did:jwk:"), "{verifier}: {claims}"),
    }
    let bound = vellum_formats::did::jwk_from_did(sub).expect("sub is a resolvable DID");
    assert_eq!(
        bound,
        Jwk::from_value(&entry["holderJwk"]).expect("holder jwk"),
        "{verifier}: the credential is bound to another key than the one of its proof"
    );
    assert!(claims["nbf"].is_i64() && claims["exp"].is_i64(), "{claims}");
}

#[tokio::test]
async fn oid4vc_ts_wallet_gets_a_batch_of_w3c_jwt_vcs_each_bound_to_its_own_key() {
    let app = w3c_app().await;
    let (created, issuer_did) = degree_offer(&app, "did:key").await;
    let wallet = wallet_with(&created, BATCH, &[]).await;
    let entries = batch_entries(&wallet, BATCH);
    let mut credentials = Vec::new();
    let mut subjects = BTreeSet::new();
    for entry in &entries {
        let credential = entry["credential"].as_str().expect("credential");
        assert_degree_claims(&entry["claims"], &issuer_did, entry, "jose");
        let python_claims = python_verifier(
            "verify_jwt_vc.py",
            &[],
            credential,
            "the Python JWT VC verifier (PyPI jwcrypto)",
        )
        .await;
        assert_degree_claims(&python_claims, &issuer_did, entry, "PyPI jwcrypto");
        assert_eq!(
            python_claims, entry["claims"],
            "the two verifiers see different claims"
        );
        subjects.insert(python_claims["sub"].as_str().expect("sub").to_owned());
        credentials.push(credential);
    }
    assert_eq!(subjects.len(), BATCH, "a subject twice: {subjects:?}");
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

#[tokio::test]
async fn oid4vc_ts_wallet_gets_a_batch_of_mdls_each_bound_to_its_own_device_key() {
    require_installed(
        &interop_dir().join("node_modules/@auth0/mdl"),
        "the mdoc verifier (npm @auth0/mdl)",
    );
    let app = spawn_app_with(example("mdl.toml")).await;
    let chain = x5_chain_for(&app, "demo-es256", "MDOC_DOCUMENT_SIGNER").await;
    let iaca = iaca_file(&app, &chain);
    let profile = create_profile(&app, mdl_profile(&chain)).await;
    let created = app
        .create_offer(json!({"profileId": profile["profileId"], "txCode": {}}))
        .await;
    let wallet = wallet_with(&created, BATCH, &[("VELLUM_IACA_PEM", iaca.as_os_str())]).await;
    let entries = batch_entries(&wallet, BATCH);
    let mut credentials = Vec::new();
    for entry in &entries {
        assert_eq!(entry["docType"], MDL_DOCTYPE, "{entry}");
        assert_eq!(
            entry["claims"][NAMESPACE]["family_name"], "Mustermann",
            "{entry}"
        );
        let credential = entry["credential"].as_str().expect("credential");
        let verified = pymdoccbor(credential, &iaca).await;
        assert_eq!(verified["docType"], MDL_DOCTYPE, "{verified}");
        assert_eq!(verified["verifiedElements"], 12, "{verified}");
        assert_eq!(
            verified["deviceKey"], entry["holderJwk"],
            "the MSO's device key is not the key of the credential's proof"
        );
        assert_eq!(
            verified["nameSpaces"], entry["claims"],
            "the two verifiers disclose different elements"
        );
        credentials.push(credential);
    }
    let hex = |credential: &str| -> String {
        b64_decode(credential)
            .expect("base64url")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let as_hex: Vec<String> = credentials.iter().map(|c| hex(c)).collect();
    let as_hex: Vec<&str> = as_hex.iter().map(String::as_str).collect();
    assert_session_issued(
        &app,
        &created,
        (MDL, "mso_mdoc"),
        "generated_mdoc",
        &as_hex,
        |data| data["mdoc"].as_str().expect("mdoc").to_owned(),
    )
    .await;
}

/// `interop/.venv/bin/python interop/verify_mdoc.py <iaca.pem> <mDL doctype>`.
async fn pymdoccbor(credential: &str, iaca: &Path) -> Value {
    python_verifier(
        "verify_mdoc.py",
        &[iaca.as_os_str(), OsStr::new(MDL_DOCTYPE)],
        credential,
        "the Python mdoc verifier (PyPI pymdoccbor)",
    )
    .await
}

/// The library reads the issuer's batch_credential_issuance.batch_size: it does not send more
/// proofs than that, and nothing is issued.
#[tokio::test]
async fn oid4vc_ts_wallet_sends_no_more_proofs_than_the_advertised_batch_size() {
    let app = spawn_app_with(json!({"protocol": {"batch_size": 2}})).await;
    let created = app
        .create_offer(json!({"profileId": DEMO_PROFILE, "txCode": {}}))
        .await;
    let output = oid4vc_ts_wallet_with(
        created["credentialOffer"]
            .as_str()
            .expect("credentialOffer"),
        created["txCodeValue"].as_str(),
        &[("VELLUM_WALLET_BATCH", OsStr::new("3"))],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the wallet sent 3 proofs");
    assert!(stderr.contains("max batch size is '2'"), "{stderr}");
    let session = offer_id(&created);
    assert_eq!(app.session(&session).await["status"], "ACTIVE");
    assert!(events_of(&app, &session, "sdjwt_issue").await.is_empty());

    // Within the limit, the same wallet gets its batch.
    let created = app
        .create_offer(json!({"profileId": DEMO_PROFILE, "txCode": {}}))
        .await;
    let wallet = wallet_with(&created, 2, &[]).await;
    batch_entries(&wallet, 2);
}

//! Interoperability of ISO/IEC 18013-5 mdoc (`mso_mdoc`) with software written by others, run as
//! child processes: the oid4vc-ts wallet (interop/wallet.mjs) redeems an mDL offer and presents
//! the credential to @auth0/mdl's verifier in a device-signed DeviceResponse, and PyPI pymdoccbor
//! (interop/verify_mdoc.py) verifies the IssuerSigned a second time against the IACA.
//! scripts/test installs both, pinned (interop/install).
//!
//! Also keeps the shipped examples (examples/mdl.toml, examples/pid.toml) loadable and issuing.

use std::path::{Path, PathBuf};
use std::process::Output;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::{Value, json};
use tokio::process::Command;
use vellum::config::Config;
use vellum::credentials::Configurations;
use vellum_formats::jose::b64_decode;

use crate::support::interop::{
    interop_dir, oid4vc_ts_wallet_with, require_installed, run, stdout_json,
};
use crate::support::{TestApp, spawn_app_with};
use crate::support::{create_profile, events_of, offer_id, x5_chain_for};

pub(super) const MDL: &str = "mdl";
pub(super) const MDL_DOCTYPE: &str = "org.iso.18013.5.1.mDL";
pub(super) const NAMESPACE: &str = "org.iso.18013.5.1";
const PID: &str = "pid";
const PID_DOCTYPE: &str = "eu.europa.ec.eudi.pid.1";
/// The portrait element: a JPEG start, as base64url (the profile's form of a byte string).
const PORTRAIT: &str = "_9j_4AAQSkZJRgABAQEASABIAAD_2w";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// An example configuration file as the JSON overrides a test app layers over its defaults.
pub(super) fn example(name: &str) -> Value {
    Figment::from(Toml::file(examples_dir().join(name)))
        .extract()
        .unwrap_or_else(|error| panic!("examples/{name}: {error}"))
}

/// A test app with the shipped examples/mdl.toml layered over the test defaults.
async fn mdl_app() -> TestApp {
    spawn_app_with(example("mdl.toml")).await
}

pub(super) fn mdl_profile(chain: &[String]) -> Value {
    json!({
        "name": "mDL",
        "credentialConfigurationId": MDL,
        "issuerKeyId": "demo-es256",
        "x5Chain": chain,
        "credentialData": {NAMESPACE: {
            "family_name": "Mustermann",
            "given_name": "Erika",
            "birth_date": "1984-01-26",
            "issue_date": "2024-03-01",
            "expiry_date": "2034-02-28",
            "issuing_country": "DE",
            "issuing_authority": "Kraftfahrt-Bundesamt",
            "document_number": "T22000129",
            "portrait": PORTRAIT,
            "un_distinguishing_sign": "D",
            "age_over_18": true,
            "driving_privileges": [
                {"vehicle_category_code": "B", "issue_date": "2010-04-01", "expiry_date": "2030-04-01"}
            ]
        }}
    })
}

/// Writes the chain's root (the IACA, last in the leaf-first chain) to a PEM file in the app's
/// directory.
pub(super) fn iaca_file(app: &TestApp, chain: &[String]) -> PathBuf {
    assert!(chain.len() >= 2, "the chain has no IACA: {chain:?}");
    let path = app.dir.path().join("iaca.pem");
    std::fs::write(&path, chain.last().expect("IACA")).expect("write IACA PEM");
    path
}

/// `node interop/wallet.mjs <offer-uri> [tx-code]` with `VELLUM_IACA_PEM` naming the IACA.
async fn oid4vc_ts_mdoc_wallet(offer_uri: &str, tx_code: Option<&str>, iaca: &Path) -> Output {
    require_installed(
        &interop_dir().join("node_modules/@auth0/mdl"),
        "the mdoc verifier (npm @auth0/mdl)",
    );
    oid4vc_ts_wallet_with(offer_uri, tx_code, &[("VELLUM_IACA_PEM", iaca.as_os_str())]).await
}

/// `interop/.venv/bin/python interop/verify_mdoc.py <iaca.pem> <doctype>` with the credential on
/// stdin.
async fn pymdoccbor_verifier(credential: &str, iaca: &Path, doctype: &str) -> Output {
    let dir = interop_dir();
    let python = require_installed(
        &dir.join(".venv/bin/python"),
        "the Python mdoc verifier (PyPI pymdoccbor)",
    );
    let mut command = Command::new(python);
    command
        .arg(dir.join("verify_mdoc.py"))
        .arg(iaca)
        .arg(doctype);
    run(command, Some(credential), "the Python mdoc verifier").await
}

/// The mDL elements a verifier must see, as its JSON (byte strings base64url, dates as text).
fn assert_mdl_elements(elements: &Value, verifier: &str) {
    let mdl = &elements[NAMESPACE];
    assert_eq!(mdl["family_name"], "Mustermann", "{verifier}: {elements}");
    assert_eq!(mdl["given_name"], "Erika", "{verifier}: {elements}");
    assert_eq!(
        mdl["birth_date"], "1984-01-26",
        "{verifier}: birth_date is not the full-date: {elements}"
    );
    assert_eq!(
        mdl["portrait"], PORTRAIT,
        "{verifier}: portrait is not the bytes: {elements}"
    );
    assert_eq!(mdl["age_over_18"], true, "{verifier}: {elements}");
    assert_eq!(
        mdl["driving_privileges"],
        json!([{"vehicle_category_code": "B", "issue_date": "2010-04-01", "expiry_date": "2030-04-01"}]),
        "{verifier}: {elements}"
    );
    assert_eq!(
        mdl.as_object().expect("elements").len(),
        12,
        "{verifier}: {elements}"
    );
}

#[tokio::test]
async fn oid4vc_ts_wallet_redeems_an_mdl_by_reference_offer_with_tx_code_and_pymdoccbor_verifies_it()
 {
    let app = mdl_app().await;
    let chain = x5_chain_for(&app, "demo-es256", "MDOC_DOCUMENT_SIGNER").await;
    let iaca = iaca_file(&app, &chain);
    let profile = create_profile(&app, mdl_profile(&chain)).await;
    let created = app
        .create_offer(
            json!({"profileId": profile["profileId"], "valueMode": "BY_REFERENCE", "txCode": {}}),
        )
        .await;
    let offer_uri = created["credentialOffer"]
        .as_str()
        .expect("credentialOffer");
    assert!(
        offer_uri.starts_with("openid-credential-offer://?credential_offer_uri="),
        "{offer_uri}"
    );

    let wallet = stdout_json(
        &oid4vc_ts_mdoc_wallet(offer_uri, created["txCodeValue"].as_str(), &iaca).await,
        "the oid4vc-ts wallet",
    );
    assert_eq!(wallet["verified"], true, "{wallet}");
    assert_eq!(wallet["docType"], MDL_DOCTYPE, "{wallet}");
    let holder_jwk = &wallet["holderJwk"];
    assert_eq!(holder_jwk["kty"], "EC", "{wallet}");
    assert!(
        holder_jwk.get("d").is_none(),
        "the wallet printed its private key"
    );
    assert_mdl_elements(&wallet["claims"], "@auth0/mdl");
    let credential = wallet["credential"].as_str().expect("credential");

    let verified = stdout_json(
        &pymdoccbor_verifier(credential, &iaca, MDL_DOCTYPE).await,
        "the Python mdoc verifier",
    );
    assert_eq!(verified["docType"], MDL_DOCTYPE, "{verified}");
    assert_eq!(verified["digestAlgorithm"], "SHA-256", "{verified}");
    assert_eq!(verified["verifiedElements"], 12, "{verified}");
    assert_eq!(
        verified["deviceKey"], *holder_jwk,
        "the MSO's device key is not the wallet's holder key"
    );
    assert_mdl_elements(&verified["nameSpaces"], "pymdoccbor");
    assert_eq!(
        verified["nameSpaces"], wallet["claims"],
        "the two verifiers disclose different elements"
    );

    let session_id = offer_id(&created);
    let session = app.session(&session_id).await;
    assert_eq!(session["status"], "SUCCESSFUL", "{session}");
    let generated = events_of(&app, &session_id, "generated_mdoc").await;
    assert_eq!(generated.len(), 1, "{generated:?}");
    let hex: String = b64_decode(credential)
        .expect("base64url")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(generated[0]["data"]["mdoc"], hex);
}

/// The oid4vc-ts wallet redeems an offer of `profile` (without tx_code) and verifies the mdoc
/// against `iaca`; what it printed.
async fn wallet_redeems_mdl(app: &TestApp, profile: &Value, iaca: &Path) -> Value {
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    stdout_json(
        &oid4vc_ts_mdoc_wallet(
            created["credentialOffer"].as_str().expect("uri"),
            None,
            iaca,
        )
        .await,
        "the oid4vc-ts wallet",
    )
}

/// An mDL under a fresh chain, redeemed by the oid4vc-ts wallet (without tx_code): the IACA
/// file, the credential, and the profile it came from.
async fn redeemed_mdl(app: &TestApp) -> (PathBuf, String, Value) {
    let chain = x5_chain_for(app, "demo-es256", "MDOC_DOCUMENT_SIGNER").await;
    let iaca = iaca_file(app, &chain);
    let profile = create_profile(app, mdl_profile(&chain)).await;
    let wallet = wallet_redeems_mdl(app, &profile, &iaca).await;
    let credential = wallet["credential"]
        .as_str()
        .expect("credential")
        .to_owned();
    (iaca, credential, profile)
}

/// The index of the first byte of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(needle)))
}

/// pymdoccbor really checks the value digests: an element value changed by one byte fails.
#[tokio::test]
async fn pymdoccbor_refuses_an_mdl_whose_element_value_was_altered() {
    let app = mdl_app().await;
    let (iaca, credential, _) = redeemed_mdl(&app).await;
    let credential = credential.as_str();
    let untouched = stdout_json(
        &pymdoccbor_verifier(credential, &iaca, MDL_DOCTYPE).await,
        "the Python mdoc verifier",
    );
    assert_eq!(untouched["verifiedElements"], 12, "{untouched}");

    // "Mustermann" becomes "Mustermanm": same length, so the CBOR stays well-formed.
    let mut bytes = b64_decode(credential).expect("base64url");
    let at = find(&bytes, b"Mustermann") + "Mustermann".len() - 1;
    bytes[at] = b'm';
    let altered = vellum_formats::jose::b64(&bytes);

    let output = pymdoccbor_verifier(&altered, &iaca, MDL_DOCTYPE).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "an altered mdoc verified");
    assert!(stderr.contains("family_name"), "{stderr}");
    assert!(stderr.contains("hash mismatch"), "{stderr}");
}

/// Both verifiers really check the chain: another IACA than the one that signed the document
/// signer certificate is refused.
#[tokio::test]
async fn both_verifiers_refuse_an_mdl_under_another_iaca() {
    let app = mdl_app().await;
    let (_, credential, profile) = redeemed_mdl(&app).await;
    let credential = credential.as_str();
    let other = x5_chain_for(&app, "demo-es256", "MDOC_DOCUMENT_SIGNER").await;
    let other_iaca = app.dir.path().join("other-iaca.pem");
    std::fs::write(&other_iaca, other.last().expect("IACA")).expect("write");

    let output = pymdoccbor_verifier(credential, &other_iaca, MDL_DOCTYPE).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "an mdoc verified under another IACA"
    );
    assert!(
        stderr.contains("not signed by any trusted root"),
        "{stderr}"
    );

    // @auth0/mdl in the wallet refuses it too.
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    let output = oid4vc_ts_mdoc_wallet(
        created["credentialOffer"].as_str().expect("uri"),
        None,
        &other_iaca,
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the wallet verified an mdoc under another IACA"
    );
    assert!(stderr.contains("MDLError"), "{stderr}");
}

/// examples/mdl.toml and examples/pid.toml load as operator files through `Config::load`, their
/// format accepts them, and they declare the `mso_mdoc` configurations their names promise.
#[test]
fn the_shipped_mdoc_examples_load_as_configuration_files() {
    for (file, id, doctype) in [
        ("mdl.toml", MDL, MDL_DOCTYPE),
        ("pid.toml", PID, PID_DOCTYPE),
    ] {
        let path = examples_dir().join(file);
        let config = Config::load(Some(&path)).unwrap_or_else(|error| panic!("{file}: {error}"));
        Configurations::from_config(&config.credential_configurations)
            .unwrap_or_else(|error| panic!("{file}: {error}"));
        let configuration = config
            .credential_configurations
            .get(id)
            .unwrap_or_else(|| panic!("{file} declares no {id}"));
        assert_eq!(configuration.format, "mso_mdoc", "{file}");
        assert_eq!(configuration.members["doctype"], doctype, "{file}");
        let metadata = configuration
            .credential_metadata
            .as_ref()
            .unwrap_or_else(|| panic!("{file} has no credential_metadata"));
        assert!(metadata["display"].is_array(), "{file}: {metadata}");
        let claims = metadata["claims"].as_array().expect("claims");
        assert!(
            claims
                .iter()
                .all(|claim| claim["path"].as_array().is_some_and(|path| path.len() == 2)),
            "{file}: mdoc claim paths are [namespace, element]: {metadata}"
        );
    }
}

/// The PID example issues: the wallet and pymdoccbor verify a PID under the test chain.
#[tokio::test]
async fn the_pid_example_issues_a_pid_that_both_verifiers_accept() {
    let app = spawn_app_with(example("pid.toml")).await;
    let chain = x5_chain_for(&app, "demo-es256", "MDOC_DOCUMENT_SIGNER").await;
    let iaca = iaca_file(&app, &chain);
    let profile = create_profile(
        &app,
        json!({
            "name": "PID",
            "credentialConfigurationId": PID,
            "issuerKeyId": "demo-es256",
            "x5Chain": chain,
            "credentialData": {PID_DOCTYPE: {
                "family_name": "Mustermann",
                "given_name": "Erika",
                "birth_date": {"full-date": "1984-01-26"},
                "nationality": ["DE"],
                "issuing_authority": "DE",
                "issuing_country": "DE",
                "expiry_date": {"full-date": "2034-02-28"},
                "age_over_18": true
            }}
        }),
    )
    .await;
    let created = app
        .create_offer(json!({"profileId": profile["profileId"], "txCode": {}}))
        .await;
    let wallet = stdout_json(
        &oid4vc_ts_mdoc_wallet(
            created["credentialOffer"].as_str().expect("uri"),
            created["txCodeValue"].as_str(),
            &iaca,
        )
        .await,
        "the oid4vc-ts wallet",
    );
    assert_eq!(wallet["docType"], PID_DOCTYPE, "{wallet}");
    let credential = wallet["credential"].as_str().expect("credential");
    let verified = stdout_json(
        &pymdoccbor_verifier(credential, &iaca, PID_DOCTYPE).await,
        "the Python mdoc verifier",
    );
    assert_eq!(verified["deviceKey"], wallet["holderJwk"], "{verified}");
    let pid = &verified["nameSpaces"][PID_DOCTYPE];
    assert_eq!(pid["family_name"], "Mustermann", "{verified}");
    assert_eq!(pid["birth_date"], "1984-01-26", "{verified}");
    assert_eq!(pid["nationality"], json!(["DE"]), "{verified}");
    assert_eq!(verified["nameSpaces"], wallet["claims"], "{verified}");
}

/// `x5Chain: "development"` makes a document signer under Vellum's development IACA, named
/// with the mDL's issuing country (which @auth0/mdl compares with the signer's countryName):
/// both verifiers accept the credential against that root, and x5chain holds the signer alone.
#[tokio::test]
async fn an_mdl_under_a_development_chain_verifies_against_the_development_iaca() {
    let app = mdl_app().await;
    let mut body = mdl_profile(&[]);
    body["x5Chain"] = json!("development");
    let profile = create_profile(&app, body).await;
    let chain: Vec<String> = serde_json::from_value(profile["x5Chain"].clone()).expect("chain");
    assert_eq!(chain.len(), 2, "document signer, then the development IACA");
    let iaca = iaca_file(&app, &chain);
    let wallet = wallet_redeems_mdl(&app, &profile, &iaca).await;
    assert_eq!(wallet["verified"], true, "{wallet}");
    assert_mdl_elements(&wallet["claims"], "@auth0/mdl");
    let credential = wallet["credential"].as_str().expect("credential");
    let verified = stdout_json(
        &pymdoccbor_verifier(credential, &iaca, MDL_DOCTYPE).await,
        "the Python mdoc verifier",
    );
    assert_eq!(verified["verifiedElements"], 12, "{verified}");
    assert_eq!(verified["deviceKey"], wallet["holderJwk"], "{verified}");
}

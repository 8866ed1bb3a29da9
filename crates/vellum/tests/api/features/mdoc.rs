//! ISO/IEC 18013-5 mdoc (`mso_mdoc`) issued under a development IACA.

use ciborium::Value as Cbor;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vellum_formats::jose::b64_decode;

use crate::support::wallet::Wallet;
use crate::support::{TestApp, spawn_app_with};
use crate::support::{create_profile, events_of, generate_key, offer_id, x5_chain_for};

const MDL: &str = "mdl";
const NAMESPACE: &str = "org.iso.18013.5.1";

async fn mdoc_app() -> TestApp {
    spawn_app_with(json!({"credential_configurations": {MDL: {
        "format": "mso_mdoc",
        "doctype": "org.iso.18013.5.1.mDL",
        "scope": "mdl",
        "credential_signing_alg_values_supported": ["ES256"],
        "cryptographic_binding_methods_supported": ["cose_key"],
        "proof_signing_alg_values_supported": ["ES256"],
        "credential_metadata": {"display": [{"name": "Mobile driving licence", "locale": "en"}]}
    }}}))
    .await
}

fn mdl_profile(chain: &[String]) -> Value {
    json!({
        "name": "mDL",
        "credentialConfigurationId": MDL,
        "issuerKeyId": "demo-es256",
        "x5Chain": chain,
        "credentialData": {NAMESPACE: {
            "family_name": "Mustermann",
            "given_name": "Erika",
            "birth_date": "1984-01-26",
            "issuing_country": "DE",
            "document_number": "T22000129",
            "portrait": "/9j/4AAQSkZJRgABAQEASABIAAD/2w==",
            "age_over_18": true,
            "driving_privileges": [
                {"vehicle_category_code": "B", "issue_date": "2010-04-01", "expiry_date": "2030-04-01"}
            ]
        }}
    })
}

fn map_get<'a>(map: &'a Cbor, key: &str) -> &'a Cbor {
    map.as_map()
        .expect("a map")
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key}"))
}

fn decode(bytes: &[u8]) -> Cbor {
    ciborium::from_reader(bytes).expect("CBOR")
}

#[tokio::test]
async fn an_mdl_is_issued_as_issuer_signed_cbor_under_the_document_signer_chain() {
    let app = mdoc_app().await;
    let chain = x5_chain_for(&app, "demo-es256", "MDOC_DOCUMENT_SIGNER").await;
    let profile = create_profile(&app, mdl_profile(&chain)).await;
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    let wallet = Wallet::new();
    let credential = wallet.complete(&app, &created).await;

    let bytes = b64_decode(&credential).expect("base64url");
    let issuer_signed = decode(&bytes);
    // Every element is a tag-24 IssuerSignedItem with a random of at least 16 bytes.
    let items = map_get(map_get(&issuer_signed, "nameSpaces"), NAMESPACE)
        .as_array()
        .expect("items");
    let mut names = Vec::new();
    for item in items {
        let Cbor::Tag(24, inner) = item else {
            panic!("not tag 24: {item:?}")
        };
        let item = decode(inner.as_bytes().expect("bstr"));
        assert!(map_get(&item, "random").as_bytes().expect("random").len() >= 16);
        let name = map_get(&item, "elementIdentifier")
            .as_text()
            .expect("name")
            .to_owned();
        if name == "birth_date" {
            assert!(matches!(map_get(&item, "elementValue"), Cbor::Tag(1004, _)));
        }
        if name == "portrait" {
            assert!(map_get(&item, "elementValue").is_bytes());
        }
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "age_over_18",
            "birth_date",
            "document_number",
            "driving_privileges",
            "family_name",
            "given_name",
            "issuing_country",
            "portrait"
        ]
    );
    // issuerAuth carries the document signer chain (header 33) and binds the holder key.
    let issuer_auth = map_get(&issuer_signed, "issuerAuth")
        .as_array()
        .expect("COSE_Sign1");
    let unprotected = issuer_auth[1].as_map().expect("unprotected");
    let x5chain = unprotected
        .iter()
        .find(|(k, _)| k.as_integer() == Some(33.into()))
        .map(|(_, v)| v)
        .expect("x5chain");
    let leaf = vellum_formats::x509::from_pem(&chain[0]).expect("pem");
    // The document signer alone: the IACA is the verifier's trust anchor, not part of x5chain.
    let Cbor::Bytes(signer) = x5chain else {
        panic!("x5chain is not the document signer alone: {x5chain:?}")
    };
    assert_eq!(*signer, leaf);
    let Cbor::Tag(24, mso) = decode(issuer_auth[2].as_bytes().expect("payload")) else {
        panic!("MSO is not tag 24")
    };
    let mso = decode(mso.as_bytes().expect("bstr"));
    assert_eq!(
        map_get(&mso, "docType").as_text(),
        Some("org.iso.18013.5.1.mDL")
    );
    let device_key = map_get(map_get(&mso, "deviceKeyInfo"), "deviceKey")
        .as_map()
        .expect("COSE_Key");
    let x = device_key
        .iter()
        .find(|(k, _)| k.as_integer() == Some((-2).into()))
        .and_then(|(_, v)| v.as_bytes())
        .expect("x");
    assert_eq!(
        vellum_formats::jose::b64(x),
        wallet.key.public_jwk().x,
        "deviceKey is the proof key"
    );

    let generated = events_of(&app, &offer_id(&created), "generated_mdoc").await;
    assert_eq!(generated.len(), 1);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(generated[0]["data"]["mdoc"], hex);
}

#[tokio::test]
async fn an_mdoc_profile_needs_a_chain_that_certifies_its_key() {
    let app = mdoc_app().await;
    let mut no_chain = mdl_profile(&[]);
    no_chain.as_object_mut().expect("object").remove("x5Chain");
    let other = generate_key(&app, json!({})).await;
    let other_chain = x5_chain_for(
        &app,
        other["id"].as_str().expect("id"),
        "MDOC_DOCUMENT_SIGNER",
    )
    .await;
    let mut bad_date = mdl_profile(&x5_chain_for(&app, "demo-es256", "MDOC_DOCUMENT_SIGNER").await);
    bad_date["credentialData"][NAMESPACE]["birth_date"] = json!("1984-02-30");
    for (body, expected) in [
        (no_chain, "needs x5Chain"),
        (mdl_profile(&other_chain), "does not certify issuerKeyId"),
        (bad_date, "birth_date"),
    ] {
        let (status, error) = app.api_json(Method::POST, "/api/v1/profiles", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        let detail = error["detail"].as_str().expect("detail");
        assert!(detail.contains(expected), "{detail}");
    }
}

#[tokio::test]
async fn metadata_names_the_doctype_and_cose_algorithms() {
    let app = mdoc_app().await;
    let metadata = app.get_json("/.well-known/openid-credential-issuer").await;
    let entry = &metadata["credential_configurations_supported"][MDL];
    assert_eq!(entry["format"], "mso_mdoc");
    assert_eq!(entry["doctype"], "org.iso.18013.5.1.mDL");
    assert_eq!(
        entry["credential_signing_alg_values_supported"],
        json!([-7])
    );
    assert_eq!(
        entry["cryptographic_binding_methods_supported"],
        json!(["cose_key"])
    );
}

#[tokio::test]
async fn certificates_need_a_managed_ca_and_never_expose_its_key() {
    let app = mdoc_app().await;
    let (status, error) = app
        .api_json(
            Method::POST,
            "/api/v1/keys/demo-es256/certificates",
            json!({"profile": "MDOC_DOCUMENT_SIGNER", "commonName": "DS"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["code"], "invalid_certificate_request");
    let (status, error) = app
        .api_json(
            Method::POST,
            "/api/v1/keys/nope/certificates",
            json!({"profile": "IACA", "commonName": "Root"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    let chain = x5_chain_for(&app, "demo-es256", "MDOC_DOCUMENT_SIGNER").await;
    assert_eq!(chain.len(), 2);
    assert!(
        chain
            .iter()
            .all(|pem| pem.starts_with("-----BEGIN CERTIFICATE-----"))
    );
    assert!(!chain.concat().contains("PRIVATE KEY"));
}

/// With `credentialStatus: "STATUS_LIST"` the MSO carries `status.status_list {idx, uri}`: an
/// entry of a Token Status List, served as the SD-JWT VCs' are (here read as a CWT).
#[tokio::test]
async fn an_mdl_with_a_managed_status_references_its_token_status_list_entry() {
    let app = mdoc_app().await;
    let chain = x5_chain_for(&app, "demo-es256", "MDOC_DOCUMENT_SIGNER").await;
    let mut profile = mdl_profile(&chain);
    profile["credentialStatus"] = json!("STATUS_LIST");
    let profile = create_profile(&app, profile).await;
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    let credential = Wallet::new().complete(&app, &created).await;
    let issuer_signed = decode(&b64_decode(&credential).expect("base64url"));
    let issuer_auth = map_get(&issuer_signed, "issuerAuth")
        .as_array()
        .expect("COSE_Sign1");
    let Cbor::Tag(24, mso) = decode(issuer_auth[2].as_bytes().expect("payload")) else {
        panic!("MSO is not tag 24")
    };
    let mso = decode(mso.as_bytes().expect("bstr"));
    let reference = map_get(map_get(&mso, "status"), "status_list");
    let index = u64::try_from(map_get(reference, "idx").as_integer().expect("idx")).expect("idx");
    let uri = map_get(reference, "uri").as_text().expect("uri").to_owned();
    assert!(uri.starts_with(&app.endpoint("/status-lists/")), "{uri}");
    let (status, listed) = app
        .api_get(&format!(
            "/api/v1/sessions/{}/credentials",
            offer_id(&created)
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["items"][0]["statusList"]["index"], index);
    assert_eq!(listed["items"][0]["status"], "VALID");
    let cwt = app
        .client
        .get(&uri)
        .header("Accept", "application/statuslist+cwt")
        .send()
        .await
        .expect("status list");
    assert_eq!(cwt.status(), StatusCode::OK);
    let sign1 = decode(&cwt.bytes().await.expect("CWT"));
    let claims = decode(
        sign1.as_array().expect("COSE_Sign1")[2]
            .as_bytes()
            .expect("payload"),
    );
    let status_list = claims
        .as_map()
        .expect("claims")
        .iter()
        .find(|(key, _)| key.as_integer() == Some(65533.into()))
        .map(|(_, value)| value)
        .expect("status_list");
    let lst = map_get(status_list, "lst").as_bytes().expect("lst");
    let list = vellum_formats::status_list::StatusList::from_zlib(2, lst).expect("list");
    assert_eq!(list.get(index as usize), Ok(0));
}

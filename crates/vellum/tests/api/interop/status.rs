//! Credential status read by software written by others, through every change the operator
//! makes: @sd-jwt/jwt-status-list (with jose for the list's x5c signature) reads an SD-JWT VC's
//! status from the Token Status List it references, and cbor2 with pycose from the same list as
//! a CWT (interop/status_cwt.py); a Python decoder written from the W3C
//! Bitstring Status List specification (interop/bitstring_status.py) reads a W3C VC's.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::process::Command;

use crate::support::interop::{interop_dir, require_installed, run, stdout_json};
use crate::support::wallet::Wallet;
use crate::support::{
    DEMO_KEY, TestApp, create_profile, offer_id, profile_body, spawn_app, spawn_app_with,
};

/// A credential as issued, with the id and status list entry its session lists.
struct Issued {
    credential: String,
    id: String,
    uri: String,
    index: u64,
}

/// The status of `issued` as two readers of others see it, which must agree:
/// `node interop/status.mjs` (@sd-jwt/jwt-status-list, from the credential's `status` and the
/// list as a JWT) and `interop/status_cwt.py` (cbor2 and pycose, from the list as a CWT).
async fn read_status(issued: &Issued) -> u64 {
    let dir = interop_dir();
    require_installed(
        &dir.join("node_modules/@sd-jwt/jwt-status-list"),
        "npm @sd-jwt/jwt-status-list",
    );
    let mut command = Command::new("node");
    command.arg(dir.join("status.mjs")).arg(&issued.credential);
    let output = run(command, None, "the status reader (node interop/status.mjs)").await;
    let from_jwt = stdout_json(&output, "the status reader")["status"]
        .as_u64()
        .expect("status");

    let python = require_installed(
        &dir.join(".venv/bin/python"),
        "the Python CWT status list reader (PyPI cbor2, pycose)",
    );
    let mut command = Command::new(python);
    command
        .arg(dir.join("status_cwt.py"))
        .arg(&issued.uri)
        .arg(issued.index.to_string());
    let output = run(
        command,
        None,
        "the CWT status list reader (interop/status_cwt.py)",
    )
    .await;
    let read = stdout_json(&output, "the CWT status list reader");
    assert_eq!(read["bits"], 2, "{read}");
    assert_eq!(
        read["status"].as_u64(),
        Some(from_jwt),
        "the JWT and the CWT list disagree"
    );
    from_jwt
}

/// Changes a credential's status, and lets the publish delay pass.
async fn set_status(app: &TestApp, id: &str, status: &str) {
    let (code, view) = app
        .api_json(
            Method::POST,
            &format!("/api/v1/credentials/{id}/status"),
            json!({"status": status}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{view}");
    // The served list shows a change within `status_lists.publish_delay` (2 s).
    app.clock.advance_seconds(2);
}

#[tokio::test]
async fn jwt_status_list_reads_valid_revoked_suspended_and_reinstated() {
    let app = spawn_app().await;
    let profile = create_profile(
        &app,
        profile_body(json!({"issuerKeyId": DEMO_KEY, "x5Chain": "development",
                            "credentialStatus": "STATUS_LIST"})),
    )
    .await;
    let mut credentials = Vec::new();
    for _ in 0..2 {
        let created = app
            .create_offer(json!({"profileId": profile["profileId"]}))
            .await;
        let credential = Wallet::new().complete(&app, &created).await;
        let session = offer_id(&created);
        let (_, listed) = app
            .api_get(&format!("/api/v1/sessions/{session}/credentials"))
            .await;
        let listed = &listed["items"][0];
        credentials.push(Issued {
            credential,
            id: listed["id"].as_str().expect("id").to_owned(),
            uri: listed["statusList"]["uri"]
                .as_str()
                .expect("uri")
                .to_owned(),
            index: listed["statusList"]["index"].as_u64().expect("index"),
        });
    }
    let [kept, revoked] = &credentials[..] else {
        unreachable!("two credentials")
    };
    assert_eq!(read_status(kept).await, 0, "valid when issued");
    set_status(&app, &kept.id, "SUSPENDED").await;
    assert_eq!(read_status(kept).await, 2, "suspended");
    set_status(&app, &revoked.id, "REVOKED").await;
    assert_eq!(read_status(revoked).await, 1, "revoked");
    assert_eq!(read_status(kept).await, 2, "the neighbour keeps its status");
    set_status(&app, &kept.id, "VALID").await;
    assert_eq!(read_status(kept).await, 0, "reinstated");
    assert_eq!(read_status(revoked).await, 1, "revoked stays revoked");
}

/// What `interop/bitstring_status.py` reads for a W3C VC: its status bit per purpose.
async fn read_bitstring_status(credential: &str) -> serde_json::Value {
    let dir = interop_dir();
    let python = require_installed(
        &dir.join(".venv/bin/python"),
        "the Python Bitstring Status List reader (PyPI jwcrypto)",
    );
    let mut command = Command::new(python);
    command.arg(dir.join("bitstring_status.py"));
    let output = run(
        command,
        Some(credential),
        "the Bitstring Status List reader (interop/bitstring_status.py)",
    )
    .await;
    stdout_json(&output, "the Bitstring Status List reader")
}

#[tokio::test]
async fn a_bitstring_reader_from_the_specification_sees_suspension_and_revocation() {
    let app = spawn_app_with(json!({"credential_configurations": {"degree": {
        "format": "jwt_vc_json",
        "credential_definition": {"type": ["VerifiableCredential", "UniversityDegreeCredential"]},
        "credential_signing_alg_values_supported": ["ES256"],
        "cryptographic_binding_methods_supported": ["did:jwk"],
        "proof_signing_alg_values_supported": ["ES256"],
    }}}))
    .await;
    let profile = create_profile(
        &app,
        json!({"name": "Degree", "credentialConfigurationId": "degree", "issuerKeyId": DEMO_KEY,
               "issuerDid": "did:jwk", "credentialStatus": "STATUS_LIST",
               "credentialData": {"credentialSubject": {"degree": "BSc Physics"}}}),
    )
    .await;
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    let credential = Wallet::new().complete(&app, &created).await;
    let (_, listed) = app
        .api_get(&format!(
            "/api/v1/sessions/{}/credentials",
            offer_id(&created)
        ))
        .await;
    let id = listed["items"][0]["id"].as_str().expect("id").to_owned();
    let both = |revocation: u8, suspension: u8| json!({"revocation": revocation, "suspension": suspension});
    assert_eq!(read_bitstring_status(&credential).await, both(0, 0));
    set_status(&app, &id, "SUSPENDED").await;
    assert_eq!(read_bitstring_status(&credential).await, both(0, 1));
    set_status(&app, &id, "VALID").await;
    assert_eq!(read_bitstring_status(&credential).await, both(0, 0));
    set_status(&app, &id, "REVOKED").await;
    assert_eq!(read_bitstring_status(&credential).await, both(1, 0));
}

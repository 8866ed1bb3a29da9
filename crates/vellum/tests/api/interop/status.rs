//! Credential status read by software written by others: @sd-jwt/jwt-status-list (with jose for
//! the list's x5c signature) reads the status of an SD-JWT VC from the Token Status List it
//! references, through every change the operator makes.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::process::Command;

use crate::support::interop::{interop_dir, require_installed, run, stdout_json};
use crate::support::wallet::Wallet;
use crate::support::{DEMO_KEY, TestApp, create_profile, offer_id, profile_body, spawn_app};

/// The status `node interop/status.mjs` reads for `credential`.
async fn read_status(credential: &str) -> u64 {
    let dir = interop_dir();
    require_installed(
        &dir.join("node_modules/@sd-jwt/jwt-status-list"),
        "npm @sd-jwt/jwt-status-list",
    );
    let mut command = Command::new("node");
    command.arg(dir.join("status.mjs")).arg(credential);
    let output = run(command, None, "the status reader (node interop/status.mjs)").await;
    stdout_json(&output, "the status reader")["status"]
        .as_u64()
        .expect("status")
}

async fn set_status(app: &TestApp, id: &str, status: &str) {
    let (code, view) = app
        .api_json(
            Method::POST,
            &format!("/api/v1/credentials/{id}/status"),
            json!({"status": status}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{view}");
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
        let created = app.create_offer(json!({"profileId": profile["id"]})).await;
        let credential = Wallet::new().complete(&app, &created).await;
        let session = offer_id(&created);
        let (_, listed) = app
            .api_get(&format!("/api/v1/sessions/{session}/credentials"))
            .await;
        let id = listed["items"][0]["id"].as_str().expect("id").to_owned();
        credentials.push((credential, id));
    }
    let [(kept, kept_id), (revoked, revoked_id)] = &credentials[..] else {
        unreachable!("two credentials")
    };
    assert_eq!(read_status(kept).await, 0, "valid when issued");
    set_status(&app, kept_id, "SUSPENDED").await;
    assert_eq!(read_status(kept).await, 2, "suspended");
    set_status(&app, revoked_id, "REVOKED").await;
    assert_eq!(read_status(revoked).await, 1, "revoked");
    assert_eq!(read_status(kept).await, 2, "the neighbour keeps its status");
    set_status(&app, kept_id, "VALID").await;
    assert_eq!(read_status(kept).await, 0, "reinstated");
    assert_eq!(read_status(revoked).await, 1, "revoked stays revoked");
}
